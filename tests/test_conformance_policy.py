"""Which golden folders the conformance tests run over, and missing conformance data: one clear skip
reason on a standalone clone, a failure where it is required.

The standalone tests copy the test suite into a folder with no ``../shared`` beside it and run pytest
there, as a user's clone of the repository alone would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import REPO_ROOT, conformance_folders, v2_golden_folders

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


def _golden(folder, config: dict):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "expected.safetensors").write_bytes(b"")
    return folder.resolve()


def test_listed_golden_folders_are_run_by_the_tests_of_their_generation(tmp_path, monkeypatch):
    """A folder of goldens listed in INDEXTTS_CONFORMANCE_DIRS holds both generations: each folder goes
    to its own generation's tests only (a listed IndexTTS-2 folder broke the 1.5 tests)."""
    v15 = _golden(tmp_path / "listed" / "v15", {"version": 1.5, "dvae_checkpoint": "dvae.pth"})
    v2 = _golden(tmp_path / "listed" / "v2", {"version": 2.0, "s2mel_checkpoint": "s2mel.pth"})
    v25 = _golden(tmp_path / "alone" / "v25", {"version": 2.5, "s2mel_checkpoint": "s2mel.pth"})
    monkeypatch.setenv("INDEXTTS_CONFORMANCE_DIRS", os.pathsep.join([str(tmp_path / "listed"), str(v25)]))
    generation_1, generation_2 = set(conformance_folders("expected.safetensors")), set(v2_golden_folders())
    assert v15 in generation_1 and not {v2, v25} & generation_1
    assert {v2, v25} <= generation_2 and v15 not in generation_2
