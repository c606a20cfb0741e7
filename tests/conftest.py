"""Shared fixtures: the conformance folders and a tiny checkpoint folder written once per session."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from helpers import (EMPTY_PARAMETER_SET, MANIFEST_FILE, SUITE_MARKER, conformance_missing, conformance_skip_reason,
                     processes_of_suite)


def pytest_configure(config):
    """One compute thread per process: tests start subprocesses and DataLoader workers on a 2-core
    machine, and oversubscribed torch threads make them many times slower, not faster."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ[SUITE_MARKER] = uuid.uuid4().hex  # inherited by every process the suite starts (see sessionfinish)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    """Tests parametrised over golden folders get pytest's "empty parameter set" skip when there are
    none; give them the one clear reason instead (in CI, collection already failed)."""
    for item in items:
        skip = item.get_closest_marker("skip")
        if skip is not None and str(skip.kwargs.get("reason", "")).startswith(EMPTY_PARAMETER_SET):
            item.add_marker(pytest.mark.skip(reason=conformance_skip_reason("no golden folder")), append=False)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A complete tiny checkpoint folder in the official formats (seed 0)."""
    from indextts.tiny import write_tiny_checkpoints

    return write_tiny_checkpoints(tmp_path_factory.mktemp("tiny_checkpoints"), seed=0)


@pytest.fixture(scope="session")
def tiny_v2_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny IndexTTS-2 and 2.5 folders (seed 0), by version ("2", "2.5"); written once per session."""
    from indextts.v2.tiny import VERSIONS, write_tiny_v2_folder

    root = tmp_path_factory.mktemp("tiny_v2_dirs")
    return {version: write_tiny_v2_folder(root / version, version) for version in VERSIONS}


@pytest.fixture(scope="session")
def voice_recordings(tmp_path_factory) -> Path:
    """Long English recordings of the two demo speakers, one folder each (see helpers.write_voice_recordings)."""
    from helpers import write_voice_recordings

    return write_voice_recordings(tmp_path_factory.mktemp("voice_recordings"))


@pytest.fixture(scope="session")
def built_voice(voice_recordings, tiny_model_dir, tmp_path_factory) -> tuple[Path, str]:
    """A voice project built by one uninterrupted ``indextts voice build``; (project, what it printed)."""
    import subprocess
    import sys

    from helpers import REPO_ROOT, voice_build_args

    project = tmp_path_factory.mktemp("voice") / "project"
    command = [sys.executable, "-m", "indextts", "voice", *voice_build_args(voice_recordings, tiny_model_dir, project)]
    output = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert output.returncode == 0, output.stdout[-3000:] + output.stderr[-3000:]
    return project, output.stdout


@pytest.fixture(scope="session")
def release_manifest() -> dict:
    """The state-dict manifest of the release checkpoints (names, shapes and config per release)."""
    if not MANIFEST_FILE.is_file():
        conformance_missing(f"{MANIFEST_FILE.name} not found")
    return json.loads(MANIFEST_FILE.read_text())


def pytest_sessionfinish(session, exitstatus):
    """Fail the run while a process the suite started is still alive (issue 25 item 7: a torchrun rank
    outlived the suite by 25 minutes), name each one, and kill it."""
    leftovers = processes_of_suite(os.environ[SUITE_MARKER])
    if not leftovers:
        return
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(leftovers)} process(es) started by the test suite were still alive at its end (now killed):"]
    lines += [f"  pid {pid}: {command}" for pid, command in sorted(leftovers.items())]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True, bold=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
