"""One speaker's files after extraction: manifests, train/valid split, skipped lines, medoid, info entry.

A speaker whose re-extraction yields no usable utterance keeps its previous files and its
speaker_info.json entry untouched: the outcome is marked failed and the run exits non-zero.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indextts.atomic_files import remove_temp_files, write_json_atomic, write_jsonl_atomic, write_npy_atomic
from indextts.contracts import manifests, speaker_info
from indextts.contracts.paths import relative_path
from indextts.extraction import outputs
from indextts.contracts.audio_list import SkippedLine, SpeakerList, Utterance
from indextts.extraction.speaker_stats import find_medoid, split_train_valid

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = 3600.0
EXAMPLE_LINES = 3


@dataclass
class SpeakerSummary:
    """What one speaker's extraction kept and skipped; ``failed`` when nothing could be kept."""

    speaker: str
    folder: Path
    kept: int = 0
    total_seconds: float = 0.0
    skipped: Counter = field(default_factory=Counter)
    failed: bool = False
    kept_previous: bool = False
    problem: str = ""


@dataclass(frozen=True)
class SpeakerSettings:
    """Run-wide settings the speaker files depend on."""

    root: Path
    valid_ratio: float
    seed: int
    distance_metric: str
    with_conditions: bool
    base: dict
    precision: str = "fp32"
    with_emotions: bool = False
    family_fields: dict = field(default_factory=dict)
    """Generation 2: ``family``, ``code_kind`` and ``audio_rates`` for the speaker entry (``code_kind``
    also in each manifest row); empty for generation 1, whose files keep their 1.5 form."""


def manifest_row(utterance: Utterance, record: dict, paths: outputs.SpeakerPaths, settings: SpeakerSettings) -> dict:
    """One metadata*.jsonl row; paths relative to the speaker folder, the transcript verbatim.

    Generation 2 adds ``code_kind`` and the ``emotion`` vector's path; 2.5 the ``language`` and
    ``language_id`` of the transcript.
    """
    folder = paths.folder
    row = {
        "uid": utterance.uid, "speaker": utterance.speaker,
        "audio": relative_path(utterance.audio, folder), "text": utterance.text,
        "codes": relative_path(paths.codes(utterance.uid), folder),
        "condition": relative_path(paths.condition(utterance.uid), folder) if settings.with_conditions else None,
        "duration": record["duration"], "num_codes": record["num_codes"],
        "num_text_tokens": record["num_text_tokens"], "special_tokens": record.get("special_tokens", []),
    }
    if settings.family_fields:
        row["code_kind"] = settings.family_fields["code_kind"]
        row["emotion"] = relative_path(paths.emotion(utterance.uid), folder) if settings.with_emotions else None
    if "language" in record:
        row.update(language=record["language"], language_id=record["language_id"])
    return row


def _failure_message(speaker_list: SpeakerList, skipped: list[SkippedLine], kept_previous: bool) -> str:
    reasons = Counter(s.reason for s in skipped)
    listed = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())) or "the list is empty"
    examples = "; ".join(f"line {s.line_number}: {s.reason} ({s.detail})" for s in skipped[:EXAMPLE_LINES])
    kept = ("its previous entry in speaker_info.json and its files were kept unchanged"
            if kept_previous else f"the reasons per line are in {speaker_list.speaker}/{outputs.SKIPPED}")
    return (f"speaker '{speaker_list.speaker}' ({speaker_list.list_path}) has no usable utterance ({listed}"
            f"{'; ' + examples if examples else ''}); {kept}")


