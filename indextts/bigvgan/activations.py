"""Snake / SnakeBeta periodic activations with anti-aliasing, in plain PyTorch.

BigVGAN applies each activation at twice the sample rate: upsample x2 with a Kaiser-windowed sinc
low-pass filter, apply the activation, low-pass and decimate x2. The two filters are buffers of
the release checkpoint (``upsample.filter``, ``downsample.lowpass.filter``), shape (1, 1, 12).

Two modes of :class:`Activation1d`: ``exact`` runs the reference's operations in its order (equal
to it bit for bit); ``fused`` computes the same filters in polyphase form (the x2 signal as its
even and odd samples, never zero-stuffed) and lets ``torch.compile`` fuse padding, both filters
and the activation into a few vectorised loops. It differs from ``exact`` by float rounding only
(about 140 dB SNR) and is the CPU default; see docs/benchmarks.md for the speed.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

EPSILON = 1e-9
RESAMPLE_RATIO = 2
FILTER_SIZE = 12
PHASE_TAPS = FILTER_SIZE // RESAMPLE_RATIO
ACTIVATION_MODES = ("exact", "fused")


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass filter, normalised to unit DC gain, (1, 1, kernel_size).

    ``cutoff`` and ``half_width`` are fractions of the sample rate; the Kaiser beta follows the
    usual attenuation rule for the transition band 4 * half_width.
    """
    half_size = kernel_size // 2
    attenuation = 2.285 * (half_size - 1) * math.pi * 4 * half_width + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    if kernel_size % 2 == 0:
        time = torch.arange(-half_size, half_size) + 0.5
    else:
        time = torch.arange(kernel_size) - half_size
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return (taps / taps.sum()).view(1, 1, kernel_size)


