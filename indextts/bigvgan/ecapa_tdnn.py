"""ECAPA-TDNN speaker encoder that conditions BigVGAN on the reference voice.

Layout and names follow the SpeechBrain model used by IndexTTS (``blocks``, ``mfa``, ``asp``,
``asp_bn``, ``fc``, each convolution wrapped as ``.conv.conv`` and batch norm as ``.norm.norm``),
so the release ``bigvgan_generator.pth`` loads strictly. Convolutions use "same" reflect padding.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = (512, 512, 512, 512, 1536)
KERNEL_SIZES = (5, 3, 3, 3, 1)
DILATIONS = (1, 2, 3, 4, 1)
ATTENTION_CHANNELS = 128
RES2NET_SCALE = 8
SE_CHANNELS = 128
STATISTICS_EPSILON = 1e-12


class SameConv1d(nn.Module):
    """Stride-1 Conv1d whose output keeps the input length, reflect-padded on both sides."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.pad = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = nn.functional.pad(x, (self.pad, self.pad), mode="reflect")
        return self.conv(x)


class BatchNorm(nn.Module):
    """BatchNorm1d over (B, C, T) kept under a ``.norm`` attribute (checkpoint naming)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(channels, eps=1e-5, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class TDNNBlock(nn.Module):
    """conv -> ReLU -> batch norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = SameConv1d(in_channels, out_channels, kernel_size, dilation)
        self.activation = nn.ReLU()
        self.norm = BatchNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.activation(self.conv(x)))


class Res2NetBlock(nn.Module):
    """Split channels into ``scale`` groups; each group after the first adds the previous output."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(
            TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.chunk(x, self.scale, dim=1)
        outputs = [chunks[0]]
        previous = None
        for block, chunk in zip(self.blocks, chunks[1:]):
            previous = block(chunk if previous is None else chunk + previous)
            outputs.append(previous)
        return torch.cat(outputs, dim=1)


class SEBlock(nn.Module):
    """Squeeze-and-excitation: rescale channels by a gate computed from their time average."""

    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.conv1 = SameConv1d(channels, se_channels, 1)
        self.conv2 = SameConv1d(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.relu(self.conv1(x.mean(dim=2, keepdim=True)))
        return torch.sigmoid(self.conv2(gate)) * x


class SERes2NetBlock(nn.Module):
    """TDNN -> Res2Net -> TDNN -> SE, with a residual connection."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.tdnn1 = TDNNBlock(channels, channels, 1, 1)
        self.res2net_block = Res2NetBlock(channels, RES2NET_SCALE, kernel_size, dilation)
        self.tdnn2 = TDNNBlock(channels, channels, 1, 1)
        self.se_block = SEBlock(channels, SE_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x)))) + x


def _weighted_statistics(x: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and standard deviation over time of (B, C, T) with weights (B, C|1, T)."""
    mean = (weights * x).sum(dim=2)
    variance = (weights * (x - mean.unsqueeze(2)).pow(2)).sum(dim=2)
    return mean, variance.clamp(min=STATISTICS_EPSILON).sqrt()


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and std over time, with global context: (B, C, T) -> (B, 2C, 1)."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TDNNBlock(channels * 3, attention_channels, 1, 1)
        self.conv = SameConv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[-1]
        uniform = torch.full((x.shape[0], 1, frames), 1.0 / frames, dtype=x.dtype, device=x.device)
        mean, std = _weighted_statistics(x, uniform)
        context = torch.cat([x, mean.unsqueeze(2).expand_as(x), std.unsqueeze(2).expand_as(x)], dim=1)
        attention = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)
        mean, std = _weighted_statistics(x, attention)
        return torch.cat([mean, std], dim=1).unsqueeze(2)


class ECAPATDNN(nn.Module):
    """Speaker embedding of a mel: (B, F, n_mels) -> (B, embedding_dim, 1)."""

    def __init__(self, n_mels: int, embedding_dim: int):
        super().__init__()
        self.blocks = nn.ModuleList([TDNNBlock(n_mels, CHANNELS[0], KERNEL_SIZES[0], DILATIONS[0])])
        for i in range(1, len(CHANNELS) - 1):
            self.blocks.append(SERes2NetBlock(CHANNELS[i], KERNEL_SIZES[i], DILATIONS[i]))
        self.mfa = TDNNBlock(CHANNELS[-2] * (len(CHANNELS) - 2), CHANNELS[-1], KERNEL_SIZES[-1], DILATIONS[-1])
        self.asp = AttentiveStatisticsPooling(CHANNELS[-1], ATTENTION_CHANNELS)
        self.asp_bn = BatchNorm(CHANNELS[-1] * 2)
        self.fc = SameConv1d(CHANNELS[-1] * 2, embedding_dim, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.transpose(1, 2)  # (B, n_mels, F)
        layer_outputs = []
        for block in self.blocks:
            x = block(x)
            layer_outputs.append(x)
        x = self.mfa(torch.cat(layer_outputs[1:], dim=1))
        return self.fc(self.asp_bn(self.asp(x)))
