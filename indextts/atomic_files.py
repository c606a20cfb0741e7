"""Crash-safe writes of files and folders: a temporary name beside the target, then a rename.

A process killed at any moment leaves either the old file (or folder) or the new one, never half
of one; ``remove_temp_files`` deletes the temporaries such a process left behind and
``restore_replaced_dir`` finishes a folder swap that a kill interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

TEMP_MARKER = ".tmp."
STAGING_SUFFIX = ".staging"
"""A folder is filled as ``.<name>.staging`` beside its target before it moves in (``staged_dir``)."""
REPLACED_SUFFIX = ".old"
"""A folder being replaced waits as ``.<name>.old`` until its successor is in place."""


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}")


def write_bytes_atomic(path: Path, data: bytes, sync: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace`` (fsync first when ``sync``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(path)
    with open(temp, "wb") as handle:
        handle.write(data)
        if sync:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temp, path)


def write_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Save ``array`` as a pickle-free .npy file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(path)
    with open(temp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(temp, path)


def write_json_atomic(path: Path, value, sync: bool = True) -> None:
    write_bytes_atomic(path, (json.dumps(value, ensure_ascii=False, indent=2) + "\n").encode("utf-8"), sync)


def write_jsonl_atomic(path: Path, rows: list[dict], sync: bool = True) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_bytes_atomic(path, text.encode("utf-8"), sync)


def _old_dir(target: Path) -> Path:
    return target.with_name(f".{target.name}{REPLACED_SUFFIX}")


def replace_dir_atomic(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target``, replacing it; the old one survives until the new one is in place.

    ``source`` must be on the same file system (e.g. a temporary folder beside ``target``). A kill
    between the two renames leaves the previous folder as ``.<target name>.old``, from which
    ``restore_replaced_dir`` brings it back (this function does so first, too).
    """
    restore_replaced_dir(target)
    old = _old_dir(target)
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.rename(target, old)
    os.rename(source, target)
    if old.exists():
        shutil.rmtree(old)


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``target`` to fill; on success it replaces ``target``.

    An exception (or Ctrl-C) removes the staging folder and leaves ``target`` as it was, so a
    consumer never sees a half-written folder at ``target``.
    """
    staging = target.with_name(f".{target.name}{STAGING_SUFFIX}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        replace_dir_atomic(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def restore_replaced_dir(target: Path) -> None:
    """Undo a ``replace_dir_atomic`` that a kill cut between its renames (nothing to do otherwise)."""
    old = _old_dir(target)
    if old.is_dir() and not target.exists():
        os.rename(old, target)


def remove_temp_files(folder: Path) -> None:
    """Delete temporary files that killed runs left behind under ``folder``."""
    if folder.is_dir():
        for temp in folder.rglob(f".*{TEMP_MARKER}*"):
            temp.unlink(missing_ok=True)

