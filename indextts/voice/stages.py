"""The record of a voice build's stages: what ran, on which inputs, and whether it finished.

``<project>/voice.json`` maps each stage ("prepare:kaishu", "extract", "train", "eval", "report")
to the fingerprints of its inputs (one entry per input: a file list, a config, the command line)
and whether it finished. A re-run compares the fingerprints: a finished stage with the same inputs
is skipped, an unfinished one is resumed, and one whose inputs changed is run again; the reason
names the inputs that changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from indextts.atomic_files import write_json_atomic
from indextts.errors import DataError
from indextts.fingerprints import file_stamp, hash_json

RECORD_NAME = "voice.json"
RECORD_VERSION = 1


def files_fingerprint(paths: list[Path]) -> str:
    """A short hash of the files under ``paths`` (each file's path, size and modification time)."""
    files = sorted(p for path in paths for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file())
    return hash_json([file_stamp(p.resolve()) for p in files])


def content_fingerprint(paths: list[Path]) -> str:
    """A short hash of the bytes of ``paths`` (files that are small and may be edited in place)."""
    return hash_json([[str(p), p.read_bytes().hex() if p.is_file() else None] for p in paths])


@dataclass(frozen=True)
class Decision:
    """What a stage does this time: "skip", "resume" or "run", and why (one sentence)."""

    action: str
    reason: str


class StageRecord:
    """The stages of one project folder, read from and written to ``voice.json``."""

    def __init__(self, project: Path) -> None:
        self.path = project / RECORD_NAME
        self.stages: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
                self.stages = dict(data["stages"])
            except (ValueError, KeyError, TypeError) as error:
                raise DataError(f"The build record {self.path} is not readable ({error}). Move it away to "
                                "start the build's bookkeeping anew (every stage then checks its own outputs).")

    def decide(self, stage: str, inputs: dict[str, str]) -> Decision:
        """Skip, resume or run ``stage`` given its input fingerprints now."""
        previous = self.stages.get(stage)
        if previous is None:
            return Decision("run", "first run")
        changed = sorted(name for name in set(inputs) | set(previous["inputs"])
                         if inputs.get(name) != previous["inputs"].get(name))
        if changed:
            return Decision("run", f"its inputs changed since the last build: {', '.join(changed)}")
        if previous.get("finished"):
            return Decision("skip", "done, inputs unchanged")
        return Decision("resume", "stopped before it finished; continuing")

    def started(self, stage: str, inputs: dict[str, str], command: list[str]) -> None:
        self.stages[stage] = {"inputs": inputs, "command": command, "finished": None}
        self._save()

    def finished(self, stage: str) -> None:
        self.stages[stage]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._save()

    def _save(self) -> None:
        write_json_atomic(self.path, {"version": RECORD_VERSION, "stages": self.stages})
