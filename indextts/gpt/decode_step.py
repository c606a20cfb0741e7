"""The GPT-2 stack run step by step over a preallocated key/value cache, with fixed shapes when asked.

``DecodeState`` holds everything one generation reads and writes on the device: the cache
(layers, rows, heads, slots, head_dim), which prompt slots hold real tokens, and the inputs of the next
step (codes, step index, beam parents) as tensors. ``decode_step`` reads only that state, so the same
function runs eagerly, under ``torch.compile(fullgraph=True)``, or captured once as a CUDA graph and
replayed: the write slot and mel position come from a device tensor, not from Python, and with
``window=None`` attention spans all cache slots with a mask hiding the ones not written yet. Eager
decoding passes the written length as ``window`` instead, so a CPU step reads no more of the cache than
it needs.

The blocks are GPT-2's own modules (``ln_1``, ``attn.c_attn``, ``attn.c_proj``, ``ln_2``, ``mlp``,
``ln_f``) called in GPT-2's order, so LoRA-wrapped or quantised linears work unchanged; attention is
``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GENERATED_POSITION_OFFSET = 1
"""Mel position of the k-th generated code is k + this offset (``start_mel`` sits at position 0)."""


def attention_scale(gpt_config, layer_index: int) -> float:
    """The softmax scale GPT-2 uses in layer ``layer_index`` (the same as transformers computes)."""
    scale = 1.0
    if gpt_config.scale_attn_weights:
        scale = (gpt_config.n_embd // gpt_config.n_head) ** -0.5
    if gpt_config.scale_attn_by_inverse_layer_idx:
        scale /= float(layer_index + 1)
    return scale


class StaticKVCache:
    """Keys and values of every layer in two tensors (layers, rows, heads, slots, head_dim), allocated once."""

    def __init__(self, layers: int, rows: int, heads: int, slots: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        shape = (layers, rows, heads, slots, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)

    @property
    def slots(self) -> int:
        return self.keys.shape[3]

    def write(self, layer: int, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store (rows, heads, T, head_dim) states at cache slots (T,) of ``layer``."""
        self.keys[layer].index_copy_(2, slots, keys)
        self.values[layer].index_copy_(2, slots, values)

    def reorder_rows(self, parents: torch.Tensor, window: int, only_changed: bool) -> None:
        """Make row i hold what row ``parents[i]`` held in the first ``window`` slots (beam selection).

        Each layer's gather goes through one temporary (one layer big) and writes the rows back in place, so
        the cache tensors keep their addresses (a captured graph reads them). ``only_changed`` copies only
        the rows whose parent differs, which needs the host to read ``parents``: use it only where that costs
        nothing (CPU).
        """
        if only_changed:
            targets = (parents != torch.arange(parents.shape[0], device=parents.device)).nonzero()[:, 0]
            if targets.numel() == 0:
                return
            sources = parents[targets]
            for cache in (self.keys, self.values):
                cache[:, targets, :, :window] = cache[:, sources, :, :window]
            return
        for cache in (self.keys, self.values):
            for layer in cache:
                layer[:, :, :window] = layer[:, :, :window].index_select(0, parents)


class DecodeState:
    """Device tensors of one generation bucket: cache, prompt layout and the next step's inputs.

    rows = batch * repeats (beams); ``slots`` >= prompt + new codes. ``load_prompt`` refills it for a new
    batch, so a bucket (and a graph captured on it) serves many generations.
    """

    def __init__(self, model, rows: int, slots: int, dtype: torch.dtype, device: torch.device):
        config = model.gpt.config
        self.model = model
        self.dtype = dtype
        self.cache = StaticKVCache(config.n_layer, rows, config.n_head, slots, config.n_embd // config.n_head,
                                   dtype, device)
        self.key_is_valid = torch.ones(rows, slots, dtype=torch.bool, device=device)
        self.slot_numbers = torch.arange(slots, device=device)
        self.prompt_length = torch.zeros((), dtype=torch.long, device=device)
        self.codes = torch.zeros(rows, dtype=torch.long, device=device)
        self.index = torch.ones((), dtype=torch.long, device=device)
        self.parents = torch.arange(rows, device=device)

    @property
    def rows(self) -> int:
        return self.codes.shape[0]

    def load_prompt(self, is_prompt: torch.Tensor, repeats: int) -> None:
        """Mark the real prompt slots of a left-padded batch: is_prompt (B, P) bool, each row ``repeats`` times."""
        prompt_length = is_prompt.shape[1]
        self.key_is_valid.fill_(True)
        self.key_is_valid[:, :prompt_length] = is_prompt.repeat_interleave(repeats, dim=0)
        self.prompt_length.fill_(prompt_length)

    def set_inputs(self, codes: torch.Tensor, index: int, parents: torch.Tensor | None) -> None:
        """Copy the next step's inputs into the state (no host sync: ``index`` is a Python int)."""
        self.codes.copy_(codes)
        self.index.fill_(index)
        if parents is not None:
            self.parents.copy_(parents)


