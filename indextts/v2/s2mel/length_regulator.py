"""The length regulator: content features at the codec rate -> conditions at the mel frame rate.

Features (B, N, in_channels) are projected to ``channels``, stretched to the target frame count by
nearest-neighbour interpolation, refined by (conv, group norm, Mish) stages and a 1x1 convolution,
and zeroed past each row's length. IndexTTS-2 feeds it w2v-BERT-sized (1024) semantic features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from indextts.v2.s2mel.dims import LengthRegulatorDims


class LengthRegulator(nn.Module):
    """Continuous-content interpolating regulator; names follow the reference checkpoint."""

    def __init__(self, dims: LengthRegulatorDims):
        super().__init__()
        channels = dims.channels
        stages = []
        for _ in dims.sampling_ratios:
            stages += [nn.Conv1d(channels, channels, 3, padding=1), nn.GroupNorm(1, channels), nn.Mish()]
        self.model = nn.Sequential(*stages, nn.Conv1d(channels, channels, 1))
        self.interpolate = len(dims.sampling_ratios) > 0
        # Stored in the release checkpoint, unused with continuous content; kept for strict loading.
        self.embedding = nn.Embedding(dims.content_codebook_size, channels)
        self.mask_token = nn.Parameter(torch.zeros(1, channels))
        self.content_in_proj = nn.Linear(dims.in_channels, channels)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features (B, N, in_channels), target frame counts (B,) -> conditions (B, max(lengths), channels).

        Without sampling stages the features keep their own length N (lengths are capped at N).
        """
        x = self.content_in_proj(features).transpose(1, 2)  # (B, C, N)
        if self.interpolate:
            x = F.interpolate(x, size=int(lengths.max()), mode="nearest")
        valid = torch.arange(x.shape[-1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        return self.model(x).transpose(1, 2) * valid.unsqueeze(-1)
