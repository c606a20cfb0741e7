"""A regular (non-editable) install works from any directory: packaged configs, console scripts.

The wheel is built from the checkout and installed into a fresh virtual environment whose only
link to the test environment is a ``.pth`` line naming its site-packages, so the dependencies
(torch, transformers, ...) are found without a download while ``indextts`` itself comes from the
wheel alone (the editable install's finder is not loaded there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from helpers import REPO_ROOT

pytestmark = pytest.mark.slow
COMMANDS = ("indextts-extract", "indextts-train", "indextts-infer", "indextts-export")


def run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the project's wheel installed (not editable); returns its bin folder."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy, so no stale build/ folder of the checkout reaches the wheel
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "demo_out", "runs", ".whl"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "wheels"),
         str(source)], cwd=root)
    environment = root / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).stdout.strip())
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((root / "wheels").glob("index_tts_lora-*.whl"))
    run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], cwd=root)
    return environment / "bin"


def test_package_comes_from_the_wheel_with_its_configs(installed, tmp_path):
    code = ("import indextts, indextts.config as c; print(indextts.__file__); "
            "print(all(p.is_file() for p in [c.TRAIN_CONFIG, *c.RELEASE_CONFIGS.values()]))")
    location, configs_shipped = run([str(installed / "python"), "-c", code], tmp_path).stdout.split()
    assert str(REPO_ROOT) not in location and str(installed.parent) in location
    assert configs_shipped == "True"
    assert all((installed / command).is_file() for command in COMMANDS)
    assert "usage" in run([str(installed / "python"), "-m", "indextts.infer", "--help"], tmp_path).stdout
    assert "verbs:" in run([str(installed / "indextts"), "--help"], tmp_path).stdout
    assert "usage: indextts download" in run([str(installed / "indextts-download"), "--help"], tmp_path).stdout


def test_install_hints_name_the_published_package_outside_a_checkout(installed, tmp_path):
    code = "from indextts.errors import extra_install_command as c; print(c('prepare'))"
    assert run([str(installed / "python"), "-c", code], tmp_path).stdout.strip() == \
        "`pip install 'index-tts-lora[prepare]'`"


def test_console_scripts_run_the_demo_pipeline_outside_the_repository(installed, tmp_path):
    data, model_dir, processed, run_dir = (tmp_path / n for n in ("data", "checkpoints", "processed", "run"))
    run([sys.executable, str(REPO_ROOT / "tools" / "make_demo_data.py"), str(data), "--sentences", "4"], tmp_path)
    run([str(installed / "python"), "-m", "indextts.cli.tiny", str(model_dir)], tmp_path)  # as messages say
    lists = sorted(data.glob("*.lst"))
    extract = [str(installed / "indextts-extract"), "--extract_condition", "--model_dir", str(model_dir),
               "--output_dir", str(processed), "--num_workers", "0"]
    run(extract + [arg for path in lists for arg in ("--audio_list", str(path))], tmp_path)
    run([str(installed / "indextts-train"), f"model_dir={model_dir}", f"speaker_info={processed / 'speaker_info.json'}",
         f"run_dir={run_dir}", "train.max_steps=3", "train.grad_accum=1", "train.save_every_steps=0",
         "data.num_workers=0", "train.device=cpu"], tmp_path)
    output = tmp_path / "hello.wav"
    run([str(installed / "indextts-infer"), "--model_dir", str(model_dir), "--adapter", str(run_dir), "--speaker",
         lists[0].stem, "--text", "Hello world.", "--output", str(output), "--max_mel_tokens", "40"], tmp_path)
    assert output.stat().st_size > 44
