"""Perceiver resampler: a fixed set of learned latents cross-attends to variable-length features.

It compresses the conformer's speaker features (B, T', D_context) into (B, num_latents, D), the
conditioning prefix of the GPT. Each attention layer attends over the latents and the context
together; padded context frames are masked out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x / ||x|| * sqrt(D) * gamma (L2-normalise, then rescale)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.scale * self.gamma


class GEGLU(nn.Module):
    """Split the last dimension into (value, gate) and return value * gelu(gate)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = x.chunk(2, dim=-1)
        return F.gelu(gate) * value


def feed_forward(dim: int, mult: float) -> nn.Sequential:
    """Linear -> GEGLU -> Linear with a 2/3-sized inner width (keeps the parameter count of mult*dim)."""
    inner = int(dim * mult * 2 / 3)
    return nn.Sequential(nn.Linear(dim, inner * 2), GEGLU(), nn.Linear(inner, dim))


class LatentAttention(nn.Module):
    """Multi-head attention from the latents to [latents; context], without biases."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, inner = x.shape
        return x.view(batch, length, self.heads, inner // self.heads).transpose(1, 2)  # (B, H, T, d)

    def forward(self, latents: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """latents (B, N, D), context (B, T, D), mask (B, N + T) True on valid keys -> (B, N, D)."""
        keys_values = torch.cat([latents, context.to(latents.dtype)], dim=1)
        k, v = self.to_kv(keys_values).chunk(2, dim=-1)
        q, k, v = (self._split_heads(t) for t in (self.to_q(latents), k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, H, N, d)
        return self.to_out(out.transpose(1, 2).flatten(2))


class PerceiverResampler(nn.Module):
    """Context (B, T, D_context) with mask (B, T) -> latents (B, num_latents, D)."""

    def __init__(
        self,
        dim: int,
        dim_context: int,
        num_latents: int = 32,
        heads: int = 8,
        head_dim: int = 64,
        ff_mult: float = 4,
        depth: int = 2,
    ):
        super().__init__()
        self.proj_context = nn.Linear(dim_context, dim) if dim_context != dim else nn.Identity()
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.ModuleList([LatentAttention(dim, heads, head_dim), feed_forward(dim, ff_mult)])
            for _ in range(depth)
        )
        self.norm = RMSNorm(dim)

    def forward(self, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """context (B, T, D_context), mask (B, T) True on valid frames (None: all valid) -> (B, N, D)."""
        context = self.proj_context(context)
        batch = context.shape[0]
        latents = self.latents.unsqueeze(0).expand(batch, -1, -1)
        latent_mask = torch.ones(batch, latents.shape[1], dtype=torch.bool, device=context.device)
        if mask is None:
            mask = torch.ones(context.shape[:2], dtype=torch.bool, device=context.device)
        key_mask = torch.cat([latent_mask, mask], dim=1)
        for attention, ff in self.layers:
            latents = attention(latents, context, key_mask) + latents
            latents = ff(latents) + latents
        return self.norm(latents)
