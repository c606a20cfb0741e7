"""Clip records and review.csv written from them, with the user's approvals read back.

A record is everything known about one clip; records live in the per-speaker state file, so the
review table and the audio list (``indextts.prepare.user_list``) can be rewritten at any time (e.g.
with another ``min_confidence``) without cutting or transcribing again.

A flagged clip (low confidence, unspeakable text, ...) stays out of the list. After listening, the
user approves it by writing ``yes`` in its ``approved`` cell of review.csv; the next run lists it and
keeps the approval.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path

from indextts.errors import PrepareError

from indextts.atomic_files import write_bytes_atomic
from indextts.prepare.transcription import Flag

REVIEW_COLUMNS = (
    "speaker", "clip", "in_list", "approved", "duration", "lufs", "snr_db", "asr_confidence", "language", "flags",
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
        added = doubtful and Flag.LOW_CONFIDENCE not in self.flags
        return self.flags + ((Flag.LOW_CONFIDENCE,) if added else ())

    def usable(self, min_confidence: float, keep_doubtful: bool, approved: bool = False) -> bool:
        """Whether the clip goes into the audio list (a flagged one only when kept or approved)."""
        if not self.text:
            return False
        return keep_doubtful or approved or not set(self.all_flags(min_confidence)) & set(Flag.DROPPING)


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


APPROVING = frozenset({"yes", "y", "true", "1", "x"})
"""Cells of the ``approved`` column that approve a clip (any case)."""


def read_approvals(path: Path) -> set[str]:
    """The clips approved in the review.csv at ``path`` (none when it is missing or has no such column)."""
    if not path.is_file():
        return set()
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise PrepareError(f"Cannot read the approvals in {path} ({error}). Save it as UTF-8 CSV with its header "
                           "row, or move it away to start the review afresh; nothing was changed.") from error
    return {row["clip"] for row in rows if (row.get("approved") or "").strip().lower() in APPROVING and row.get("clip")}


def write_review_csv(path: Path, records: list[ClipRecord], min_confidence: float, keep_doubtful: bool,
                     approvals: set[str]) -> None:
    """One row per clip with the columns of ``REVIEW_COLUMNS``, for listening through doubtful ones."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    for r in records:
        approved = r.clip in approvals
        writer.writerow([
            r.speaker, r.clip, "yes" if r.usable(min_confidence, keep_doubtful, approved) else "no",
            "yes" if approved else "",
            _number(r.duration, 3), _number(r.lufs, 2), _number(r.snr_db, 1), _number(r.confidence, 3),
            r.language or "", ";".join(r.all_flags(min_confidence)), r.text, r.normalised, r.source,
            _number(r.source_start, 3), _number(r.source_end, 3),
        ])
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))
