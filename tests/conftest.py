"""Shared fixtures: the conformance folders and a tiny checkpoint folder written once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CONFORMANCE = REPO_ROOT.parent / "shared" / "conformance"
MANIFEST_FILE = SHARED_CONFORMANCE / "state_dict_manifest.json"
RELEASES = ("IndexTTS-1.5", "IndexTTS-1.0")


def conformance_folders(marker_file: str) -> list[Path]:
    """Every golden folder holding ``marker_file``: those in ../shared/conformance plus the ones
    listed in INDEXTTS_CONFORMANCE_DIRS (os.pathsep-separated)."""
    roots = [SHARED_CONFORMANCE] if SHARED_CONFORMANCE.is_dir() else []
    extra = [Path(p) for p in os.environ.get("INDEXTTS_CONFORMANCE_DIRS", "").split(os.pathsep) if p]
    found: list[Path] = []
    for root in roots:
        found += sorted(p.parent for p in root.glob(f"*/{marker_file}"))
    for folder in extra:
        if (folder / marker_file).is_file():
            found.append(folder)
        else:
            found += sorted(p.parent for p in folder.glob(f"*/{marker_file}"))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def pytest_configure(config):
    """One compute thread per process: tests start subprocesses and DataLoader workers on a 2-core
    machine, and oversubscribed torch threads make them many times slower, not faster."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A complete tiny checkpoint folder in the official formats (seed 0)."""
    from indextts.tiny import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny_checkpoints"), seed=0)


@pytest.fixture(scope="session")
def release_manifest() -> dict:
    """The state-dict manifest of the release checkpoints (names, shapes and config per release)."""
    if not MANIFEST_FILE.is_file():
        pytest.skip(f"{MANIFEST_FILE} is not present (the conformance data lies beside the repository)")
    return json.loads(MANIFEST_FILE.read_text())
