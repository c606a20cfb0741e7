"""Fingerprints: what decides that an input, a file or a model is the same as last time.

- ``hash_json(*parts)``: the hash of JSON-serialisable values (settings, inputs of an output),
  ``HASH_LENGTH`` hex characters of a SHA-256; every stored settings or input hash uses it.
- ``file_sha256(path)``: the SHA-256 of a file's bytes (a model file's identity).
- ``file_stamp(path)``: (path, size, modification time), a cheap identity of a file's version,
  for inputs that are re-read often (recordings, audio lists).
- ``tensors_fingerprint(state_dict)``: the SHA-256 of tensors by name, dtype, shape and bytes, for
  weights whose files may differ in header order only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HASH_LENGTH = 32
"""Hex characters kept of a SHA-256 in stored hashes (128 bits: no collision in practice)."""


def hash_json(*parts) -> str:
    """``HASH_LENGTH`` hex characters of the SHA-256 of ``parts`` as JSON (values that JSON lacks, such
    as paths, by their ``str``)."""
    text = json.dumps(parts, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (64 hex characters), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_stamp(path: Path) -> list:
    """A cheap identity of a file's version: [path, size, modification time in ns]."""
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def tensors_fingerprint(state_dict: dict) -> str:
    """A SHA-256 over the names, dtypes, shapes and bytes of ``state_dict``'s tensors, in name order."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
