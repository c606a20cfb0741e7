"""The MaskGCT semantic codec (RepCodec): w2v-BERT features <-> 8192 semantic codes.

IndexTTS-2 quantizes the normalised w2v-BERT hidden state of the speaker prompt with the codec of
``amphion/MaskGCT`` (``semantic_codec/model.safetensors``) and turns generated codes back into
embeddings with the same codebook (``vq2emb``). IndexTTS-2.5 ships its own codec (``codec.pth``):
the same network plus a stride-2 convolution before the encoder and a nearest-neighbour upsampling
convolution after the decoder (``downsample_scale: 2``); it decodes codes through the decoder.

Layout, as the checkpoints name it: ``encoder`` = [Vocos ConvNeXt backbone, Linear back to the
input width], ``decoder`` likewise, ``quantizer.quantizers.<i>`` = factorized VQ (1x1 convolutions
into and out of an 8-d codebook, stored with weight norm, cosine nearest neighbour).

Every entry point takes lengths, so a zero-padded batch gives each row what the reference computes
for that row alone: padded frames are zeroed before every convolution, as the reference's own zero
padding at the end of a single sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from indextts.dims import SectionDims
from indextts.families import family_of

CONVNEXT_KERNEL = 7
LAYER_NORM_EPS = 1e-6
RELEASE_25_DOWNSAMPLE = 2
"""IndexTTS-2.5's ``EnhancedCodec`` halves the frame rate unless its config says otherwise."""


@dataclass(frozen=True, kw_only=True)
class SemanticCodecDims(SectionDims):
    """The config's ``semantic_codec`` section; defaults are the IndexTTS-2 release values.

    ``hidden_size`` is the codec's input width: the width of the w2v-BERT features (1024 in the
    release), so a tiny model may use a smaller one.
    """

    section: ClassVar[str] = "semantic_codec"
    kind: ClassVar[str] = "semantic_codec"
    closed: ClassVar[bool] = False
    optional: ClassVar[bool] = True
    codebook_size: int = 8192
    hidden_size: int = 1024
    codebook_dim: int = 8
    vocos_dim: int = 384
    vocos_intermediate_dim: int = 2048
    vocos_num_layers: int = 12
    num_quantizers: int = 1
    downsample_scale: int = 1

    @classmethod
    def from_config(cls, cfg) -> SemanticCodecDims:
        """The dims of a whole model config; without ``downsample_scale``, an IndexTTS-2.5 config
        (``Family.multilingual``) gets 2, as 2.5 does."""
        dims = super().from_config(cfg)
        stated = "downsample_scale" in (cfg.get(cls.section) or {})
        if not stated and family_of(cfg, "the model config").multilingual:
            dims = replace(dims, downsample_scale=RELEASE_25_DOWNSAMPLE)
        return dims


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) lengths -> (B, 1, frames) float mask, 1 on valid frames."""
    return (torch.arange(frames, device=lengths.device) < lengths[:, None]).unsqueeze(1).float()


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm, pointwise MLP with GELU, layer scale, residual; (B, C, T) -> (B, C, T)."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, CONVNEXT_KERNEL, padding=CONVNEXT_KERNEL // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x * mask).transpose(1, 2)
        h = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(h))))
        return x + h.transpose(1, 2)


class VocosBackbone(nn.Module):
    """Input conv, LayerNorm, ConvNeXt blocks, final LayerNorm; (B, C_in, T) -> (B, T, dim)."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, CONVNEXT_KERNEL, padding=CONVNEXT_KERNEL // 2)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(dim, intermediate_dim, 1.0 / num_layers) for _ in range(num_layers))
        self.final_layer_norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(x * mask).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x, mask)
        return self.final_layer_norm(x.transpose(1, 2))


class FactorizedQuantizer(nn.Module):
    """Project to a small codebook space, pick the nearest code by cosine, project back.

    ``in_project`` / ``out_project`` are 1x1 convolutions (stored with weight norm); the codebook
    lookup returns the unnormalised code vector, as the reference does.
    """

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        if input_dim != codebook_dim:
            self.in_project = nn.Conv1d(input_dim, codebook_dim, kernel_size=1)
            self.out_project = nn.Conv1d(codebook_dim, input_dim, kernel_size=1)
        else:
            self.in_project = nn.Identity()
            self.out_project = nn.Identity()
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def nearest_codes(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, T) -> (B, T) ids of the codebook entries nearest in cosine distance."""
        encodings = F.normalize(self.in_project(z).transpose(1, 2).reshape(-1, self.codebook.embedding_dim))
        codebook = F.normalize(self.codebook.weight)
        distance = (encodings.pow(2).sum(1, keepdim=True) - 2 * encodings @ codebook.t()
                    + codebook.pow(2).sum(1, keepdim=True).t())
        return (-distance).max(1)[1].view(z.shape[0], z.shape[2])

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, D, T) vectors in the input space."""
        return self.out_project(self.codebook(codes).transpose(1, 2))


