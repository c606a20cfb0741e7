"""``<speaker>.lst`` belongs to the user once written: a later run keeps hand edits and only adds new clips.

The docs ask users to correct transcripts and delete the lines of unwanted clips in the list. The
state file therefore records what ``indextts-prepare`` last wrote there (the file's SHA-256) and
every clip it ever listed. On a later run the list is

* written afresh from the clip records when it is missing or still exactly as prepare wrote it;
* kept line for line when it was edited, with only the usable clips that were never listed before
  appended (a clip listed before and now absent was deleted by the user and stays out);
* refused, before anything is written, when it was edited and names clips that this run would cut
  again (their recording or the settings changed): the message names a backup copy of the list.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from indextts.atomic_files import write_bytes_atomic
from indextts.errors import PrepareError
from indextts.contracts.audio_list import list_line, split_list_line
from indextts.prepare.review import ClipRecord

logger = logging.getLogger(__name__)

STATE_KEY = "list"
"""Key of the list record in the speaker's state file: ``{"sha256": ..., "clips": [...], "edited": ...}``."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ListRecord:
    """What prepare last wrote to the list (``sha256``, None when unknown), every clip it listed, and
    whether the user has edited the list (from then on it stays theirs)."""

    sha256: str | None = None
    clips: set[str] = field(default_factory=set)
    edited: bool = False

    @classmethod
    def from_state(cls, state: dict) -> ListRecord:
        """The state's record; a state from before lists were recorded counts every finished clip as listed."""
        value = state.get(STATE_KEY)
        if value is not None:
            return cls(value["sha256"], set(value["clips"]), value["edited"])
        finished = [r for entry in state["recordings"].values() for r in entry["clips"] if entry.get("complete", True)]
        return cls(None, {record["clip"] for record in finished})

    def to_state(self) -> dict:
        return {"sha256": self.sha256, "clips": sorted(self.clips), "edited": self.edited}


class SpeakerList:
    """One speaker's ``<output_dir>/<speaker>.lst`` and the record of what prepare wrote to it."""

    def __init__(self, path: Path, record: ListRecord) -> None:
        self.path = path
        self.record = record

    def edited_by_user(self) -> bool:
        """True when the list exists and is no longer (or was never known to be) what prepare wrote."""
        return self.path.is_file() and (self.record.edited or _sha256(self.path.read_bytes()) != self.record.sha256)

    def _user_lines(self) -> list[str]:
        """The edited list's lines (with their line ends); a list that is not UTF-8 is refused."""
        try:
            return self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        except UnicodeDecodeError as error:
            raise PrepareError(f"{self.path} is not UTF-8 text ({error.reason} at byte {error.start}), so your "
                               "edits cannot be kept. Re-save it as UTF-8 (e.g. `iconv -f GBK -t UTF-8`) and "
                               "run again; nothing was changed.") from error

    def _listed_clips(self, lines: list[str]) -> list[str]:
        """The clip of each list line, relative to the list's folder as prepare writes them."""
        fields = [split_list_line(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
        folder = self.path.parent.resolve()
        clips = []
        for audio, _ in filter(None, fields):
            resolved = (folder / audio).resolve()
            clips.append(resolved.relative_to(folder).as_posix() if resolved.is_relative_to(folder) else audio)
        return clips

    def refuse_recut(self, speaker: str, recut_stems: list[str]) -> None:
        """Raise PrepareError when an edited list is not UTF-8, or (after backing it up) names clips of
        ``recut_stems``, the recordings this run cuts from scratch."""
        if not self.edited_by_user():
            return
        lines = self._user_lines()
        if not recut_stems:
            return
        pattern = re.compile(rf"{re.escape(speaker)}/({'|'.join(map(re.escape, recut_stems))})_\d{{4}}\.wav")
        named = [c for c in self._listed_clips(lines) if pattern.fullmatch(c)]
        if not named:
            return
        backup = self.path.with_name(f"{self.path.name}.backup-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(self.path, backup)
        raise PrepareError(
            f"{self.path} was edited by hand, and this run would cut again the recordings behind {len(named)} of "
            f"its clips ({', '.join(named[:3])}{', ...' if len(named) > 3 else ''}): the recordings "
            f"{', '.join(recut_stems)} or the settings changed since they were cut, so those clips and "
            f"transcripts would be replaced. Nothing was changed; a copy of your list is in {backup}. To keep "
            f"your edits, run with the previous recordings and settings; to prepare them again, move {self.path} "
            "away and run again (the copy keeps your corrections)."
        )

    def write(self, records: list[ClipRecord], min_confidence: float, keep_doubtful: bool,
              approvals: set[str]) -> int:
        """Write the list (fresh, or the user's with new and newly approved clips appended); returns its
        clip line count."""
        usable = [r for r in records if r.usable(min_confidence, keep_doubtful, r.clip in approvals)]
        edited = self.edited_by_user()
        if edited:
            lines = self._user_lines()
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            known = self.record.clips | set(self._listed_clips(lines))
            added = [list_line(self.path, Path(r.clip), r.text) for r in usable if r.clip not in known]
            logger.info("%s was edited by hand: kept as it is, %d new clip(s) added.", self.path, len(added))
            lines += added
        else:
            lines = [list_line(self.path, Path(r.clip), r.text) for r in usable]
        data = "".join(lines).encode("utf-8")
        write_bytes_atomic(self.path, data)
        listed = self.record.clips if edited else set()
        self.record = ListRecord(_sha256(data), listed | {r.clip for r in usable}, edited)
        return len(self._listed_clips([line.rstrip("\n") for line in lines]))
