"""Where the web UI may read and write: its work folder and the folders named on its command line.

The page is an HTTP API: whoever reaches it can put any path into a request (``/gradio_api/call/...``),
not only what the page's fields offer. So every path a request names is resolved (symlinks followed)
and must lie inside an allowed folder: ``--workdir`` and ``--allow_dir`` folders for reading and
writing, ``--model_dir`` and Gradio's upload folder for reading only. A file the page writes may
only replace a file the page wrote itself, as recorded in ``<workdir>/.webui_written.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from indextts.atomic_files import write_json_atomic
from indextts.errors import WebUIError

WRITTEN_RECORD = ".webui_written.json"
"""In the work folder: the files the page wrote, the only ones it may overwrite."""
PATH_OVERRIDE_KEYS = {"model_dir": False, "speaker_info": False, "run_dir": True, "train.resume": False}
"""Training config keys that name a path, and whether the job writes there."""
NOT_A_PATH = {"", "null", "none", "auto"}


def _resolved(value: str | Path) -> Path:
    return Path(str(value).strip()).expanduser().resolve()


def _inside(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


@dataclass
class PathPolicy:
    """The folders a request may name: ``writable`` ones (read and write) and ``readable`` ones (read only)."""

    writable: tuple[Path, ...]
    readable: tuple[Path, ...]

    @classmethod
    def for_folders(cls, workdir: Path, model_dir: Path, allowed: Iterable[Path] = (),
                    uploads: Path | None = None) -> PathPolicy:
        writable = tuple(_resolved(p) for p in (workdir, *allowed))
        readable = writable + tuple(_resolved(p) for p in (model_dir, uploads) if p is not None)
        return cls(writable, readable)

    @property
    def record(self) -> Path:
        return self.writable[0] / WRITTEN_RECORD

    def may_read(self, value: str | Path) -> bool:
        return _inside(_resolved(value), self.readable)

    def check(self, value: str | Path | None, what: str, write: bool = False) -> str:
        """``value`` resolved when it lies in an allowed folder ("" stays "", for the empty-field message);
        raises WebUIError naming the path and the folders otherwise."""
        if not str(value or "").strip():
            return ""
        path, roots = _resolved(value), self.writable if write else self.readable
        if not _inside(path, roots):
            verb = "write to" if write else "read"
            raise WebUIError(
                f"{what} {value} is outside the folders this page may {verb}: {', '.join(map(str, roots))}. "
                "The page only uses its work folder (--workdir) and the folders named when it was started "
                "(--model_dir is read only); move the files there, or restart it with --allow_dir <folder>.")
        return str(path)

    def check_lines(self, text: str, what: str, write: bool = False) -> str:
        """``check`` for each non-empty line of ``text`` (one path per line)."""
        return "\n".join(self.check(line, what, write) for line in (text or "").splitlines() if line.strip())

    def check_overrides(self, text: str) -> str:
        """``key=value`` config lines, with the value of each path key (``PATH_OVERRIDE_KEYS``) checked."""
        lines = []
        for line in (text or "").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in PATH_OVERRIDE_KEYS and value.strip().lower() not in NOT_A_PATH:
                value = self.check(value.strip(), f"The override {key.strip()}", PATH_OVERRIDE_KEYS[key.strip()])
                line = f"{key.strip()}={value}"
            lines.append(line)
        return "\n".join(lines)

    def check_backend(self, spec: str, what: str) -> str:
        """A backend spec (``[lang=]name[:model]``, comma-separated) whose model is a local path: checked."""
        for item in (spec or "").split(","):
            model = item.partition("=")[2] if "=" in item else item
            source = model.partition(":")[2].strip()
            if source and (source[0] in "/.~" or _resolved(source).exists()):
                self.check(source, what)
        return spec

    def new_file(self, value: str, what: str) -> str:
        """A file path the page may write: in a writable folder, and new or written by the page before."""
        path = self.check(value, what, write=True)
        if path and Path(path).exists() and path not in self._written():
            raise WebUIError(
                f"{what} {path} already exists and was not written by this page; the page never overwrites "
                "files it did not write. Choose a new file name (or delete that file yourself first).")
        return path

    def remember(self, path: Path) -> None:
        """Record ``path`` as written by the page (so a later export may replace it)."""
        write_json_atomic(self.record, sorted(self._written() | {str(path)}))

    def _written(self) -> set[str]:
        try:
            return set(json.loads(self.record.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return set()
