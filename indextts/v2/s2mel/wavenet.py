"""The WaveNet stack that ends the DiT: gated dilated convolutions conditioned on the time embedding.

Convolutions pad their input by reflection ("same" length) and are stored with weight norm; the
parameters sit at ``<name>.conv.conv.weight_g/_v`` as in the reference checkpoint, hence the two
nested ``conv`` attributes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from indextts.bigvgan.models import weight_normed


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last axis of (B, C, T); a sequence too short to reflect is first zero-extended."""
    widest = max(left, right)
    extension = widest - x.shape[-1] + 1 if x.shape[-1] <= widest else 0
    padded = F.pad(F.pad(x, (0, extension)), (left, right), mode="reflect")
    return padded[..., :padded.shape[-1] - extension]


class SameConv1d(nn.Module):
    """Weight-normed Conv1d with reflect padding that keeps the length: (B, C_in, T) -> (B, C_out, T)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1):
        super().__init__()
        span = (kernel_size - 1) * dilation
        self.pad_right = span // 2
        self.pad_left = span - self.pad_right
        self.conv = nn.Module()
        self.conv.conv = weight_normed(nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_left or self.pad_right:
            x = reflect_pad(x, self.pad_left, self.pad_right)
        return self.conv.conv(x)


class WaveNet(nn.Module):
    """Gated residual stack: x (B, H, T), mask (B, 1, T), condition (B, H, 1) -> skip sum (B, H, T)."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, layers: int, p_dropout: float):
        super().__init__()
        self.hidden = hidden
        self.cond_layer = SameConv1d(hidden, 2 * hidden * layers)
        self.in_layers = nn.ModuleList(
            SameConv1d(hidden, 2 * hidden, kernel_size, dilation_rate**i) for i in range(layers))
        self.res_skip_layers = nn.ModuleList(
            SameConv1d(hidden, 2 * hidden if i < layers - 1 else hidden) for i in range(layers))
        self.drop = nn.Dropout(p_dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        output = torch.zeros_like(x)
        conditions = self.cond_layer(condition).split(2 * self.hidden, dim=1)
        last = len(self.in_layers) - 1
        for i, (in_layer, res_skip_layer) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            gate_input = in_layer(x) + conditions[i]
            tanh_part, sigmoid_part = gate_input.split(self.hidden, dim=1)
            res_skip = res_skip_layer(self.drop(torch.tanh(tanh_part) * torch.sigmoid(sigmoid_part)))
            if i < last:
                x = (x + res_skip[:, :self.hidden]) * mask
                output = output + res_skip[:, self.hidden:]
            else:
                output = output + res_skip
        return output * mask