class SpeakerAssembler:
    """Writes each speaker's files from the per-utterance progress records (rank 0 only)."""

    def __init__(self, settings: SpeakerSettings, previous_speakers: set[str]):
        self.settings = settings
        self.previous_speakers = previous_speakers

    def assemble(self, speaker_list: SpeakerList, records: list[dict]) -> tuple[SpeakerSummary, dict | None]:
        """Write one speaker's files; return its summary and speaker_info entry (None when it failed)."""
        paths = outputs.SpeakerPaths(self.settings.root, speaker_list.speaker)
        summary = SpeakerSummary(speaker_list.speaker, paths.folder)
        skipped: list[SkippedLine] = list(speaker_list.skipped)
        rows = []
        for utterance, record in zip(speaker_list.utterances, records):
            if record["status"] == "skipped":
                skipped.append(SkippedLine(utterance.list_path, utterance.line_number, utterance.line,
                                           record["reason"], record["detail"], str(utterance.audio), utterance.text))
            else:
                rows.append(manifest_row(utterance, record, paths, self.settings))
        skipped.sort(key=lambda s: s.line_number)
        summary.skipped.update(s.reason for s in skipped)
        if not rows:
            return self._failed(speaker_list, paths, skipped, summary), None
        paths.folder.mkdir(parents=True, exist_ok=True)
        remove_temp_files(paths.folder)
        write_jsonl_atomic(paths.folder / outputs.SKIPPED, [s.to_json() for s in skipped])
        return summary, self._write_speaker(paths, rows, records, summary)

    def _failed(self, speaker_list: SpeakerList, paths: outputs.SpeakerPaths, skipped: list[SkippedLine],
                summary: SpeakerSummary) -> SpeakerSummary:
        summary.failed = True
        summary.kept_previous = speaker_list.speaker in self.previous_speakers
        if not summary.kept_previous:
            paths.folder.mkdir(parents=True, exist_ok=True)
            write_jsonl_atomic(paths.folder / outputs.SKIPPED, [s.to_json() for s in skipped])
        summary.problem = _failure_message(speaker_list, skipped, summary.kept_previous)
        logger.warning("Extraction failed for %s.", summary.problem)
        return summary

    def _write_speaker(self, paths: outputs.SpeakerPaths, rows: list[dict], records: list[dict],
                       summary: SpeakerSummary) -> dict:
        settings, folder = self.settings, paths.folder
        train, valid = split_train_valid(len(rows), settings.valid_ratio, settings.seed)
        manifests.write_manifest(folder / manifests.METADATA, rows)
        manifests.write_manifest(folder / manifests.METADATA_TRAIN, [rows[i] for i in train])
        manifests.write_manifest(folder / manifests.METADATA_VALID, [rows[i] for i in valid])
        summary.kept = len(rows)
        summary.total_seconds = float(sum(row["duration"] for row in rows))
        medoid_path = self._write_medoid(paths, rows) if settings.with_conditions else None
        emotion_path = self._write_medoid_emotion(paths, rows) if settings.with_emotions else None
        done = [r for r in records if r["status"] == "done"]
        precisions = Counter(r.get("codes_precision", "fp32") for r in done)
        fallbacks = {r.get("codes_batch") for r in done if r.get("codes_precision", "fp32") == "fp32"}
        return {
            "speaker": paths.speaker,
            "avg_duration": summary.total_seconds / len(rows),
            "sample_num": len(rows),
            "total_duration_in_seconds": summary.total_seconds,
            "total_duration_in_minutes": summary.total_seconds / 60.0,
            "total_duration_in_hours": summary.total_seconds / SECONDS_PER_HOUR,
            "train_jsonl": relative_path(folder / manifests.METADATA_TRAIN, settings.root),
            "valid_jsonl": relative_path(folder / manifests.METADATA_VALID, settings.root),
            "medoid_condition": None if medoid_path is None else relative_path(medoid_path, settings.root),
            "base": settings.base,
            "special_tokens": sorted({t for row in rows for t in row["special_tokens"]}),
            "codes_precision": dict(sorted(precisions.items())),
            "half_precision_fallback_batches": len(fallbacks) if settings.precision != "fp32" else 0,
            **settings.family_fields,
            **({"medoid_emotion": relative_path(emotion_path, settings.root)} if emotion_path is not None else {}),
        }

    def _write_medoid_emotion(self, paths: outputs.SpeakerPaths, rows: list[dict]) -> Path:
        """The speaker's medoid emotion vector (D,) among its utterances' (its own ``medoid_emotion.json``)."""
        emotions = np.stack([np.load(paths.emotion(row["uid"]), allow_pickle=False) for row in rows])
        medoid = find_medoid(emotions, self.settings.distance_metric)
        path = paths.folder / speaker_info.MEDOID_EMOTION
        write_npy_atomic(path, emotions[medoid.index])
        write_json_atomic(paths.folder / speaker_info.MEDOID_EMOTION_INFO, {
            "uid": rows[medoid.index]["uid"], "emotion": rows[medoid.index]["emotion"], "metric": medoid.metric,
            **medoid.stats(),
        })
        return path

    def _write_medoid(self, paths: outputs.SpeakerPaths, rows: list[dict]) -> Path:
        conditions = np.stack([np.load(paths.condition(row["uid"]), allow_pickle=False) for row in rows])
        medoid = find_medoid(conditions, self.settings.distance_metric)
        chosen = rows[medoid.index]
        medoid_path = paths.folder / speaker_info.MEDOID_CONDITION
        write_npy_atomic(medoid_path, conditions[medoid.index])
        write_json_atomic(paths.folder / speaker_info.MEDOID_INFO, {
            "uid": chosen["uid"], "audio": chosen["audio"], "condition": chosen["condition"],
            "metric": medoid.metric, **medoid.stats(),
        })
        return medoid_path
