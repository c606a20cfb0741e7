"""The GPU check's device command, as docs/benchmarks.md documents it, run on the CPU (CUDA aside).

A fresh venv stands in for the GPU image: torch 2.13.0 (CPU, from local disk), the image's
transformers 5.17 and peft 0.18 and its other packages, and no editable install of this project.
Python 3.11, not the image's 3.12: CPU builds of torch for CPython 3.12 are not obtainable from this
workplace's package sources. The carried wheels come from ``prepare_device_wheels.sh --python-version
3.11`` (``make test`` downloads them once into ``.cache/``); the documented command installs them
offline with ``--no-index --target`` and runs ``gpu_check.py`` with only the documented PYTHONPATH,
from the repository root, with ``--device cpu --size tiny`` added.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
CACHE = Path(os.environ.get("INDEXTTS_DEVICE_TEST_CACHE", REPO_ROOT / ".cache"))
WHEELS = CACHE / f"device-wheels-{PY_TAG}"
IMAGE_VENV = CACHE / f"device-image-{PY_TAG}"
IMAGE_PACKAGES = ["torch==2.13.0", "transformers==5.17.*", "peft==0.18.*", "sentencepiece", "protobuf",
                  "safetensors", "numpy", "pyyaml", "tqdm", "tensorboard", "pytest", "packaging", "psutil"]
"""What the GPU image already has of what the project needs (KINDS.md), torch as the CPU build here."""
STEP_FILES = ["01_preflight", "02_tests", "03_bench_infer", "05_bench_train", "06_bench_learning",
              "07_bench_extraction", "08_bench_train_e2e", "09_bench_train_v2"]
"""Every step's JSON (bench_learning's says "not run: script missing" while the script is absent)."""


def documented_command() -> str:
    """The one-line device command of docs/benchmarks.md (the fenced line that installs the wheels)."""
    text = (REPO_ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    found = [line for line in text.splitlines() if line.startswith("python3 -m pip install") and "gpu_check.py" in line]
    assert len(found) == 1, "docs/benchmarks.md must hold exactly one device command"
    return found[0]


def image_python() -> Path:
    """The stand-in image's python, built once and kept (it never gets this project installed)."""
    python, stamp = IMAGE_VENV / "bin" / "python", IMAGE_VENV / ".packages"
    if stamp.is_file() and stamp.read_text() == "\n".join(IMAGE_PACKAGES):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(IMAGE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *IMAGE_PACKAGES], check=True, timeout=900)
    stamp.write_text("\n".join(IMAGE_PACKAGES))
    return python


def run_documented_command(tmp_path: Path) -> subprocess.CompletedProcess:
    """The command with the cp3xx wheels for .whl/, tmp_path for /tmp/, OUT=tmp_path/out, CPU and tiny."""
    python = image_python()
    command = documented_command().replace("/tmp/", f"{tmp_path}/").replace(".whl/*.whl", f"{WHEELS}/*.whl")
    command = re.sub(r"(gpu_check\.py [^;]*)", r"\1 --device cpu --size tiny --budget_s 1500", command)
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment |= {"PATH": f"{python.parent}{os.pathsep}{environment['PATH']}", "OUT": str(tmp_path / "out")}
    command = command.replace("timeout -s TERM 420", "timeout -s TERM 1600")
    (tmp_path / "out").mkdir()
    return subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                          timeout=1800)


@pytest.mark.slow
def test_documented_device_command_runs_every_step_on_cpu(tmp_path):
    if not list(WHEELS.glob("*.whl")):
        pytest.skip(f"no carried wheels in {WHEELS}: `make test` fetches them (bash benchmarks/"
                    f"prepare_device_wheels.sh --python-version 3.{sys.version_info.minor} --no-conformance {WHEELS})")
    done = run_documented_command(tmp_path)
    output = done.stdout + done.stderr
    assert (tmp_path / "out" / "gpu_check.json").is_file(), output[-5000:]
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert report["preflight"] == [], output
    assert report["machine"]["indextts"] == str(REPO_ROOT / "indextts" / "__init__.py")
    assert report["machine"]["transformers"].startswith("5.17.") and report["machine"]["peft"].startswith("0.18.")
    subprocess.run(["tar", "-xzf", str(tmp_path / "out" / "gpu_check.tgz"), "-C", str(tmp_path)], check=True)
    steps = tmp_path / "gc" / "steps"
    for name in STEP_FILES:
        assert (steps / f"{name}.json").is_file(), f"{name}.json missing:\n{output[-3000:]}"
    ran = [name for name in STEP_FILES[1:] if "not run" not in json.loads((steps / f"{name}.json").read_text())["status"]]
    assert all((steps / f"{name}.log").is_file() for name in ran)
    tests = report["steps"]["tests"]
    assert tests["status"] == "ok" and tests["counts"]["skipped"] >= 1 and "passed" not in tests["counts"]
    for name in ("bench_infer", "bench_train", "bench_extraction", "bench_train_e2e", "bench_train_v2"):
        assert report["steps"][name]["status"] == "ok", report["steps"][name]["output_tail"]
    assert "| batch 1 |" in (tmp_path / "out" / "gpu_check.md").read_text()
