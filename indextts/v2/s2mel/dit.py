"""The DiT flow estimator of S2Mel: noisy mel, prompt mel, content and style -> velocity (B, 80, T).

Per frame, the noisy mel, the prompt mel (zero outside the prompt), the projected content and the
style vector are concatenated and merged to the model width; a transformer conditioned on the
diffusion time runs over the frames; a long skip brings the noisy mel back, and a WaveNet stack
with a time-conditioned final layer maps to the mel bands. Names follow the reference checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from indextts.bigvgan.models import weight_normed
from indextts.v2.s2mel.dims import S2MelDims
from indextts.v2.s2mel.transformer import Transformer
from indextts.v2.s2mel.wavenet import WaveNet

FREQUENCY_EMBEDDING_DIM = 256
MAX_PERIOD = 10000
TIME_SCALE = 1000
MAX_FRAMES = 16384
"""Length of the reference's stored ``input_pos`` buffer (it ignores the config's block_size)."""
FINAL_NORM_EPS = 1e-6


class TimestepEmbedder(nn.Module):
    """Diffusion time t (B,) in [0, 1] -> sinusoidal features of 1000 t -> MLP -> (B, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_EMBEDDING_DIM, dim), nn.SiLU(), nn.Linear(dim, dim))
        half = FREQUENCY_EMBEDDING_DIM // 2
        self.register_buffer("freqs", torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32) / half))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = TIME_SCALE * t[:, None].float() * self.freqs[None]
        return self.mlp(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))


class FinalLayer(nn.Module):
    """LayerNorm modulated by the time embedding, then a weight-normed linear: (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=FINAL_NORM_EPS)
        self.linear = weight_normed(nn.Linear(dim, dim))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))  # noqa: N815 - checkpoint name

    def forward(self, x: torch.Tensor, time_embedding: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(time_embedding).chunk(2, dim=1)
        return self.linear(self.norm_final(x) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1))


class DiT(nn.Module):
    """Flow estimator; see the module docstring. Built from ``S2MelDims``."""

    def __init__(self, dims: S2MelDims):
        super().__init__()
        dit, wavenet = dims.DiT, dims.wavenet
        width, mels = dit.hidden_dim, dit.in_channels
        self.long_skip_connection = dit.long_skip_connection
        self.transformer = Transformer(width, dit.num_heads, dit.depth, dit.uvit_skip_connection)
        # x_embedder, cond_embedder and content_mask_embedder are stored in the release checkpoint
        # but unused by the continuous-content, style-conditioned model; they are kept for strict loading.
        self.x_embedder = weight_normed(nn.Linear(mels, width))
        self.cond_embedder = nn.Embedding(dit.content_codebook_size, width)
        self.cond_projection = nn.Linear(dit.content_dim, width)
        self.t_embedder = TimestepEmbedder(width)
        self.register_buffer("input_pos", torch.arange(MAX_FRAMES))
        self.t_embedder2 = TimestepEmbedder(wavenet.hidden_dim)
        self.conv1 = nn.Linear(width, wavenet.hidden_dim)
        self.conv2 = nn.Conv1d(wavenet.hidden_dim, mels, 1)
        self.wavenet = WaveNet(wavenet.hidden_dim, wavenet.kernel_size, wavenet.dilation_rate,
                               wavenet.num_layers, wavenet.p_dropout)
        self.final_layer = FinalLayer(wavenet.hidden_dim)
        self.res_projection = nn.Linear(width, wavenet.hidden_dim)
        self.content_mask_embedder = nn.Embedding(1, width)
        self.skip_linear = nn.Linear(width + mels, width)
        self.cond_x_merge_linear = nn.Linear(width + 2 * mels + dims.style_encoder.dim, width)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor, lengths: torch.Tensor, t: torch.Tensor,
                style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """Velocity (B, mels, T) at time t (B,).

        x: noisy mel (B, mels, T); prompt: prompt mel, zero after the prompt (B, mels, T);
        lengths: valid frames (B,) or (1,); style (B, style_dim); content (B, T, content_dim).
        """
        frames = x.shape[-1]
        time_embedding = self.t_embedder(t)  # (B, D)
        noisy = x.transpose(1, 2)  # (B, T, mels)
        style_per_frame = style[:, None, :].expand(-1, frames, -1)
        merged = self.cond_x_merge_linear(
            torch.cat([noisy, prompt.transpose(1, 2), self.cond_projection(content), style_per_frame], dim=-1))
        valid = self.input_pos[:frames].unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        hidden = self.transformer(merged, time_embedding.unsqueeze(1), valid[:, None, None, :])
        if self.long_skip_connection:
            hidden = self.skip_linear(torch.cat([hidden, noisy], dim=-1))
        frame_mask = valid.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        waves = self.wavenet(self.conv1(hidden).transpose(1, 2), frame_mask, self.t_embedder2(t).unsqueeze(2))
        out = self.final_layer(waves.transpose(1, 2) + self.res_projection(hidden), time_embedding)
        return self.conv2(out.transpose(1, 2))
