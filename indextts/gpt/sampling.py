"""How generation turns logits into the next codes: Hugging Face's logits processors and draws on the device.

``process_scores`` applies the repetition penalty, the minimum length and (when sampling) temperature,
top-k and top-p, in the order Hugging Face ``generate`` applies them; ``draw_without_replacement`` samples
from the resulting probabilities without reading anything back to the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from indextts.gpt.generation import GenerationConfig


def penalize_repetitions(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Divide positive and multiply negative scores (R, V) of ids already ``seen`` (R, V) by ``penalty``."""
    if penalty == 1.0:
        return scores
    penalized = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalized, scores)


def warp_for_sampling(scores: torch.Tensor, config: GenerationConfig, min_tokens_to_keep: int) -> torch.Tensor:
    """Temperature, top-k and top-p filtering of (R, V) scores as Hugging Face applies them when sampling."""
    if config.temperature != 1.0:
        scores = scores / config.temperature
    if config.top_k > 0:
        k = min(max(config.top_k, min_tokens_to_keep), scores.shape[-1])
        kth_best = torch.topk(scores, k).values[..., -1:]
        scores = scores.masked_fill(scores < kth_best, -float("inf"))
    if config.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - config.top_p)
        remove_sorted[..., -min_tokens_to_keep:] = False
        remove = remove_sorted.scatter(1, order, remove_sorted)
        scores = scores.masked_fill(remove, -float("inf"))
    return scores


def process_scores(scores: torch.Tensor, seen: torch.Tensor, step: int, config: GenerationConfig, stop_token: int,
                   min_tokens_to_keep: int) -> torch.Tensor:
    """Logits processors in Hugging Face order: repetition penalty, minimum length, then sampling warpers."""
    scores = penalize_repetitions(scores, seen, config.repetition_penalty)
    if step < config.min_new_tokens:
        scores[:, stop_token] = -float("inf")
    if config.do_sample:
        scores = warp_for_sampling(scores, config, min_tokens_to_keep)
    return scores


def draw_without_replacement(probabilities: torch.Tensor, count: int,
                             generator: torch.Generator | None) -> torch.Tensor:
    """(R, count) ids drawn without replacement from (R, V) probabilities, on the device, with no host sync.

    The exponential race: with E ~ Exp(1) per id, the order of p / E is a draw without replacement
    proportional to p (for one id, the Gumbel-max trick in another form). ``torch.multinomial`` draws
    the same way but first checks its input on the host (two syncs per call, each waiting for the GPU);
    with the same generator state it gives these very ids (tests/test_sampling.py).
    """
    race = torch.empty_like(probabilities).exponential_(1.0, generator=generator)
    ratios = probabilities / race
    if count == 1:
        return ratios.argmax(dim=-1, keepdim=True)
    return torch.topk(ratios, count).indices
