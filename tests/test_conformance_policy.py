"""Missing conformance data: one clear skip reason on a standalone clone, a failure where it is required.

The test copies the test suite into a folder with no ``../shared`` beside it and runs pytest there,
as a user's clone of the repository alone would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO_ROOT

MODULES = ["tests/test_conformance.py", "tests/test_config.py"]


@pytest.fixture(scope="module")
def standalone_clone(tmp_path_factory):
    clone = tmp_path_factory.mktemp("standalone") / "index-tts-lora"
    shutil.copytree(REPO_ROOT / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", clone / "pyproject.toml")
    assert not (clone.parent / "shared").exists()
    return clone


def run_pytest(clone, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "INDEXTTS_REQUIRE_CONFORMANCE", "INDEXTTS_CONFORMANCE_DIRS", "PYTEST_ADDOPTS")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *MODULES],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=600)


def test_standalone_clone_skips_every_conformance_test_with_one_reason(standalone_clone):
    result = run_pytest(standalone_clone)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all("conformance data absent" in line for line in skipped), output
    assert "failed" not in output.splitlines()[-1] and "error" not in output.splitlines()[-1]


@pytest.mark.parametrize("switch", [{"CI": "true"}, {"INDEXTTS_REQUIRE_CONFORMANCE": "1"}], ids=["CI", "explicit"])
def test_required_conformance_data_fails_when_absent(standalone_clone, switch):
    result = run_pytest(standalone_clone, **switch)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "conformance data absent" in output and "It is required here" in output
