"""Crash-safe extraction outputs: per-utterance arrays and progress records, JSONL, speaker_info.json.

Every file is written through ``indextts.atomic_files``, so a killed run leaves either the old file
or the new one, never half of one. An
utterance is finished once its progress record (written last) is present, matches the current
inputs, and its ``.npy`` files load with the expected shapes; re-runs reuse finished utterances.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indextts.atomic_files import write_json_atomic
from indextts.errors import DataError

CODES_DIR = "codes"
CONDITIONS_DIR = "conditions"
PROGRESS_DIR = ".extraction"
SPEAKER_INFO = "speaker_info.json"
METADATA = "metadata.jsonl"
METADATA_TRAIN = "metadata_train.jsonl"
METADATA_VALID = "metadata_valid.jsonl"
SKIPPED = "skipped.jsonl"
MEDOID_CONDITION = "medoid_condition.npy"
MEDOID_INFO = "medoid_info.json"


def relative_path(path: Path, start: Path) -> str:
    """``path`` relative to the folder ``start`` (POSIX separators), for portable JSON paths."""
    return Path(os.path.relpath(path, start)).as_posix()


def resolve_path(value: str | None, base: Path) -> Path | None:
    """A path stored in JSON: absolute ones as they are, relative ones from ``base``."""
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


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

    def record(self, uid: str) -> Path:
        return self.folder / PROGRESS_DIR / f"{uid}.json"


def write_record(path: Path, record: dict) -> None:
    """Write an utterance's progress record; it is the commit point, so write it after the arrays."""
    write_json_atomic(path, record, sync=False)


def read_valid_record(paths: SpeakerPaths, uid: str, fingerprint: str,
                      condition_shape: tuple[int, int] | None) -> dict | None:
    """The utterance's progress record when it proves the utterance finished for these inputs, else None.

    A "done" record needs its codes (int32 (N,)) and, when ``condition_shape`` (latents, D) is
    given, its condition (float32 of that shape) to load; a "skipped" record needs nothing else.
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
        if condition_shape is not None:
            condition = np.load(paths.condition(uid), mmap_mode="r", allow_pickle=False)
            if condition.dtype != np.float32 or condition.shape != tuple(condition_shape):
                return None
    except (OSError, ValueError, KeyError):
        return None
    return record


@dataclass(frozen=True)
class SpeakerInfo:
    """One entry of speaker_info.json, with paths resolved to absolute ones.

    ``base`` is the ``CheckpointFolder.identity()`` of the checkpoint the data was extracted with
    (None for extractions older than that field); ``special_tokens`` lists the ``<name>`` tokens
    of the speaker's transcripts that the base ``bpe.model`` lacks.
    """

    speaker: str
    avg_duration: float
    sample_num: int
    total_duration_in_seconds: float
    total_duration_in_minutes: float
    total_duration_in_hours: float
    train_jsonl: Path
    valid_jsonl: Path
    medoid_condition: Path | None
    base: dict | None = None
    special_tokens: tuple[str, ...] = ()


SPEAKER_INFO_FIELDS = ("speaker", "avg_duration", "sample_num", "total_duration_in_seconds",
                       "total_duration_in_minutes", "total_duration_in_hours", "train_jsonl",
                       "valid_jsonl", "medoid_condition")


def read_speaker_entries(path: Path) -> list[dict]:
    """The raw entries of speaker_info.json (``[]`` when the file does not exist yet)."""
    return _load_speaker_entries(path) if path.is_file() else []


def _load_speaker_entries(path: Path) -> list[dict]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"Cannot read {path}: {error}. Fix or delete it, then re-run the extraction.") from error
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "speaker" in e for e in entries):
        raise DataError(f"{path} is not a list of speaker entries (objects with a 'speaker' key). "
                        "Delete it and re-run indextts-extract for every speaker.")
    return entries


def read_speaker_info(path: str | Path) -> list[SpeakerInfo]:
    """Read speaker_info.json (relative paths resolved from its folder, absolute ones kept)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"{path} does not exist. Run indextts-extract first; it writes "
                        f"{SPEAKER_INFO} in its --output_dir.")
    infos = []
    for index, entry in enumerate(_load_speaker_entries(path)):
        missing = [key for key in SPEAKER_INFO_FIELDS if key not in entry]
        if missing:
            raise DataError(f"Entry {index} ('{entry['speaker']}') of {path} lacks {missing}. "
                            "Re-run indextts-extract for that speaker.")
        base = path.parent
        infos.append(SpeakerInfo(
            speaker=entry["speaker"], avg_duration=float(entry["avg_duration"]),
            sample_num=int(entry["sample_num"]),
            total_duration_in_seconds=float(entry["total_duration_in_seconds"]),
            total_duration_in_minutes=float(entry["total_duration_in_minutes"]),
            total_duration_in_hours=float(entry["total_duration_in_hours"]),
            train_jsonl=resolve_path(entry["train_jsonl"], base),
            valid_jsonl=resolve_path(entry["valid_jsonl"], base),
            medoid_condition=resolve_path(entry["medoid_condition"], base),
            base=entry.get("base"), special_tokens=tuple(entry.get("special_tokens", ())),
        ))
    return infos


def merge_speaker_info(path: Path, entries: dict[str, dict | None]) -> list[dict]:
    """Replace (or, for ``None``, remove) the named speakers' entries in ``path``; write atomically.

    Other speakers' entries keep their place; new speakers are appended in the given order.
    """
    existing = read_speaker_entries(path)
    merged = []
    for entry in existing:
        name = entry["speaker"]
        if name not in entries:
            merged.append(entry)
        elif entries[name] is not None and all(m["speaker"] != name for m in merged):
            merged.append(entries[name])
    present = {entry["speaker"] for entry in merged}
    merged += [entry for name, entry in entries.items() if entry is not None and name not in present]
    write_json_atomic(path, merged)
    return merged