class LowPassFilter1d(nn.Module):
    """Depthwise low-pass filter with replicate padding and optional decimation: (B, C, T) -> (B, C, T // stride)."""

    def __init__(self, cutoff: float, half_width: float, stride: int, kernel_size: int):
        super().__init__()
        self.stride = stride
        self.pad_left = kernel_size // 2 - int(kernel_size % 2 == 0)
        self.pad_right = kernel_size // 2
        self.register_buffer("filter", kaiser_sinc_filter(cutoff, half_width, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.stride, groups=channels)


class UpSample1d(nn.Module):
    """Band-limited upsampling by ``ratio``: zero-stuffing transposed conv with the sinc filter."""

    def __init__(self, ratio: int = RESAMPLE_RATIO, kernel_size: int = FILTER_SIZE):
        super().__init__()
        self.ratio = ratio
        self.pad = kernel_size // ratio - 1
        self.crop_left = self.pad * ratio + (kernel_size - ratio) // 2
        self.crop_right = self.pad * ratio + (kernel_size - ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / ratio, 0.6 / ratio, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T * ratio)."""
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(channels, -1, -1),
                                            stride=self.ratio, groups=channels)
        return x[..., self.crop_left:x.shape[-1] - self.crop_right]


class DownSample1d(nn.Module):
    """Band-limited decimation by ``ratio``: (B, C, T) -> (B, C, T // ratio)."""

    def __init__(self, ratio: int = RESAMPLE_RATIO, kernel_size: int = FILTER_SIZE):
        super().__init__()
        self.lowpass = LowPassFilter1d(0.5 / ratio, 0.6 / ratio, ratio, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class Snake(nn.Module):
    """x + sin^2(alpha x) / alpha, per channel; alpha stored as a log when ``logscale``."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        initial = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(initial)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        if self.logscale:
            alpha = alpha.exp()
        return x + torch.sin(x * alpha).pow(2) / (alpha + EPSILON)

    def frequency_and_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, 1 / alpha), each (1, C, 1): the activation is x + sin^2(alpha x) * gain."""
        alpha = self.alpha.exp() if self.logscale else self.alpha
        return alpha.view(1, -1, 1), (1.0 / (alpha + EPSILON)).view(1, -1, 1)


class SnakeBeta(nn.Module):
    """x + sin^2(alpha x) / beta: Snake with separate frequency (alpha) and magnitude (beta)."""

    def __init__(self, channels: int, logscale: bool = True):
        super().__init__()
        self.logscale = logscale
        initial = torch.zeros(channels) if logscale else torch.ones(channels)
        self.alpha = nn.Parameter(initial.clone())
        self.beta = nn.Parameter(initial.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        beta = self.beta.view(1, -1, 1)
        if self.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + torch.sin(x * alpha).pow(2) * (1.0 / (beta + EPSILON))

    def frequency_and_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, 1 / beta), each (1, C, 1): the activation is x + sin^2(alpha x) * gain."""
        alpha, beta = (self.alpha.exp(), self.beta.exp()) if self.logscale else (self.alpha, self.beta)
        return alpha.view(1, -1, 1), (1.0 / (beta + EPSILON)).view(1, -1, 1)


ACTIVATIONS = {"snake": Snake, "snakebeta": SnakeBeta}


def _snake(x: torch.Tensor, alpha: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    return x + torch.sin(x * alpha).pow(2) * gain


def _edge_padded(x: torch.Tensor, first: torch.Tensor, last: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """(B, C, T) -> (B, C, left + T + right), padded with the columns ``first`` and ``last`` (B, C, 1)."""
    batch, channels = x.shape[:2]
    return torch.cat([first.expand(batch, channels, left), x, last.expand(batch, channels, right)], dim=-1)


def polyphase_activation(x: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                         alpha: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """UpSample1d, snake and DownSample1d in polyphase form: (B, C, T) -> (B, C, T).

    ``up`` and ``down`` are the 12-tap filters (12,); ``alpha`` and ``gain`` (1, C, 1). The x2
    signal is kept as its even and odd samples (B, C, T) each; the reference's replicate padding
    of the x2 signal becomes its first sample on the left and its last on the right.
    """
    length = x.shape[-1]
    padded = F.pad(x, (PHASE_TAPS // 2, PHASE_TAPS // 2), mode="replicate")
    last_tap = FILTER_SIZE - 1
    even = sum(padded[..., q:q + length] * (RESAMPLE_RATIO * up[last_tap - 2 * q]) for q in range(PHASE_TAPS))
    odd = sum(padded[..., q + 1:q + 1 + length] * (RESAMPLE_RATIO * up[last_tap - 1 - 2 * q])
              for q in range(PHASE_TAPS))
    even, odd = _snake(even, alpha, gain), _snake(odd, alpha, gain)
    first, last = even[..., :1], odd[..., -1:]
    even = _edge_padded(even, first, last, PHASE_TAPS // 2 - 1, PHASE_TAPS // 2)
    odd = _edge_padded(odd, first, last, PHASE_TAPS // 2, PHASE_TAPS // 2 - 1)
    return (sum(even[..., q:q + length] * down[2 * q + 1] for q in range(PHASE_TAPS))
            + sum(odd[..., q:q + length] * down[2 * q] for q in range(PHASE_TAPS)))


@functools.cache
def compiled_polyphase_activation():
    """``polyphase_activation`` compiled once per process for every shape (built on first use: importing
    the compiler costs seconds that the exact mode should not pay)."""
    return torch.compile(polyphase_activation, dynamic=True)


class Activation1d(nn.Module):
    """Anti-aliased activation: upsample x2, activation, low-pass and decimate x2. (B, C, T) -> (B, C, T).

    ``mode``: ``exact`` (the reference's operations) or ``fused`` (see the module docstring).
    """

    def __init__(self, activation: nn.Module):
        super().__init__()
        self.act = activation
        self.upsample = UpSample1d()
        self.downsample = DownSample1d()
        self.mode = "exact"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "fused":
            alpha, gain = self.act.frequency_and_gain()
            fused = compiled_polyphase_activation()
            return fused(x, self.upsample.filter.view(-1), self.downsample.lowpass.filter.view(-1),
                         alpha.to(x.dtype), gain.to(x.dtype))
        return self.downsample(self.act(self.upsample(x)))
