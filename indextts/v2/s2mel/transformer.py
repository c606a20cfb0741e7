"""The DiT's transformer: pre-norm blocks with rotary attention, SwiGLU feed-forward and adaptive RMS norms.

Every norm is scaled and shifted by a projection of the diffusion-time embedding (B, 1, D). With the
U-ViT skip connections, the outputs of the first ``depth // 2`` blocks are fed, last first, into the
blocks after the middle one. Attention sees every frame within the valid length (no causal mask).
Parameter names follow the reference checkpoint (``layers.N.attention.wqkv`` ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ROPE_BASE = 10000.0
NORM_EPS = 1e-5
FFN_MULTIPLE = 256


def feed_forward_width(dim: int) -> int:
    """SwiGLU hidden width: two thirds of 4 * dim, rounded up to a multiple of 256 (1536 for 512)."""
    hidden = int(2 * 4 * dim / 3)
    return -(-hidden // FFN_MULTIPLE) * FFN_MULTIPLE


def rotary_table(positions: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Cosines and sines of the rotary angles, (T, head_dim // 2, 2), for integer ``positions`` (T,)."""
    inverse_freqs = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2, device=positions.device)[: head_dim // 2]
                                         .float() / head_dim))
    angles = torch.outer(positions.float(), inverse_freqs)
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


def apply_rotary(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (B, T, H, Dh) by the angles in ``table`` (T, Dh // 2, 2)."""
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    table = table.view(1, pairs.shape[1], 1, pairs.shape[3], 2)
    rotated = torch.stack([
        pairs[..., 0] * table[..., 0] - pairs[..., 1] * table[..., 1],
        pairs[..., 1] * table[..., 0] + pairs[..., 0] * table[..., 1],
    ], dim=-1)
    return rotated.flatten(3).type_as(x)


class RMSNorm(nn.Module):
    """x / rms(x) * weight over the last axis."""

    def __init__(self, dim: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


class AdaptiveRMSNorm(nn.Module):
    """RMS norm whose scale and shift come from a conditioning vector: (B, T, D), (B, 1, D) -> (B, T, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.project_layer = nn.Linear(dim, 2 * dim)
        self.norm = RMSNorm(dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        scale, shift = self.project_layer(condition).chunk(2, dim=-1)
        return scale * self.norm(x) + shift


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions and a key mask."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.wqkv = nn.Linear(dim, 3 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, rotary: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), rotary (T, Dh // 2, 2), key_mask (B, 1, 1, T) bool -> (B, T, D)."""
        batch, length, dim = x.shape
        q, k, v = (part.view(batch, length, self.heads, self.head_dim) for part in self.wqkv(x).split(dim, dim=-1))
        q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
        attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  attn_mask=key_mask)  # (B, H, T, Dh)
        return self.wo(attended.transpose(1, 2).reshape(batch, length, dim))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int):
        super().__init__()
        hidden = feed_forward_width(dim)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm attention and feed-forward, each norm conditioned on the time embedding."""

    def __init__(self, dim: int, heads: int, with_skip_input: bool):
        super().__init__()
        self.attention = Attention(dim, heads)
        self.feed_forward = FeedForward(dim)
        self.ffn_norm = AdaptiveRMSNorm(dim)
        self.attention_norm = AdaptiveRMSNorm(dim)
        if with_skip_input:
            self.skip_in_linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor, condition: torch.Tensor, rotary: torch.Tensor, key_mask: torch.Tensor,
                skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = self.skip_in_linear(torch.cat([x, skip], dim=-1))
        x = x + self.attention(self.attention_norm(x, condition), rotary, key_mask)
        return x + self.feed_forward(self.ffn_norm(x, condition))


class Transformer(nn.Module):
    """Stack of ``depth`` blocks and a final adaptive norm: (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int, heads: int, depth: int, uvit_skip_connection: bool):
        super().__init__()
        self.head_dim = dim // heads
        self.layers = nn.ModuleList(TransformerBlock(dim, heads, uvit_skip_connection) for _ in range(depth))
        self.norm = AdaptiveRMSNorm(dim)
        middle = depth // 2
        self.emits_skip = [uvit_skip_connection and i < middle for i in range(depth)]
        self.receives_skip = [uvit_skip_connection and i > middle for i in range(depth)]

    def forward(self, x: torch.Tensor, condition: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, D), condition (B, 1, D), key_mask (B, 1, 1, T) bool (True = attend)."""
        rotary = rotary_table(torch.arange(x.shape[1], device=x.device), self.head_dim)
        skips = []
        for layer, emits, receives in zip(self.layers, self.emits_skip, self.receives_skip):
            x = layer(x, condition, rotary, key_mask, skips.pop() if receives else None)
            if emits:
                skips.append(x)
        return self.norm(x, condition)
