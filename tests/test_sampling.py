"""Sampling on the device without host syncs: the exponential race draws what ``torch.multinomial`` draws."""

from __future__ import annotations

import itertools

import torch

from indextts.gpt.sampling import draw_without_replacement

# A fixed distribution with zeros (ids removed by top-k / top-p) and a long tail.
PROBABILITIES = torch.tensor([0.30, 0.0, 0.25, 0.15, 0.0, 0.12, 0.10, 0.08])
DRAWS = 200_000
CHI_SQUARE_999 = {5: 20.515, 29: 58.301}
"""Upper 0.1 % points of the chi-square distribution by degrees of freedom (scipy.stats.chi2.ppf(0.999, df),
computed once and pinned): a correct sampler exceeds them in 1 run of 1000, and the seeds are pinned."""
TOTAL_VARIATION_LIMIT = 0.01
"""Between two samplers of one distribution, each with 200k draws over 6 ids, the total variation of their
empirical frequencies is about 0.5 * sum_i sqrt(4 p_i (1 - p_i) / (pi N)) = 0.0027 on average; 0.01 is
almost four times that, while a sampler off by a few percent on one id already exceeds it."""


def _frequencies(ids: torch.Tensor, vocab: int) -> torch.Tensor:
    return torch.bincount(ids.flatten(), minlength=vocab).double() / ids.numel()


def _chi_square(observed_counts: torch.Tensor, expected: torch.Tensor) -> float:
    """Pearson's statistic over the ids of nonzero expected probability."""
    keep = expected > 0
    total = observed_counts.sum()
    expected_counts = expected[keep] * total
    return float(((observed_counts[keep] - expected_counts) ** 2 / expected_counts).sum())


def test_the_same_ids_as_torch_multinomial_for_the_same_generator_state():
    """torch.multinomial (no replacement, or one id) is this race behind host checks: same draws, so the
    sampled codes equal transformers' ``generate`` (tests/test_generation.py) and no sampled golden moves."""
    probabilities = torch.rand(6, 40, generator=torch.Generator().manual_seed(0)).softmax(dim=-1)
    probabilities[:, 10:20] = 0
    for count in (1, 6):
        ours, theirs = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
        for _ in range(3):
            expected = torch.multinomial(probabilities, count, generator=theirs)
            assert torch.equal(draw_without_replacement(probabilities, count, ours), expected)


def test_one_draw_follows_the_distribution_like_multinomial():
    rows = PROBABILITIES.expand(DRAWS, -1)
    ours = draw_without_replacement(rows, 1, torch.Generator().manual_seed(1))
    theirs = torch.multinomial(rows, 1, generator=torch.Generator().manual_seed(2))
    vocab = len(PROBABILITIES)
    assert not bool((PROBABILITIES[ours] == 0).any()), "an id of probability 0 was drawn"
    counts = torch.bincount(ours.flatten(), minlength=vocab).double()
    degrees = int((PROBABILITIES > 0).sum()) - 1
    assert _chi_square(counts, PROBABILITIES.double()) < CHI_SQUARE_999[degrees]
    distance = 0.5 * float((_frequencies(ours, vocab) - _frequencies(theirs, vocab)).abs().sum())
    assert distance < TOTAL_VARIATION_LIMIT


def test_draws_without_replacement_follow_the_sequential_rule():
    """Two ids without replacement: P(i then j) = p_i p_j / (1 - p_i), as multinomial without replacement."""
    support = [i for i, p in enumerate(PROBABILITIES.tolist()) if p > 0]
    pairs = list(itertools.permutations(support, 2))
    p = PROBABILITIES.double()
    expected = torch.tensor([float(p[i] * p[j] / (1 - p[i])) for i, j in pairs], dtype=torch.float64)
    drawn = draw_without_replacement(PROBABILITIES.expand(DRAWS, -1), 2, torch.Generator().manual_seed(3))
    assert bool((drawn[:, 0] != drawn[:, 1]).all())
    pair_index = {pair: k for k, pair in enumerate(pairs)}
    codes = torch.tensor([pair_index[(int(a), int(b))] for a, b in drawn.tolist()])
    counts = torch.bincount(codes, minlength=len(pairs)).double()
    assert _chi_square(counts, expected) < CHI_SQUARE_999[len(pairs) - 1]