class SemanticCodec(nn.Module):
    """RepCodec of MaskGCT (IndexTTS-2) or its 2.5 variant with ``downsample_scale`` 2."""

    def __init__(self, dims: SemanticCodecDims):
        super().__init__()
        self.dims = dims
        width = dims.hidden_size
        if dims.downsample_scale > 1:
            self.down = nn.Conv1d(width, width, kernel_size=3, stride=2, padding=1)
            self.up = nn.Conv1d(width, width, kernel_size=3, stride=1, padding=1)
        self.encoder = self._vocos_stack()
        self.decoder = self._vocos_stack()
        self.quantizer = nn.Module()
        self.quantizer.quantizers = nn.ModuleList(
            FactorizedQuantizer(width, dims.codebook_size, dims.codebook_dim) for _ in range(dims.num_quantizers))

    def _vocos_stack(self) -> nn.ModuleList:
        d = self.dims
        return nn.ModuleList([VocosBackbone(d.hidden_size, d.vocos_dim, d.vocos_intermediate_dim, d.vocos_num_layers),
                              nn.Linear(d.vocos_dim, d.hidden_size)])

    def weight_norm_modules(self) -> list[str]:
        """Names of the convolutions stored with weight norm (``weight_g`` / ``weight_v``) in checkpoints."""
        return [f"quantizer.quantizers.{i}.{side}" for i, q in enumerate(self.quantizer.quantizers)
                for side in ("in_project", "out_project") if isinstance(getattr(q, side), nn.Conv1d)]

    @staticmethod
    def _run(stack: nn.ModuleList, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C, T) through [backbone, linear] -> (B, T, C)."""
        backbone, projection = stack
        return projection(backbone(x, mask))

    @staticmethod
    def _lengths(lengths: torch.Tensor | None, batch: int, frames: int, device: torch.device) -> torch.Tensor:
        """The given (B,) lengths, or every row full-length when none are given."""
        return torch.full((batch,), frames, device=device) if lengths is None else lengths

    def quantize(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, hidden) features -> codes (B, Q, T'), quantized embeddings (B, T', hidden), lengths (B,).

        T' = ceil(T / 2) with ``downsample_scale`` 2, else T. Frames past a row's length are undefined.
        """
        lengths = self._lengths(lengths, features.shape[0], features.shape[1], features.device)
        x = features.transpose(1, 2)
        if self.dims.downsample_scale > 1:
            x = F.gelu(self.down(x * frame_mask(lengths, x.shape[2])))
            lengths = (lengths + 1) // 2
        mask = frame_mask(lengths, x.shape[2])
        residual = self._run(self.encoder, x, mask).transpose(1, 2)
        quantized, codes = torch.zeros_like(residual), []
        for quantizer in self.quantizer.quantizers:
            ids = quantizer.nearest_codes(residual)
            vectors = quantizer.embed(ids)
            quantized, residual = quantized + vectors, residual - vectors
            codes.append(ids)
        return torch.stack(codes, dim=1), quantized.transpose(1, 2), lengths

    def vq2emb(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, Q, T) codes -> (B, T, hidden): the sum of each quantizer's projected code vector."""
        vectors = [q.embed(codes[:, i]) for i, q in enumerate(self.quantizer.quantizers[:codes.shape[1]])]
        return torch.stack(vectors).sum(0).transpose(1, 2)

    def decode(self, codes: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Q, T) codes -> reconstructed features (B, T * downsample_scale, hidden) and their lengths (B,).

        The path IndexTTS-2.5 feeds to S2Mel: ``vq2emb``, the decoder, then (2.5) nearest upsampling
        and the ``up`` convolution.
        """
        lengths = self._lengths(lengths, codes.shape[0], codes.shape[2], codes.device)
        x = self.vq2emb(codes).transpose(1, 2)
        x = self._run(self.decoder, x, frame_mask(lengths, x.shape[2]))
        if self.dims.downsample_scale > 1:
            x = F.interpolate(x.transpose(1, 2), scale_factor=2, mode="nearest")
            lengths = lengths * 2
            x = self.up(x * frame_mask(lengths, x.shape[2])).transpose(1, 2)
        return x, lengths
