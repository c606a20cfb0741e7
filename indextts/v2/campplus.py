"""CAMPPlus speaker embedding (FunASR ``campplus_cn_common.bin``): 16 kHz audio -> style vector (B, 192).

IndexTTS-2 feeds the style vector to S2Mel's DiT (2.5 also to its GPT). Input features are 80-bin
Kaldi filter banks minus their mean over time (``campplus_features``). The network: a 2-D residual
front end over (frequency, time), a strided TDNN, three densely connected TDNN blocks with
context-aware masking (each layer gated by its utterance and 100-frame segment means), mean and
standard-deviation pooling, and a linear layer with non-affine batch norm. Parameter names follow
the checkpoint. The sizes come from the optional ``campplus`` config section (release defaults).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from indextts.checkpoints import read_tensors, shape_mismatch, tensor_shapes, to_float32
from indextts.dims import SectionDims
from indextts.errors import CheckpointError
from indextts.releases import CAMPPLUS, missing_file_error
from indextts.v2.fbank import kaldi_fbank

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DENSE_BLOCKS = ((12, 1), (24, 2), (16, 2))
"""(layers, dilation) of the three dense TDNN blocks (kernel 3)."""
SEGMENT_FRAMES = 100
FRONT_CHANNELS = 32
FRONT_END_DOWNSAMPLING = 8
"""The front end (32 channels) halves the frequency axis three times."""


@dataclass(frozen=True, kw_only=True)
class CAMPPlusDims(SectionDims):
    """CAMPPlus sizes; the release config has no ``campplus`` section, so every key defaults to the release."""

    section: ClassVar[str] = "campplus"
    kind: ClassVar[str] = "campplus"
    optional: ClassVar[bool] = True
    feat_dim: int = 80
    embedding_size: int = 192
    growth_rate: int = 32
    bn_size: int = 4
    init_channels: int = 128


def campplus_features(audio_16k: torch.Tensor, num_mel_bins: int = 80) -> torch.Tensor:
    """infer_v2's CAMPPlus input: Kaldi fbank of mono 16 kHz audio (S,), minus its time mean: (frames, bins)."""
    fbank = kaldi_fbank(audio_16k, SAMPLE_RATE, num_mel_bins)
    return fbank - fbank.mean(dim=0, keepdim=True)


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU()))


class ResidualBlock2d(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected) shortcut; strides the frequency axis."""

    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=(stride, 1), bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class FrontEnd(nn.Module):
    """(B, F, T) features -> (B, channels * F // 8, T) by 2-D convolutions over frequency and time."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(ResidualBlock2d(channels, channels, 2), ResidualBlock2d(channels, channels, 1))
        self.layer2 = nn.Sequential(ResidualBlock2d(channels, channels, 2), ResidualBlock2d(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        out = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(out)))))  # (B, C, F // 8, T)
        return out.flatten(1, 2)


class ContextAwareMasking(nn.Module):
    """Local convolution gated by a sigmoid of the utterance mean plus the 100-frame segment mean."""

    def __init__(self, channels: int, out_channels: int, dilation: int):
        super().__init__()
        self.linear_local = nn.Conv1d(channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(channels, channels // 2, 1)
        self.linear2 = nn.Conv1d(channels // 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        segments = F.avg_pool1d(x, SEGMENT_FRAMES, SEGMENT_FRAMES, ceil_mode=True)
        context = x.mean(-1, keepdim=True) + segments.repeat_interleave(SEGMENT_FRAMES, dim=-1)[..., :frames]
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return self.linear_local(x) * gate


class DenseTDNNLayer(nn.Module):
    """Batch norm, ReLU, 1x1 bottleneck, batch norm, ReLU, masked dilated convolution -> growth channels."""

    def __init__(self, in_channels: int, growth: int, bottleneck: int, dilation: int):
        super().__init__()
        self.nonlinear1 = _bn_relu(in_channels)
        self.linear1 = nn.Conv1d(in_channels, bottleneck, 1, bias=False)
        self.nonlinear2 = _bn_relu(bottleneck)
        self.cam_layer = ContextAwareMasking(bottleneck, growth, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class DenseTDNNBlock(nn.ModuleList):
    """Densely connected layers: each appends its output channels to its input."""

    def __init__(self, layers: int, in_channels: int, growth: int, bottleneck: int, dilation: int):
        super().__init__()
        for i in range(layers):
            self.add_module(f"tdnnd{i + 1}", DenseTDNNLayer(in_channels + i * growth, growth, bottleneck, dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class TransitLayer(nn.Module):
    """Batch norm, ReLU and a 1x1 convolution that halves the channels."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.nonlinear = _bn_relu(in_channels)
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPool(nn.Module):
    """(B, C, T) -> (B, 2C): mean and unbiased standard deviation over time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.std(dim=-1)], dim=-1)


class EmbeddingLayer(nn.Module):
    """1x1 projection of the pooled statistics and a batch norm without affine parameters: (B, 2C) -> (B, E)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(out_channels, affine=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class TDNNLayer(nn.Module):
    """Strided kernel-5 convolution, batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.linear = nn.Conv1d(in_channels, out_channels, 5, stride=2, padding=2, bias=False)
        self.nonlinear = _bn_relu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class CAMPPlus(nn.Module):
    """Features (B, T, feat_dim) -> speaker embedding (B, embedding_size)."""

    def __init__(self, dims: CAMPPlusDims = CAMPPlusDims()):
        super().__init__()
        self.head = FrontEnd(FRONT_CHANNELS)
        channels = dims.init_channels
        layers = [("tdnn", TDNNLayer(FRONT_CHANNELS * (dims.feat_dim // FRONT_END_DOWNSAMPLING), channels))]
        for i, (count, dilation) in enumerate(DENSE_BLOCKS, start=1):
            block = DenseTDNNBlock(count, channels, dims.growth_rate, dims.bn_size * dims.growth_rate, dilation)
            channels += count * dims.growth_rate
            layers += [(f"block{i}", block), (f"transit{i}", TransitLayer(channels, channels // 2))]
            channels //= 2
        layers += [("out_nonlinear", _bn_relu(channels)), ("stats", StatsPool()),
                   ("dense", EmbeddingLayer(2 * channels, dims.embedding_size))]
        self.xvector = nn.Sequential(OrderedDict(layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.xvector(self.head(features.transpose(1, 2)))


def load_campplus(path: str | Path, dims: CAMPPlusDims = CAMPPlusDims(), device: str | torch.device = "cpu"
                  ) -> CAMPPlus:
    """Load ``campplus_cn_common.bin`` (a plain state dict) strictly; eval mode, float32."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, "CAMPPlus checkpoint", "2", CAMPPLUS)
    state_dict = read_tensors(path, "CAMPPlus checkpoint")
    with torch.device("meta"):
        wanted = tensor_shapes(CAMPPlus(dims).state_dict())
    problems = shape_mismatch(state_dict if isinstance(state_dict, Mapping) else {}, wanted)
    if problems:
        raise CheckpointError(
            f"The CAMPPlus checkpoint {path} does not fit the campplus settings of the model config: "
            f"{problems}. Use campplus_cn_common.bin of {CAMPPLUS.repo_id} "
            "with the release sizes (remove any campplus section from the model config).")
    model = CAMPPlus(dims)
    model.load_state_dict(to_float32(state_dict), strict=True)
    logger.info("Loaded CAMPPlus weights from %s", path)
    return model.to(device).eval()
