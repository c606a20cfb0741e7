"""The prepared GPU check: one command, under 6 minutes on one H200, every GPU figure of the project.

    PYTHONPATH=. python benchmarks/gpu_check.py                          # on a GPU machine, repo root
    PYTHONPATH=. python benchmarks/gpu_check.py --device cpu --size tiny # the same steps on a CPU

Steps, in order of value, each bounded by its budget (``STEPS``) and by what is left of ``--budget_s``:

1. preflight: every dependency of pyproject.toml in a fitting version, every module of ``indextts``
   the steps use importable, CUDA present (``--device cuda``); the versions are named; stops at once
   (exit 2) naming what is missing and how to bring it. Then one random-weight checkpoint folder of
   ``--size`` is written for every step that takes ``--model_dir``;
2. ``pytest -m cuda`` (skipped tests count as skipped, not passed);
3. and 4. bench_infer.py: decoding (greedy, default mode; with and without CUDA graphs), BigVGAN,
   end to end;
5. bench_train.py: LoRA training tokens/s and MFU;
6. bench_learning.py: the teacher-student learning check;
7. bench_extraction.py: steady-state utterances/s;
8. bench_train_e2e.py: 30 min x 10 epochs through train.py;
9. bench_train.py --family 2 (step "bench_train_v2"): IndexTTS-2 LoRA training tokens/s and MFU at
   release size with random weights;
10. bench_v2_reference.py, this project only: IndexTTS-2 at release size with random weights, GPT greedy
    codes/s at batch 1 and 16, S2Mel (25 steps) and BigVGAN v2 real-time factors.

Every child runs in its own process session with its output streamed to the console and to
``OUT/steps/NN_name.log``; ``OUT/steps/NN_name.json`` and ``OUT/gpu_check.json``/``.md`` are written
as soon as a step ends. A step past its time has its whole process group killed; SIGTERM or SIGINT
to the check kills the running child's group and keeps everything finished. A script missing from
the checkout is recorded as not run. Exit status 0 when every step ran and passed, 1 otherwise, 2
when the preflight failed, 128 + the signal's number when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "benchmarks")]  # indextts without installing it

from gpu_preflight import WHEELS_HINT, preflight  # noqa: E402  (sibling script modules, not a package)
from gpu_report import markdown_report  # noqa: E402
from process_group import Interrupted, raise_on_termination, run_logged  # noqa: E402


@dataclass(frozen=True)
class Step:
    """One child of the check: ``benchmarks/<script or name>.py`` (or pytest for "tests") and its time."""

    name: str
    number: int
    """Its place in docs/benchmarks.md's table (bench_infer is steps 3 and 4: decode, then BigVGAN)."""
    budget_s: float
    """Most seconds it may take on one H200 at 1.5 size (also the limit of every other run)."""
    expected_s: float
    """Seconds it is expected to take there (an estimate until a GPU run measures it)."""
    cpu_args: tuple[str, ...] = ()
    cuda_args: tuple[str, ...] = ()
    release_size: str = "1.5"
    """The script's ``--size`` for the check's ``--size 1.5`` (its release size)."""
    script: str = ""
    """``benchmarks/<script>.py`` when another step runs the same script with other arguments (default: name)."""


STEPS = (
    Step("tests", 2, 75, 45),
    Step("bench_infer", 3, 100, 70, ("--codes", "8", "--batch_sizes", "1", "4", "--vocoder_codes", "16",
                                  "--e2e_seconds", "1", "2", "--text_len", "8")),
    Step("bench_train", 5, 40, 25, ("--budgets", "2k,auto", "--steps", "2", "--warmup", "1", "--cpu_budget", "3000")),
    Step("bench_learning", 6, 45, 35),
    Step("bench_extraction", 7, 40, 25, ("--utterances", "8", "--batch_size", "4", "--mean_seconds", "2",
                                      "--num_workers", "0"), ("--utterances", "1000", "--precision_check_batches", "2")),
    Step("bench_train_e2e", 8, 60, 45, ("--minutes", "1", "--epochs", "1")),
    Step("bench_train_v2", 9, 40, 26, ("--family", "2", "--budgets", "1k", "--steps", "2", "--warmup", "1"),
         ("--family", "2", "--budgets", "16k,auto", "--steps", "3", "--warmup", "1"), release_size="release",
         script="bench_train"),
    Step("bench_v2_reference", 10, 55, 45, ("--quick", "--no_reference"),
         ("--no_reference", "--stages", "gpt", "s2mel", "vocoder", "--gpt_batch_sizes", "1", "16", "--repeats", "3"),
         release_size="release"),
)
"""The steps after the preflight, in order of value (the last is the one a short budget cuts)."""
PARTS = {"all": [step.name for step in STEPS], "short": ["tests", "bench_infer", "bench_train"],
         "long": ["bench_learning", "bench_extraction", "bench_train_e2e", "bench_train_v2",
                  "bench_v2_reference"]}
