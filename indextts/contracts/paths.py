"""The one path rule of the stage files (a stored relative path is relative to the file's folder), and
the check of a stage's output folder."""

from __future__ import annotations

import os
from pathlib import Path

from indextts.errors import DataError


def relative_path(path: Path, start: Path) -> str:
    """``path`` relative to the folder ``start`` (POSIX separators, ``..`` where needed), for storing."""
    return Path(os.path.relpath(path, start)).as_posix()


def resolve_path(value: str | None, base: Path) -> Path | None:
    """A stored path: absolute ones as they are, relative ones from the folder ``base``; None stays None."""
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


def check_output_dir(root: Path, speakers: list[str]) -> None:
    """Refuse an output folder (or speaker folder) that is a file or lies under a file, before any work."""
    for target in [root] + [root / name for name in speakers]:
        for folder in [target, *target.parents]:
            if folder.exists():
                if not folder.is_dir():
                    raise DataError(
                        f"The output folder {target} cannot be created: {folder} is a file, not a folder. "
                        "Pass another --output_dir (or move that file away).")
                break
