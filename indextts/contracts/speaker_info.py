"""``speaker_info.json``: what extraction hands to training and evaluation, one entry per speaker.

Written by extraction (``merge_speaker_info``), read by training and evaluation
(``read_speaker_info``). Each entry names the speaker's train and valid manifests
(``indextts.contracts.manifests``) and its medoid condition (``medoid_condition.npy``, described by
``medoid_info.json`` beside it), by paths relative to the file's folder (``indextts.contracts.paths``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from indextts.atomic_files import write_json_atomic
from indextts.contracts.paths import resolve_path
from indextts.errors import DataError

SPEAKER_INFO = "speaker_info.json"
MEDOID_CONDITION = "medoid_condition.npy"
MEDOID_INFO = "medoid_info.json"
MEDOID_EMOTION = "medoid_emotion.npy"
MEDOID_EMOTION_INFO = "medoid_emotion.json"


@dataclass(frozen=True)
class SpeakerInfo:
    """One entry of speaker_info.json, with paths resolved to absolute ones.

    ``base`` is the ``CheckpointFolder.identity()`` of the checkpoint the data was extracted with
    (None for extractions older than that field); ``special_tokens`` lists the ``<name>`` tokens
    of the speaker's transcripts that the base ``bpe.model`` lacks. ``family`` is the version of the
    IndexTTS-2 / 2.5 folder the data comes from (None: generation 1, whose entries do not name it),
    ``code_kind`` what its codes are ("mel" DVAE codes or "semantic" codes), ``medoid_emotion`` the
    speaker's medoid emotion vector (generation 2 with conditions), ``audio_rates`` the rate each
    part read the audio at; training refuses data whose family is not its base's.
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
    family: str | None = None
    code_kind: str = "mel"
    medoid_emotion: Path | None = None
    audio_rates: dict | None = None


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
            family=entry.get("family"), code_kind=entry.get("code_kind", "mel"),
            medoid_emotion=resolve_path(entry.get("medoid_emotion"), base), audio_rates=entry.get("audio_rates"),
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


def entry_family_name(entry: dict) -> str:
    """The model family a speaker_info.json entry was extracted with, for messages (1.x entries name none)."""
    version = entry.get("family")
    return "IndexTTS 1.0/1.5" if version is None else f"IndexTTS-{version}"