PREFLIGHT_EXPECTED_S = 25
"""Imports and writing the shared 1.5-size random checkpoint folder (about 3 GB)."""
CPU_BUDGET_SCALE = 4.0
"""The budgets are for an H200; on a shared CPU the tiny steps may take this many times longer."""
LEARNING_MARGIN_S = 10
"""bench_learning.py gets its budget less this, for its own start and its JSON."""


def child_environment() -> dict:
    """The children's environment: the repository root first on PYTHONPATH, output unbuffered."""
    environment = dict(os.environ)
    paths = [str(REPO_ROOT)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def pytest_counts(output: str) -> dict:
    """passed/failed/skipped/error counts from pytest's summary line."""
    return {kind: int(count) for count, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}


def cuda_test_files() -> list[str]:
    """Test modules that use the ``cuda`` marker (collecting only these keeps the step short)."""
    return [str(path.relative_to(REPO_ROOT)) for path in sorted((REPO_ROOT / "tests").glob("test_*.py"))
            if "mark.cuda" in path.read_text(encoding="utf-8")]


def step_command(step: Step, args, files: Path, model_dir: Path | None, timeout: float) -> list[str] | None:
    """The child's command line, or None when its script is not in the checkout."""
    if step.name == "tests":
        # -v names each test as it ends, so a step cut by its budget still says which failed
        return [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "--tb=line", "-p", "no:cacheprovider",
                f"--junitxml={files / 'cuda_tests.xml'}", *cuda_test_files()]
    script = REPO_ROOT / "benchmarks" / f"{step.script or step.name}.py"
    if not script.is_file():
        return None
    size = step.release_size if args.size == "1.5" else args.size
    command = [sys.executable, str(script), "--device", args.device, "--size", size,
               "--json", str(files / f"{step.name}.result.json"),
               *(step.cpu_args if args.device == "cpu" else step.cuda_args)]
    source = script.read_text(encoding="utf-8")
    if model_dir is not None and '"--model_dir"' in source:
        command += ["--model_dir", str(model_dir)]
    if step.name == "bench_learning":
        command += ["--budget_s", str(int(max(timeout - LEARNING_MARGIN_S, 1)))]
    return command


def run_step(step: Step, index: int, args, files: Path, model_dir: Path | None, timeout: float) -> dict:
    """Run one step; its record (status, seconds, output tail, the child's JSON as ``result``)."""
    command = step_command(step, args, files, model_dir, timeout)
    if command is None:
        return {"status": "not run: script missing"}
    print(f"[gpu_check] step {index}: {step.name} (at most {timeout:.0f} s)", flush=True)
    record = run_logged(command, files / f"{index:02d}_{step.name}.log", timeout, REPO_ROOT, child_environment())
    print(f"[gpu_check] {step.name}: {record['status']} in {record['seconds']} s", flush=True)
    result = files / f"{step.name}.result.json"
    if result.is_file():
        record["result"] = json.loads(result.read_text(encoding="utf-8"))
    if step.name == "tests":
        record["counts"] = pytest_counts(record["output_tail"])
        if record["exit_code"] == 5:  # pytest: no tests collected
            record["status"] = "ok (no cuda tests collected)"
    return record


class Report:
    """gpu_check.json and gpu_check.md, rewritten whenever a step ends."""

    def __init__(self, out: Path, args, started: float):
        self.out, self.started = out, started
        self.data = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
                     "size": args.size, "part": args.part, "machine": {}, "preflight": [], "steps": {}}

    def save(self) -> None:
        self.data["seconds"] = round(time.monotonic() - self.started, 1)
        _write_text(self.out / "gpu_check.json", json.dumps(self.data, indent=2) + "\n")
        _write_text(self.out / "gpu_check.md", markdown_report(self.data))

    def add_step(self, index: int, name: str, record: dict) -> None:
        self.data["steps"][name] = record
        _write_text(self.out / "steps" / f"{index:02d}_{name}.json", json.dumps(record, indent=2) + "\n")
        self.save()


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file, so a kill mid-write leaves the previous version whole."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="where everything runs")
    parser.add_argument("--size", choices=["1.5", "tiny"], default="1.5", help="model sizes of the benchmarks")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="folder for the JSON, logs, table")
    parser.add_argument("--budget_s", type=float, default=350.0, help="wall-clock budget of the whole check")
    parser.add_argument("--part", choices=sorted(PARTS), default="all",
                        help="all steps, or the short part (tests, decode, training) or the long one")
    parser.add_argument("--only", nargs="*", choices=[step.name for step in STEPS], help="run only these steps")
    parser.add_argument("--model_dir", type=Path, default=None,
                        help="checkpoint folder for the steps that take one (default: one random folder written once)")
    return parser.parse_args(argv)


