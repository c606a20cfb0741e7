"""Per-speaker statistics: the seeded train/valid split and the medoid conditioning latent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DISTANCE_METRICS = ("euclidean", "cosine")
DISTANCE_BLOCK_ROWS = 1024


def split_train_valid(num_rows: int, valid_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (ascending) of the train and valid rows: a seeded random ``valid_ratio`` share, at least one.

    With a single row there is nothing to hold out, so it serves as both train and valid row.
    """
    if num_rows < 1:
        raise ValueError("cannot split an empty set of rows")
    if num_rows == 1:
        return [0], [0]
    num_valid = min(num_rows - 1, max(1, round(num_rows * valid_ratio)))
    permutation = np.random.default_rng(seed).permutation(num_rows)
    valid = sorted(int(i) for i in permutation[:num_valid])
    chosen = set(valid)
    return [i for i in range(num_rows) if i not in chosen], valid


@dataclass(frozen=True)
class Medoid:
    """The medoid row and the distance statistics that justify it."""

    index: int
    metric: str
    summed_distances: np.ndarray  # (N,) distance of each row to all others, summed

    def stats(self) -> dict:
        count = len(self.summed_distances)
        mean_pairwise = self.summed_distances / max(count - 1, 1)
        return {
            "num_conditions": count,
            "medoid_mean_distance": float(mean_pairwise[self.index]),
            "mean_distance": float(mean_pairwise.mean()),
            "min_mean_distance": float(mean_pairwise.min()),
            "max_mean_distance": float(mean_pairwise.max()),
        }


def pairwise_distances(rows: torch.Tensor, others: torch.Tensor, metric: str) -> torch.Tensor:
    """Distances between every row of ``rows`` (M, K) and ``others`` (N, K) -> (M, N), in float64."""
    if metric == "euclidean":
        return torch.cdist(rows.double(), others.double())
    if metric == "cosine":
        left = torch.nn.functional.normalize(rows.double(), dim=1)
        right = torch.nn.functional.normalize(others.double(), dim=1)
        return (1.0 - left @ right.T).clamp(min=0.0)
    raise ValueError(f"unknown distance metric {metric!r}; use one of {DISTANCE_METRICS}")


def find_medoid(conditions: np.ndarray, metric: str = "euclidean") -> Medoid:
    """The condition (N, 32, D) with the smallest summed distance to all others (first on ties).

    Distances come from matrix operations over blocks of rows, so memory stays bounded for
    thousands of utterances.
    """
    flat = torch.from_numpy(np.ascontiguousarray(conditions)).reshape(len(conditions), -1)
    sums = torch.cat([
        pairwise_distances(flat[start:start + DISTANCE_BLOCK_ROWS], flat, metric).sum(dim=1)
        for start in range(0, len(flat), DISTANCE_BLOCK_ROWS)
    ])
    return Medoid(index=int(torch.argmin(sums)), metric=metric, summed_distances=sums.numpy())
