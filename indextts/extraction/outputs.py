"""Crash-safe extraction outputs: per-utterance arrays and progress records (the files passed on to
training, speaker_info.json and the manifests, are ``indextts.contracts``').

Every file is written through ``indextts.atomic_files``, so a killed run leaves either the old file
or the new one, never half of one. An
utterance is finished once its progress record (written last) is present, matches the current
inputs, and its ``.npy`` files load with the expected shapes; re-runs reuse finished utterances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indextts.atomic_files import write_json_atomic

CODES_DIR = "codes"
CONDITIONS_DIR = "conditions"
EMOTIONS_DIR = "emotions"
PROGRESS_DIR = ".extraction"
SKIPPED = "skipped.jsonl"


@dataclass(frozen=True)
class SpeakerPaths:
    """Where one speaker's outputs live under the output root."""

    root: Path
    speaker: str

    @property
    def folder(self) -> Path:
        return self.root / self.speaker

    def codes(self, uid: str) -> Path:
        return self.folder / CODES_DIR / f"{uid}.npy"

    def condition(self, uid: str) -> Path:
        return self.folder / CONDITIONS_DIR / f"{uid}.npy"

    def emotion(self, uid: str) -> Path:
        return self.folder / EMOTIONS_DIR / f"{uid}.npy"

    def record(self, uid: str) -> Path:
        return self.folder / PROGRESS_DIR / f"{uid}.json"


def write_record(path: Path, record: dict) -> None:
    """Write an utterance's progress record; it is the commit point, so write it after the arrays."""
    write_json_atomic(path, record, sync=False)


def _holds_floats(path: Path, shape: tuple[int, ...]) -> bool:
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    return array.dtype == np.float32 and array.shape == tuple(shape)


def read_valid_record(paths: SpeakerPaths, uid: str, fingerprint: str,
                      condition_shape: tuple[int, int] | None, emotion_dim: int | None = None) -> dict | None:
    """The utterance's progress record when it proves the utterance finished for these inputs, else None.

    A "done" record needs its codes (int32 (N,)) and, when ``condition_shape`` (latents, D) is
    given, its condition (float32 of that shape) to load, and when ``emotion_dim`` is given its
    emotion vector (float32 (D,)); a "skipped" record needs nothing else.
    """
    try:
        record = json.loads(paths.record(uid).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint:
        return None
    if record.get("status") == "skipped":
        return record
    if record.get("status") != "done":
        return None
    try:
        codes = np.load(paths.codes(uid), mmap_mode="r", allow_pickle=False)
        if codes.dtype != np.int32 or codes.shape != (record["num_codes"],):
            return None
        if condition_shape is not None and not _holds_floats(paths.condition(uid), condition_shape):
            return None
        if emotion_dim is not None and not _holds_floats(paths.emotion(uid), (emotion_dim,)):
            return None
    except (OSError, ValueError, KeyError):
        return None
    return record
