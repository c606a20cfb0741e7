"""benchmarks/gpu_check.py: the preflight names what is missing, and the whole check runs on a CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import gpu_check  # noqa: E402  (a script module beside the benchmarks, not a package)
import gpu_report  # noqa: E402


def test_requirement_problems_name_the_package_and_the_fix():
    assert gpu_check.requirement_problem("pytest>=1") is None
    assert "not installed" in gpu_check.requirement_problem("surely-not-an-installed-package>=1.0")
    assert "needs <1" in gpu_check.requirement_problem("torch<1")


def test_failed_preflight_stops_before_any_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "project_requirements", lambda: ["torch>=2", "surely-not-an-installed-package"])
    monkeypatch.setattr(gpu_check, "run_steps", lambda *args: pytest.fail("steps ran after a failed preflight"))
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path)]) == 2
    printed = capsys.readouterr().out
    assert "surely-not-an-installed-package: not installed" in printed
    assert "prepare_device_wheels.sh" in printed
    assert json.loads((tmp_path / "gpu_check.json").read_text())["preflight"]


def test_cuda_test_modules_are_found():
    assert "tests/test_cuda_decode.py" in gpu_check.cuda_test_files()


def _synthetic_report(device: str, size: str) -> dict:
    infer = {"device": device, "size": size,
             "generation": [{"mode": "greedy", "batch": 1, "cuda_graph": True, "codes_per_s": 1200.0},
                            {"mode": "default", "batch": 1, "cuda_graph": True, "codes_per_s": 350.0}],
             "vocoder": {"audio_per_second": 250.0},
             "end_to_end": [{"target_seconds": 10, "rtf": 0.01, "first_chunk_seconds": 0.1},
                            {"target_seconds": 60, "rtf": 0.03, "first_chunk_seconds": 0.2}]}
    train = {"device": device, "size": size, "precision": "bf16", "compile": False,
             "results": [{"budget": "16k", "max_tokens": 16000, "tokens_per_s": 19000.0, "mfu": 0.30},
                         {"budget": "auto", "max_tokens": 90000, "tokens_per_s": 25000.0, "mfu": 0.35}]}
    e2e = {"device": device, "size": size, "minutes": 30.0, "epochs": 10, "optimizer_steps": 400, "wall_s": 28.5}
    extraction = {"device": device, "size": size, "precision": "fp16", "batch_size": 64,
                  "utterances_per_second": 120.0, "batches": 10, "fallback_batches": 1}
    results = {"bench_infer": infer, "bench_train": train, "bench_train_e2e": e2e, "bench_extraction": extraction}
    steps = {name: {"status": "ok", "result": result} for name, result in results.items()}
    return {"device": device, "size": size, "steps": steps}


def test_report_judges_every_target_on_the_target_machine():
    table = gpu_report.markdown_report(_synthetic_report("cuda", "1.5"))
    assert "greedy >= 1000: met; default >= 400: missed |" in table
    assert "| BigVGAN audio s per s | 250.0 | >= 300: missed |" in table
    assert "| 0.01 | <= 0.02: met |" in table and "| 0.2 | <= 0.15: missed |" in table
    assert "| 16k | 16000 | 19000.0 | 0.3 |" in table and "tokens/s >= 20,000: missed |" in table
    assert "tokens/s >= 20,000: met; MFU >= 40%: missed |" in table
    assert "| 30 min x 10 epochs, 400 steps, wall (s) | 28.5 | <= 30 s: met |" in table
    assert "| 120.0 | >= 100: met |" in table and "| 1 of 10 |" in table


def test_report_does_not_judge_a_cpu_or_tiny_run_against_the_h100_targets():
    table = gpu_report.markdown_report(_synthetic_report("cpu", "tiny"))
    assert " met" not in table and "missed" not in table
    assert table.count("not judged (cpu, size tiny") == 10  # 4 inference, 6 training and extraction


@pytest.mark.slow
def test_gpu_check_runs_on_cpu(tmp_path):
    """The CPU smoke run: preflight, `pytest -m cuda` (all skipped here), every benchmark, JSON and table."""
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--size", "tiny",
                           "--out", str(tmp_path), "--budget_s", "300"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["preflight"] == []
    tests = report["steps"]["tests"]
    assert tests["status"] == "ok" and tests["counts"]["skipped"] >= 1 and "passed" not in tests["counts"]
    infer = report["steps"]["bench_infer"]
    assert infer["status"] == "ok", infer["output_tail"]
    assert {(row["mode"], row["batch"]) for row in infer["result"]["generation"]} == {
        ("greedy", 1), ("greedy", 4), ("default", 1), ("default", 4)}
    assert all(row["codes_per_s"] > 0 for row in infer["result"]["generation"])
    for name in ("bench_train", "bench_train_e2e", "bench_extraction"):
        assert report["steps"][name]["status"]  # ran, failed or recorded as missing: never silently absent
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| batch 1 |" in table and "BigVGAN audio s per s" in table
