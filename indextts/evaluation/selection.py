"""Choose the checkpoint a listener would choose (``RunFolder.promote`` makes it the run's final adapter).

The rule (seed-tts-eval's two measures, similarity first): among the checkpoints whose pooled
speaker similarity is within ``epsilon`` of the best checkpoint's, take the one with the lowest
pooled error rate (``mer``: WER over English words, CER over Chinese characters). Ties go to the
higher SIM, then to the later step. Checkpoints without a SIM are never chosen; when no
checkpoint has an error rate (no ASR backend for the eval languages), the highest SIM wins.
"""

from __future__ import annotations

import math

from indextts.evaluation.report import ALL_SPEAKERS, REAL

RULE = ("lowest pooled error rate (mer) among the checkpoints whose mean SIM is within epsilon of the best "
        "checkpoint's SIM; ties: higher SIM, then later step")


def choose_best(summary: list[dict], epsilon: float) -> str | None:
    """The name of the chosen checkpoint from ``summary`` rows (see the module docstring), or None."""
    candidates = [r for r in summary if r["speaker"] == ALL_SPEAKERS and r["checkpoint"] != REAL
                  and r["sim"] is not None]
    if not candidates:
        return None
    best_sim = max(r["sim"] for r in candidates)
    close = [r for r in candidates if r["sim"] >= best_sim - epsilon]

    def rank(row: dict) -> tuple:
        error = row["mer"] if row["mer"] is not None else math.inf
        return error, -row["sim"], -(row["step"] if row["step"] is not None else -1)

    return min(close, key=rank)["checkpoint"]


def describe_choice(best: str | None, epsilon: float) -> dict:
    """What best.json records: the chosen checkpoint, epsilon and the rule in words."""
    return {"best": best, "epsilon": epsilon, "rule": RULE}
