"""Clip records and review.csv written from them.

A record is everything known about one clip; records live in the per-speaker state file, so the
review table and the audio list (``indextts.prepare.user_list``) can be rewritten at any time (e.g.
with another ``min_confidence``) without cutting or transcribing again.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from indextts.atomic_files import write_bytes_atomic
from indextts.prepare.transcription import Flag

REVIEW_COLUMNS = (
    "speaker", "clip", "in_list", "duration", "lufs", "snr_db", "asr_confidence", "language", "flags",
    "text", "normalised_text", "source", "source_start", "source_end",
)


@dataclass(frozen=True)
class ClipRecord:
    """One written clip; ``clip`` is relative to the output folder, times are in seconds."""

    speaker: str
    clip: str
    source: str
    source_start: float
    source_end: float
    duration: float
    lufs: float
    snr_db: float
    confidence: float | None
    language: str | None
    text: str
    normalised: str
    flags: tuple[str, ...]

    def to_json(self) -> dict:
        return {**asdict(self), "flags": list(self.flags)}

    @classmethod
    def from_json(cls, value: dict) -> ClipRecord:
        return cls(**{**value, "flags": tuple(value["flags"])})

    def all_flags(self, min_confidence: float) -> tuple[str, ...]:
        """The stored flags plus ``low_confidence`` when the ASR confidence is below ``min_confidence``."""
        doubtful = self.confidence is not None and self.confidence < min_confidence
        return self.flags + ((Flag.LOW_CONFIDENCE,) if doubtful else ())

    def usable(self, min_confidence: float, keep_doubtful: bool) -> bool:
        """Whether the clip goes into the audio list."""
        if not self.text:
            return False
        return keep_doubtful or not set(self.all_flags(min_confidence)) & set(Flag.DROPPING)


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def write_review_csv(path: Path, records: list[ClipRecord], min_confidence: float, keep_doubtful: bool) -> None:
    """One row per clip with the columns of ``REVIEW_COLUMNS``, for listening through doubtful ones."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    for r in records:
        writer.writerow([
            r.speaker, r.clip, "yes" if r.usable(min_confidence, keep_doubtful) else "no",
            _number(r.duration, 3), _number(r.lufs, 2), _number(r.snr_db, 1), _number(r.confidence, 3),
            r.language or "", ";".join(r.all_flags(min_confidence)), r.text, r.normalised, r.source,
            _number(r.source_start, 3), _number(r.source_end, 3),
        ])
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))
