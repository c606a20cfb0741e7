"""IndexTTS-2 emotion matrices: an 8-value emotion vector -> an emotion conditioning vector.

The release holds two matrices with one row per (emotion, example speaker), grouped by emotion in
the order of ``EMOTIONS`` with ``emo_num`` rows per emotion (config key; 3, 17, 2, 8, 4, 5, 10, 24):
``feat1.pt`` (``spk_matrix``) the CAMPPlus style (192) of each example speaker, ``feat2.pt``
(``emo_matrix``) the GPT emotion vector of that example. As ``infer_v2`` does, each emotion picks
the example whose speaker style is most cosine-similar to the prompt's (or a random one), and the
picked emotion rows are summed with the vector's weights. The GPT's own emotion vector ``e`` of the
emotion reference is then mixed in: ``sum_k w_k * row_k + (1 - sum_k w_k) * e``.

Before that, the reference scales a vector by ``emo_alpha`` (clamped to [0, 1], each value
truncated to 4 decimals) and its web UI de-emphasises some emotions and caps the sum at 0.8
(``normalize_emotion_vector``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from indextts.checkpoints import read_tensors
from indextts.config import CONFIG_FILENAME
from indextts.errors import CheckpointError, ConfigError, InferenceError
from indextts.families import Family, family_of
from indextts.releases import missing_file_error

EMOTIONS = ("happy", "angry", "sad", "afraid", "disgusted", "melancholic", "surprised", "calm")
EMOTION_BIAS = (0.9375, 0.875, 1.0, 1.0, 0.9375, 0.9375, 0.6875, 0.5625)
"""The reference web UI's weights, which de-emphasise emotions that can sound strange."""
MAX_EMOTION_SUM = 0.8
MAX_EMOTION_VALUE = 1.2
"""The largest weight the reference produces (its text-to-emotion model clamps to [0, 1.2])."""
ALPHA_DECIMALS = 10000


def check_emotion_vector(vector: Sequence[float]) -> torch.Tensor:
    """Validate 8 weights in ``EMOTIONS`` order, each in [0, 1.2]; returns them as a (8,) float tensor."""
    values = [float(v) for v in vector]
    if len(values) != len(EMOTIONS):
        raise InferenceError(
            f"An emotion vector needs {len(EMOTIONS)} values ({', '.join(EMOTIONS)}), but {len(values)} were "
            "given: pass one weight per emotion, in that order.")
    bad = [f"{name}={value}" for name, value in zip(EMOTIONS, values)
           if not (math.isfinite(value) and 0.0 <= value <= MAX_EMOTION_VALUE)]
    if bad:
        raise InferenceError(
            f"Emotion weights must lie between 0 and {MAX_EMOTION_VALUE}, but {', '.join(bad)}: "
            "give each emotion a weight in that range (0 = absent).")
    return torch.tensor(values)


def scale_emotion_vector(vector: Sequence[float], alpha: float) -> list[float]:
    """``emo_alpha`` applied as the reference does: alpha clamped to [0, 1], values truncated to 4 decimals."""
    scale = max(0.0, min(1.0, alpha))
    if scale == 1.0:
        return [float(v) for v in vector]
    return [int(v * scale * ALPHA_DECIMALS) / ALPHA_DECIMALS for v in vector]


def normalize_emotion_vector(vector: Sequence[float], apply_bias: bool = True) -> list[float]:
    """The reference web UI's normalisation: optional per-emotion bias, then the sum capped at 0.8."""
    values = [v * b for v, b in zip(vector, EMOTION_BIAS)] if apply_bias else [float(v) for v in vector]
    total = sum(values)
    if total > MAX_EMOTION_SUM:
        values = [v * (MAX_EMOTION_SUM / total) for v in values]
    return values


@dataclass(frozen=True)
class EmotionMatrices:
    """``feat1`` / ``feat2`` split per emotion: ``speaker[k]`` (n_k, style) and ``emotion[k]`` (n_k, D)."""

    speaker: tuple[torch.Tensor, ...]
    emotion: tuple[torch.Tensor, ...]

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(len(rows) for rows in self.emotion)

    def to(self, device: str | torch.device) -> EmotionMatrices:
        """The matrices on ``device`` (where the styles and weights they meet live)."""
        return EmotionMatrices(tuple(r.to(device) for r in self.speaker), tuple(r.to(device) for r in self.emotion))

    def most_similar_rows(self, style: torch.Tensor) -> torch.Tensor:
        """(B, style) CAMPPlus styles -> (B, 8) index, per emotion, of the example with the closest style."""
        return torch.stack([F.cosine_similarity(style.float()[:, None], rows.float()[None], dim=-1).argmax(-1)
                            for rows in self.speaker], dim=1)

    def random_rows(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, 8) uniformly random example indices, as the reference's ``use_random``."""
        return torch.stack([torch.randint(0, n, (batch,), generator=generator) for n in self.counts], dim=1)

    def weighted_rows(self, weights: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """(B, 8) weights, (B, 8) picked indices -> (B, D) sum of the picked emotion rows times the weights."""
        picked = torch.stack([self.emotion[k][rows[:, k]] for k in range(len(EMOTIONS))], dim=1)
        return (weights.to(picked.dtype)[:, :, None] * picked).sum(1)


def mix_emotion(matrix_vector: torch.Tensor, weights: torch.Tensor, reference_vector: torch.Tensor) -> torch.Tensor:
    """(B, D) ``weighted_rows``, (B, 8) weights, (B, D) GPT emotion vector -> (B, D) emotion conditioning."""
    return matrix_vector + (1 - weights.sum(-1, keepdim=True)) * reference_vector


def _read_matrix(path: Path, family: Family, rows: int) -> torch.Tensor:
    if not path.is_file():
        raise missing_file_error(path, "emotion matrix", family.version)
    matrix = read_tensors(path, "emotion matrix")
    if not isinstance(matrix, torch.Tensor) or matrix.dim() != 2 or matrix.shape[0] != rows:
        shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
        raise CheckpointError(
            f"The emotion matrix {path} must be one (rows, width) tensor with {rows} rows (the sum of "
            f"emo_num in {CONFIG_FILENAME}), but it holds {shape}. Check that the file and {CONFIG_FILENAME} "
            "belong together.")
    return matrix.float()


def load_emotion_matrices(model_dir: str | Path, cfg) -> EmotionMatrices:
    """Read ``cfg.spk_matrix`` (feat1.pt) and ``cfg.emo_matrix`` (feat2.pt) and split them by ``cfg.emo_num``."""
    counts = [int(n) for n in cfg.emo_num]
    if len(counts) != len(EMOTIONS) or min(counts) < 1:
        raise ConfigError(
            f"emo_num in {CONFIG_FILENAME} must give {len(EMOTIONS)} positive row counts, one per emotion "
            f"({', '.join(EMOTIONS)}), but it is {counts}. Restore it from the release config.")
    model_dir = Path(model_dir)
    family = family_of(cfg, str(model_dir / CONFIG_FILENAME))
    speaker = _read_matrix(model_dir / str(cfg.spk_matrix).strip(), family, sum(counts))
    emotion = _read_matrix(model_dir / str(cfg.emo_matrix).strip(), family, sum(counts))
    return EmotionMatrices(torch.split(speaker, counts), torch.split(emotion, counts))
