"""benchmarks/gpu_check.py: the preflight names what is missing; children are streamed, bounded and killed whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_extraction  # noqa: E402  (script modules beside the benchmarks, not a package)
import gpu_check  # noqa: E402
import gpu_preflight  # noqa: E402
import gpu_report  # noqa: E402
import process_group  # noqa: E402


def test_requirement_problems_name_the_package_and_the_fix():
    assert gpu_preflight.requirement_problem("pytest>=1") is None
    assert "not installed" in gpu_preflight.requirement_problem("surely-not-an-installed-package>=1.0")
    assert "needs <1" in gpu_preflight.requirement_problem("torch<1")


def test_failed_preflight_stops_before_any_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_preflight, "project_requirements", lambda: ["torch>=2", "surely-not-an-installed-package"])
    monkeypatch.setattr(gpu_check, "run_steps", lambda *args: pytest.fail("steps ran after a failed preflight"))
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path)]) == 2
    printed = capsys.readouterr().out
    assert "surely-not-an-installed-package: not installed" in printed
    assert "prepare_device_wheels.sh" in printed
    assert json.loads((tmp_path / "gpu_check.json").read_text())["preflight"]
    assert json.loads((tmp_path / "steps" / "01_preflight.json").read_text())["status"] == "failed"


def test_preflight_imports_every_module_the_steps_use_and_names_versions(monkeypatch):
    modules = gpu_preflight.step_modules()
    assert {"indextts.text", "indextts.gpt.generation", "indextts.training.trainer", "indextts.extraction.pipeline",
            "indextts.bigvgan.models", "indextts.infer"} <= set(modules)
    assert not [name for name in modules if name.startswith(("indextts.webui", "indextts.serving"))]
    monkeypatch.setattr(gpu_preflight, "step_modules", lambda: ["indextts.text", "indextts.surely_missing_module"])
    monkeypatch.setattr(gpu_preflight, "BENCHMARK_MODULES", ("v2_bench_stages", "surely_missing_bench_helper"))
    facts, problems = gpu_preflight.preflight("cpu")
    assert problems == ["`import indextts.surely_missing_module` fails: ModuleNotFoundError: "
                        "No module named 'indextts.surely_missing_module'",
                        "`import surely_missing_bench_helper` fails: ModuleNotFoundError: "
                        "No module named 'surely_missing_bench_helper'"]
    assert facts["peft"] and facts["transformers"] and facts["protobuf"] and facts["torch"]


def test_the_repository_root_is_importable_by_the_check_and_every_child(tmp_path):
    """Loaded as the device loads it (a fresh interpreter, started elsewhere), the check puts the
    repository root first; sys.path of this process is shared with other test modules, so not it."""
    probe = ("import runpy, sys\n"
             f"runpy.run_path({str(REPO_ROOT / 'benchmarks' / 'gpu_check.py')!r}, run_name='probe')\n"
             f"print(sys.path.index({str(REPO_ROOT)!r}) < sys.path.index({str(REPO_ROOT / 'benchmarks')!r}))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().splitlines()[-1] == "True", done.stdout + done.stderr
    assert gpu_check.child_environment()["PYTHONPATH"].split(os.pathsep)[0] == str(REPO_ROOT)


def test_a_timed_out_child_loses_its_whole_process_group_and_its_output_is_logged(tmp_path):
    """The child starts a grandchild (as bench_train_e2e starts train.py) and hangs."""
    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time\n"
              f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
              "print('grandchild started', flush=True)\n"
              "time.sleep(120)\n")
    record = process_group.run_logged([sys.executable, "-c", script], tmp_path / "child.log", 3.0, tmp_path,
                                      dict(os.environ), echo=None)
    assert record["status"] == "timed out after 3 s" and record["exit_code"] is None
    assert "grandchild started" in (tmp_path / "child.log").read_text() and "grandchild started" in record["output_tail"]
    assert not _alive(int(pid_file.read_text()))


def test_the_process_group_check_of_the_cuda_tests_runs_bounded_in_a_child():
    """The harness of test_single_process_nccl_init, run with gloo on the CPU."""
    from test_cuda_decode import run_process_group_check

    done = run_process_group_check("gloo", "cpu")
    assert done.returncode == 0 and "process group ok" in done.stdout, done.stdout + done.stderr


def test_steady_extraction_rate_leaves_the_first_batch_out():
    assert bench_extraction.steady_rate([(10.0, 4)]) == (None, 0)
    assert bench_extraction.steady_rate([(10.0, 4), (11.0, 4), (12.0, 2)]) == (3.0, 6)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _marked_processes(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (everything the check started inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes() and _alive(int(entry.name)):
                found.append(int(entry.name))
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return found


def _command_lines(pids: list[int]) -> str:
    text = []
    for pid in pids:
        try:
            text.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except FileNotFoundError:
            continue
    return "\n".join(text)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_killed_check_keeps_finished_steps_and_leaves_no_process(tmp_path, signum):
    """Killed while train.py runs under bench_train_e2e: the extraction step's JSON stays, nothing lives on."""
    marker = f"GPU_CHECK_TEST_MARKER={uuid.uuid4()}"
    environment = dict(os.environ, GPU_CHECK_TEST_MARKER=marker.split("=", 1)[1])
    check = subprocess.Popen([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--size", "tiny",
                              "--out", str(tmp_path), "--only", "bench_extraction", "bench_train_e2e"],
                             cwd=REPO_ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 600
    while "train.py" not in _command_lines(_marked_processes(marker)) and check.poll() is None:
        assert time.monotonic() < deadline, "train.py never started"
        time.sleep(0.5)
    os.killpg(check.pid, signum)
    check.wait(timeout=60)
    deadline = time.monotonic() + 30
    while (left := _marked_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, _command_lines(left)
    assert json.loads((tmp_path / "steps" / "07_bench_extraction.json").read_text())["status"] == "ok"
    assert json.loads((tmp_path / "gpu_check.json").read_text())["steps"]["bench_extraction"]["result"]["utterances"]
    if signum == signal.SIGTERM:  # handled: the running step is recorded as interrupted, the exit says why
        assert check.returncode == 128 + signal.SIGTERM
        assert json.loads((tmp_path / "steps" / "08_bench_train_e2e.json").read_text())["status"] == \
            "interrupted by SIGTERM"


def test_v2_step_runs_release_size_on_the_gpu_and_the_quick_smoke_on_the_cpu(tmp_path):
    step = next(step for step in gpu_check.STEPS if step.name == "bench_v2_reference")
    assert step.number == 10 and step.name in gpu_check.PARTS["long"]
    cuda = gpu_check.parse_args(["--device", "cuda", "--size", "1.5"])
    command = gpu_check.step_command(step, cuda, tmp_path, None, 60)
    assert command[command.index("--size") + 1] == "release"
    assert "--no_reference" in command and command[command.index("--gpt_batch_sizes") + 1:][:2] == ["1", "16"]
    cpu = gpu_check.parse_args(["--device", "cpu", "--size", "tiny"])
    command = gpu_check.step_command(step, cpu, tmp_path, None, 60)
    assert command[command.index("--size") + 1] == "tiny" and "--quick" in command


def test_v2_training_step_runs_bench_train_for_indextts2_at_release_size_on_the_gpu(tmp_path):
    step = next(step for step in gpu_check.STEPS if step.name == "bench_train_v2")
    assert step.name in gpu_check.PARTS["long"]
    for device, size, expected_size in (("cuda", "1.5", "release"), ("cpu", "tiny", "tiny")):
        command = gpu_check.step_command(step, gpu_check.parse_args(["--device", device, "--size", size]),
                                         tmp_path, tmp_path / "model", 60)
        assert command[1] == str(gpu_check.REPO_ROOT / "benchmarks" / "bench_train.py")
        assert command[command.index("--size") + 1] == expected_size
        assert command[command.index("--family") + 1] == "2"
        assert command[command.index("--json") + 1] == str(tmp_path / "bench_train_v2.result.json")  # not step 5's


def test_steps_are_numbered_in_order_and_expected_to_fit_the_default_budget():
    numbers = [step.number for step in gpu_check.STEPS]
    assert numbers == sorted(set(numbers))
    expected = gpu_check.PREFLIGHT_EXPECTED_S + sum(step.expected_s for step in gpu_check.STEPS)
    assert expected < gpu_check.parse_args([]).budget_s <= 360  # under 6 minutes on one H200


@pytest.mark.slow
def test_v2_step_writes_its_figures_when_it_ends(tmp_path):
    result = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--size", "tiny",
                             "--out", str(tmp_path), "--only", "bench_v2_reference"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    record = json.loads((tmp_path / "steps" / "10_bench_v2_reference.json").read_text())
    assert record["status"] == "ok"
    assert set(record["result"]["stages"]) == {"semantic", "gpt_b1", "s2mel", "vocoder_exact"}
    assert "## IndexTTS-2 stages (bench_v2_reference.py)" in (tmp_path / "gpu_check.md").read_text()


def test_cuda_test_modules_are_found():
    assert "tests/test_cuda_decode.py" in gpu_check.cuda_test_files()


def _synthetic_report(device: str, size: str) -> dict:
    infer = {"device": device, "size": size,
             "generation": [{"mode": "greedy", "batch": 1, "variant": "graph", "decode_codes_per_s": 1200.0,
                             "captures_during_timing": 0},
                            {"mode": "default", "batch": 1, "variant": "graph", "decode_codes_per_s": 350.0,
                             "captures_during_timing": 0}],
             "vocoder": {"audio_per_second": 250.0},
             "end_to_end": [{"target_seconds": 10, "mode": "greedy", "rtf": 0.01, "first_audio_seconds": 0.1,
                             "first_sentence_seconds": 0.3},
                            {"target_seconds": 10, "mode": "default", "rtf": 0.03, "first_audio_seconds": 0.2,
                             "first_sentence_seconds": 0.9}]}
    train = {"device": device, "size": size, "precision": "bf16", "compile": False,
             "results": [{"budget": "16k", "max_tokens": 16000, "tokens_per_s": 19000.0, "mfu": 0.30},
                         {"budget": "auto", "max_tokens": 90000, "tokens_per_s": 25000.0, "mfu": 0.35}]}
    e2e = {"device": device, "size": size, "minutes": 30.0, "epochs": 10, "optimizer_steps": 400, "wall_s": 28.5}
    extraction = {"device": device, "size": size, "precision": "fp16", "batch_size": 64, "steady_utterances": 1000,
                  "steady_utterances_per_second": 120.0, "utterances_per_second": 80.0, "batches": 10,
                  "fallback_batches": 1, "precision_check_batches": 2, "model_loading_seconds": 4.0}
    v2 = {"device": device, "size": "release" if size == "1.5" else size, "repeats": 3, "note": "short inputs",
          "stages": {"gpt_b16": {"unit": "codes/s", "ours": {"codes/s": {"median": 900.0, "min": 850.0, "max": 950.0}}},
                     "s2mel": {"unit": "RTF", "ours": {"RTF": {"median": 0.05, "min": 0.04, "max": 0.06}}}}}
    train_v2 = {"family": "2", "device": device, "size": "release" if size == "1.5" else size, "precision": "bf16",
                "prefix_rows": 34, "results": [{"budget": "16k", "max_tokens": 16000, "rows": 45,
                                                "tokens_per_s": 15000.0, "step_s": 0.9, "mfu": 0.25,
                                                "peak_memory_mib": 9000.0}]}
    results = {"bench_infer": infer, "bench_train": train, "bench_train_e2e": e2e, "bench_extraction": extraction,
               "bench_train_v2": train_v2, "bench_v2_reference": v2}
    steps = {name: {"status": "ok", "result": result} for name, result in results.items()}
    return {"device": device, "size": size, "steps": steps}


def test_report_judges_every_target_on_the_target_machine():
    table = gpu_report.markdown_report(_synthetic_report("cuda", "1.5"))
    assert "greedy >= 1000: met; default >= 400: missed |" in table
    assert "| BigVGAN audio s per s | 250.0 | >= 300: missed |" in table
    assert "| end-to-end RTF, 10 s text, greedy | 0.01 | <= 0.02: met |" in table
    assert "| end-to-end RTF, 10 s text, default | 0.03 | - |" in table  # reported, not held to the greedy target
    assert "10 s text, greedy (s) | 0.1 | <= 0.15: met |" in table and "| 0 (0 expected) |" in table
    assert "| 16k | 16000 | 19000.0 | 0.3 |" in table and "tokens/s >= 20,000: missed |" in table
    assert "tokens/s >= 20,000: met; MFU >= 40%: missed |" in table
    assert "| 30 min x 10 epochs, 400 steps, wall (s) | 28.5 | <= 30 s: met |" in table
    assert "| 120.0 | >= 100: met |" in table and "| first 2, 1 of 10 fell back |" in table
    assert "| weights loading (s), timed apart | 4.0 |" in table
    assert "| gpt_b16 | codes/s | 900.0 | 850.0 | 950.0 |" in table and "| s2mel | RTF | 0.05 | 0.04 | 0.06 |" in table
    assert "| 16k | 16000 | 45 | 15000.0 | 0.9 | 0.25 | 9000.0 |" in table and "34 prefix rows" in table


def test_report_does_not_judge_a_cpu_or_tiny_run_against_the_h100_targets():
    table = gpu_report.markdown_report(_synthetic_report("cpu", "tiny"))
    assert " met" not in table and "missed" not in table
    assert table.count("not judged (cpu, size tiny") == 10  # 4 inference, 6 training and extraction