def run_blocks(gpt, hidden: torch.Tensor, mask: torch.Tensor, cache: StaticKVCache, write_slots: torch.Tensor,
               window: int | None, repeats: int = 1) -> torch.Tensor:
    """GPT-2 blocks + ``ln_f`` over new states (R, T, D), writing their keys/values at ``write_slots`` (T,).

    With ``window`` the new queries attend to the first ``window`` cache slots through ``mask``
    (R, 1, T, window); without it (the prompt pass) they attend only to each other, and each row's keys are
    stored ``repeats`` times (one copy per beam).
    """
    config = gpt.config
    rows, length, dim = hidden.shape
    heads = config.n_head
    for layer, block in enumerate(gpt.h):
        residual = hidden
        query, key, value = block.attn.c_attn(block.ln_1(hidden)).split(dim, dim=2)
        query, key, value = (t.view(rows, length, heads, dim // heads).transpose(1, 2) for t in (query, key, value))
        if window is None:
            cache.write(layer, write_slots, key.repeat_interleave(repeats, dim=0),
                        value.repeat_interleave(repeats, dim=0))
        else:
            cache.write(layer, write_slots, key, value)
            key, value = cache.keys[layer, :, :, :window], cache.values[layer, :, :, :window]
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask,
                                                  scale=attention_scale(config, layer))
        attended = attended.transpose(1, 2).reshape(rows, length, dim)
        hidden = block.attn.c_proj(attended) + residual
        hidden = hidden + block.mlp(block.ln_2(hidden))
    return gpt.ln_f(hidden)


def prefill(state: DecodeState, prompt: torch.Tensor, is_prompt: torch.Tensor, repeats: int) -> torch.Tensor:
    """Prompt + ``start_mel`` pass over a left-padded batch: prompt (B, P, D), is_prompt (B, P).

    Fills cache slots 0..P for every row ``repeats`` times; returns float logits (B, V) of the first code.
    """
    model, device, dtype = state.model, prompt.device, state.dtype
    batch = prompt.shape[0]
    state.load_prompt(is_prompt, repeats)
    start = torch.full((batch, 1), model.start_mel_token, dtype=torch.long, device=device)
    start_embedding = model.mel_inputs(start, torch.zeros_like(start)).to(dtype)
    embeddings = torch.cat([prompt.to(dtype), start_embedding], dim=1)  # (B, P+1, D)
    length = embeddings.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    allowed = causal[None] & state.key_is_valid[::repeats, None, :length]
    allowed |= torch.eye(length, dtype=torch.bool, device=device)[None]  # padded rows see themselves
    mask = torch.zeros(batch, 1, length, length, dtype=dtype, device=device)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    slots = torch.arange(length, device=device)
    hidden = run_blocks(model.gpt, embeddings, mask, state.cache, slots, window=None, repeats=repeats)
    return model.mel_logits(hidden[:, -1]).float()


def decode_step(state: DecodeState, window: int | None, reorder: bool, only_changed: bool = False) -> torch.Tensor:
    """Feed ``state.codes`` (R,) as generated code number ``state.index``; float logits (R, V) of the next one.

    ``reorder`` first makes every row continue from the cache of its ``state.parents`` row (beams).
    ``window=None`` attends over all cache slots (fixed shapes: compile / CUDA graph); an int attends over
    that many leading slots, which must cover the written ones (eager).
    """
    model, cache = state.model, state.cache
    window = cache.slots if window is None else window
    if reorder:
        cache.reorder_rows(state.parents, window, only_changed)
    positions = (state.index + GENERATED_POSITION_OFFSET).expand(state.rows, 1)
    hidden = model.mel_inputs(state.codes[:, None], positions).to(state.dtype)  # (R, 1, D)
    write_slot = state.prompt_length + state.index
    allowed = state.key_is_valid[:, :window] & (state.slot_numbers[:window] <= write_slot)
    mask = torch.zeros(state.rows, 1, 1, window, dtype=state.dtype, device=hidden.device)
    mask = mask.masked_fill(~allowed[:, None, None, :], torch.finfo(state.dtype).min)
    hidden = run_blocks(model.gpt, hidden, mask, cache, write_slot[None], window)
    return model.mel_logits(hidden[:, -1]).float()
