"""The per-speaker manifests: ``metadata.jsonl`` (every usable utterance), ``metadata_train.jsonl`` and
``metadata_valid.jsonl`` (its split), one JSON object per line.

Written by extraction (``write_manifest``), read by training, evaluation and the report
(``read_manifest``). A row names the utterance's codes, condition and audio by paths relative to
the manifest's folder (``indextts.contracts.paths``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from indextts.atomic_files import write_jsonl_atomic
from indextts.contracts.paths import resolve_path
from indextts.errors import DataError

METADATA = "metadata.jsonl"
METADATA_TRAIN = "metadata_train.jsonl"
METADATA_VALID = "metadata_valid.jsonl"


@dataclass(frozen=True)
class ManifestRow:
    """One utterance of an extraction manifest (metadata_*.jsonl), paths absolute."""

    uid: str
    speaker: str
    text: str
    codes: Path
    duration: float
    num_codes: int
    source: str  # "file:line", for error messages
    audio: Path | None = None
    condition: Path | None = None
    special_tokens: tuple[str, ...] = ()  # the <...> tokens of the text that the base bpe.model lacks
    code_kind: str = "mel"  # "semantic" for IndexTTS-2 / 2.5 data
    emotion: Path | None = None  # IndexTTS-2 / 2.5: the utterance's emotion vector (D,)
    language_id: int | None = None  # IndexTTS-2.5: the language embedding's index for the text
    language: str | None = None  # IndexTTS-2.5: the transcript's language code, as extraction counted it

    REQUIRED_KEYS = ("uid", "text", "codes", "duration", "num_codes")


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a metadata*.jsonl manifest; relative paths are resolved from the file's folder.

    Raises DataError naming the file, line and key of the first malformed row.
    """
    path = Path(path).expanduser().resolve()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DataError(f"Cannot read the manifest {path}: {error}. Run indextts-extract to "
                        "(re)create it.") from error
    rows = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            entry = json.loads(line)
        except ValueError as error:
            raise DataError(f"{where} is not valid JSON ({error}). Re-run indextts-extract "
                            "for this speaker.") from error
        missing = [key for key in ManifestRow.REQUIRED_KEYS if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise DataError(f"{where} lacks the key(s) {missing}. Every manifest row needs "
                            f"{list(ManifestRow.REQUIRED_KEYS)}; re-run indextts-extract.")
        rows.append(ManifestRow(
            uid=str(entry["uid"]), speaker=str(entry.get("speaker", "")), text=str(entry["text"]),
            codes=resolve_path(entry["codes"], path.parent), duration=float(entry["duration"]),
            num_codes=int(entry["num_codes"]), source=where, audio=resolve_path(entry.get("audio"), path.parent),
            condition=resolve_path(entry.get("condition"), path.parent),
            special_tokens=tuple(entry.get("special_tokens") or ()), code_kind=str(entry.get("code_kind", "mel")),
            emotion=resolve_path(entry.get("emotion"), path.parent), language_id=entry.get("language_id"),
            language=entry.get("language"),
        ))
    return rows


def write_manifest(path: Path, rows: list[dict]) -> None:
    """Write manifest rows (dicts with at least ``ManifestRow.REQUIRED_KEYS``) atomically."""
    write_jsonl_atomic(path, rows)
