"""Conformer encoder that turns a reference log-mel into speaker features.

This is the WeNet-style conformer the IndexTTS checkpoints were trained with: a 2-D convolution that
halves the frame rate, sinusoidal positions used through relative-position self-attention (with the
learned ``pos_bias_u``/``pos_bias_v`` of Transformer-XL, without the relative shift, as WeNet does),
then per block self-attention, a convolution module and a feed-forward layer, each pre-normalised.
Padded batches are supported with the reference's masking: attention ignores padded frames and the
convolution module zeroes them at its input and output. Its first pointwise convolution has a bias,
so padded frames are not zero inside the module and reach the last valid frames through the
depthwise convolution; rows shorter than the batch's longest therefore differ slightly from their
unbatched result, exactly as in the reference (and its conformance goldens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from indextts.errors import AudioError

MAX_ENCODER_FRAMES = 5000
"""Length of the stored sinusoidal table (``embed.pos_enc.pe``): frames after subsampling."""

CONV_KERNEL_SIZE = 15


def length_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_length) bool, True on valid positions."""
    return torch.arange(max_length, device=lengths.device) < lengths.unsqueeze(1)


class RelPositionalEncoding(nn.Module):
    """Scales the input by sqrt(D) and returns the absolute sinusoidal table for its length.

    The table is a stored buffer (it is part of the official state dict).
    """

    def __init__(self, dim: int, max_len: int = MAX_ENCODER_FRAMES):
        super().__init__()
        self.xscale = math.sqrt(dim)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        inverse_frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * inverse_frequency)
        table[:, 1::2] = torch.cos(position * inverse_frequency)
        self.register_buffer("pe", table.unsqueeze(0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, D) -> (scaled x (B, T, D), position table (1, T, D))."""
        frames = x.shape[1]
        if frames > self.pe.shape[1]:
            raise AudioError(
                f"The reference audio is too long for the speaker encoder: its mel has {frames * 2} "
                f"frames but at most {self.pe.shape[1] * 2} are supported (about "
                f"{self.pe.shape[1] * 2 * 256 // 24000} s at 24 kHz). Use a shorter reference clip."
            )
        return x * self.xscale, self.pe[:, :frames].to(x.dtype)


class Conv2dSubsampling2(nn.Module):
    """Conv2d (kernel 3, stride 2) + ReLU over (time, mel), then a linear projection.

    Output frame t sees input frames 2t..2t+2, so it is valid when frame 2t+2 is.
    """

    def __init__(self, input_dim: int, output_dim: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, output_dim, kernel_size=3, stride=2), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(output_dim * ((input_dim - 1) // 2), output_dim))
        self.pos_enc = RelPositionalEncoding(output_dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, F), mask (B, T) -> x (B, T', D), positions (1, T', D), mask (B, T'); T' = (T-1)//2."""
        x = self.conv(x.unsqueeze(1))  # (B, D, T', F')
        batch, channels, frames, features = x.shape
        x = self.out(x.transpose(1, 2).reshape(batch, frames, channels * features))
        x, positions = self.pos_enc(x)
        return x, positions, mask[:, 2::2]


class RelPositionMultiHeadedAttention(nn.Module):
    """Self-attention whose scores add a content term and a position term (Transformer-XL style).

    score(i, j) = ((q_i + u) . k_j + (q_i + v) . p_j) / sqrt(d_k), where p_j = linear_pos(table_j).
    Both terms are computed in one scaled_dot_product_attention call by concatenating
    [q + u, q + v] against [k, p] along the head dimension.
    """

    def __init__(self, heads: int, dim: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.linear_q = nn.Linear(dim, dim)
        self.linear_k = nn.Linear(dim, dim)
        self.linear_v = nn.Linear(dim, dim)
        self.linear_out = nn.Linear(dim, dim)
        self.linear_pos = nn.Linear(dim, dim, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(heads, self.head_dim))
        self.pos_bias_v = nn.Parameter(torch.empty(heads, self.head_dim))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)  # (B, H, T, d)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), positions (1, T, D), mask (B, T) True on valid frames -> (B, T, D)."""
        batch, frames, dim = x.shape
        q = self._split_heads(self.linear_q(x))
        k = self._split_heads(self.linear_k(x))
        v = self._split_heads(self.linear_v(x))
        p = self._split_heads(self.linear_pos(positions)).expand(batch, -1, -1, -1)
        query = torch.cat([q + self.pos_bias_u.unsqueeze(1), q + self.pos_bias_v.unsqueeze(1)], dim=-1)
        key = torch.cat([k, p.to(k.dtype)], dim=-1)
        query = query.to(v.dtype)
        out = F.scaled_dot_product_attention(
            query, key, v, attn_mask=mask[:, None, None, :], scale=1.0 / math.sqrt(self.head_dim)
        )  # (B, H, T, d)
        return self.linear_out(out.transpose(1, 2).reshape(batch, frames, dim))


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, LayerNorm, SiLU, pointwise conv.

    Padding is zeroed at the input, after the GLU and at the output. The reference zeroes only the
    input and output, so the bias of ``pointwise_conv1`` leaks non-zero values from padded frames
    into the last valid frames through the depthwise conv, and a clip's conditioning depends on what
    it is batched with. Zeroing after the GLU makes every row of a padded batch equal its unpadded
    result, as the conformance definition of ``cond_batch`` requires; single clips are unchanged.
    """

    def __init__(self, channels: int, kernel_size: int = CONV_KERNEL_SIZE):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, kernel_size=1)
        self.depthwise_conv = nn.Conv1d(
            channels, channels, kernel_size, padding=(kernel_size - 1) // 2, groups=channels
        )
        self.norm = nn.LayerNorm(channels)
        self.pointwise_conv2 = nn.Conv1d(channels, channels, kernel_size=1)
        self.activation = nn.SiLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), mask (B, T) -> (B, T, D)."""
        keep = mask.unsqueeze(1)  # (B, 1, T)
        x = x.transpose(1, 2).masked_fill(~keep, 0.0)  # (B, D, T)
        x = F.glu(self.pointwise_conv1(x), dim=1).masked_fill(~keep, 0.0)
        x = self.depthwise_conv(x)
        x = self.activation(self.norm(x.transpose(1, 2))).transpose(1, 2)
        x = self.pointwise_conv2(x).masked_fill(~keep, 0.0)
        return x.transpose(1, 2)


class FeedForward(nn.Module):
    """Position-wise Linear -> SiLU -> Linear."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden_dim)
        self.activation = nn.SiLU()
        self.w_2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_2(self.activation(self.w_1(x)))


class ConformerBlock(nn.Module):
    """Pre-norm residual self-attention, convolution and feed-forward, then a final LayerNorm."""

    def __init__(self, dim: int, hidden_dim: int, heads: int):
        super().__init__()
        self.self_attn = RelPositionMultiHeadedAttention(heads, dim)
        self.feed_forward = FeedForward(dim, hidden_dim)
        self.conv_module = ConvolutionModule(dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.norm_mha = nn.LayerNorm(dim)
        self.norm_conv = nn.LayerNorm(dim)
        self.norm_final = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), positions (1, T, D), mask (B, T) -> (B, T, D)."""
        x = x + self.self_attn(self.norm_mha(x), positions, mask)
        x = x + self.conv_module(self.norm_conv(x), mask)
        x = x + self.feed_forward(self.norm_ff(x))
        return self.norm_final(x)


class ConformerEncoder(nn.Module):
    """Log-mel frames (B, T, n_mels) with lengths -> features (B, T', D) at half the frame rate."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        linear_units: int,
        attention_heads: int,
        num_blocks: int,
        input_layer: str = "conv2d2",
    ):
        super().__init__()
        if input_layer != "conv2d2":
            raise ValueError(
                f"only the 'conv2d2' input layer of the IndexTTS releases is supported, got {input_layer!r}"
            )
        self.embed = Conv2dSubsampling2(input_size, output_size)
        self.encoders = nn.ModuleList(
            ConformerBlock(output_size, linear_units, attention_heads) for _ in range(num_blocks)
        )
        self.after_norm = nn.LayerNorm(output_size)

    def forward(
        self, frames: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """frames (B, T, n_mels), lengths (B,) or None for all full -> (features (B, T', D), mask (B, T')).

        The mask is True on valid output frames; features on padded frames are undefined.
        """
        if lengths is None:
            lengths = torch.full((frames.shape[0],), frames.shape[1], device=frames.device)
        mask = length_mask(lengths.to(frames.device), frames.shape[1])
        x, positions, mask = self.embed(frames, mask)
        for block in self.encoders:
            x = block(x, positions, mask)
        return self.after_norm(x), mask