def shared_model_dir(args, work: Path) -> Path:
    """The one random-weight checkpoint folder of ``--size`` every step with ``--model_dir`` reads."""
    if args.model_dir is not None:
        return args.model_dir.resolve()
    from indextts.tiny import write_tiny_checkpoints

    started = time.perf_counter()
    folder = write_tiny_checkpoints(work / "model", seed=0, release=args.size)
    print(f"[gpu_check] random {args.size} checkpoint folder written in {time.perf_counter() - started:.1f} s",
          flush=True)
    return folder


def run_steps(args, report: Report, deadline: float, work: Path) -> None:
    """Every selected step in order, each within its budget and what is left of the whole."""
    files = report.out / "steps"
    chosen = set(args.only or PARTS[args.part])
    model_dir = shared_model_dir(args, work)
    for step in STEPS:
        index = step.number
        if step.name not in chosen:
            continue
        budget = step.budget_s * (CPU_BUDGET_SCALE if args.device == "cpu" else 1.0)
        timeout = min(budget, deadline - time.monotonic())
        if timeout <= 5:
            report.add_step(index, step.name, {"status": "not run: the time budget is spent"})
            continue
        try:
            record = run_step(step, index, args, files, model_dir, timeout)
        except Interrupted as interrupted:  # the child's group is already killed
            report.add_step(index, step.name, {"status": str(interrupted)})
            raise
        report.add_step(index, step.name, record)


def check(args, report: Report, deadline: float) -> int:
    """The preflight, then the steps; the exit status."""
    report.data["machine"], problems = preflight(args.device)
    report.data["preflight"] = problems
    report.add_step(1, "preflight", {"status": "failed" if problems else "ok", "problems": problems,
                                     "machine": report.data["machine"]})
    if problems:
        print("[gpu_check] preflight failed:\n  - " + "\n  - ".join(problems) + "\n" + WHEELS_HINT, flush=True)
        return 2
    print(f"[gpu_check] preflight ok: {json.dumps(report.data['machine'])}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        run_steps(args, report, deadline, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [name for name, step in report.data["steps"].items() if not step["status"].startswith("ok")
              and step["status"] != "not run: script missing"]
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    report = Report(args.out.resolve(), args, started)
    (report.out / "steps").mkdir(parents=True, exist_ok=True)
    raise_on_termination()
    try:
        status = check(args, report, started + args.budget_s)
    except Interrupted as interrupted:
        report.data["interrupted"] = str(interrupted)
        print(f"[gpu_check] {interrupted}: finished steps are kept in {report.out}", flush=True)
        status = 128 + interrupted.signum
    report.save()
    print(markdown_report(report.data), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
