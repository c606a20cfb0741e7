"""The prepared GPU check: one command, about 8 minutes on one H100, every GPU figure of the project.

    python benchmarks/gpu_check.py                                  # on a GPU machine, from the repo root
    python benchmarks/gpu_check.py --device cpu --size tiny         # the same steps on a CPU, < 2 minutes

Steps, each bounded by what is left of ``--budget_s``:

1. preflight: every dependency of pyproject.toml installed in a fitting version and importable, CUDA
   present (with ``--device cuda``); stops at once naming what is missing and how to bring it;
2. ``pytest -m cuda`` (skipped tests count as skipped, not passed);
3. the benchmarks as subprocesses, each with ``--device --size --json``: bench_infer.py (decoding with
   and without CUDA graphs, vocoder, end to end, first chunk), bench_train.py (tokens/s, MFU),
   bench_train_e2e.py (30 min x 10 epochs through train.py), bench_extraction.py (utterances/s); a
   script missing from the checkout is recorded as not run.

Writes ``OUT/gpu_check.json`` (everything, raw) and ``OUT/gpu_check.md`` (the table, with the targets of
issues 11 and 12). Exit status 0 when every step ran and passed, 1 otherwise (the files are written
either way), 2 when the preflight failed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_report import markdown_report  # noqa: E402  (a sibling script module, not a package)

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"pyyaml": "yaml"}
"""Distributions whose import name is not their name with '-' read as '_'."""
BENCHMARKS = ("bench_infer", "bench_train", "bench_train_e2e", "bench_extraction")
STEP_SHARES = {"tests": 0.25, "bench_infer": 0.3, "bench_train": 0.15, "bench_train_e2e": 0.15,
               "bench_extraction": 0.15}
"""Share of the whole budget each step may use at most (time a step leaves unused goes to the later ones)."""
CPU_BENCH_ARGS = {"bench_infer": ["--codes", "8", "--batch_sizes", "1", "4", "--vocoder_codes", "16",
                                  "--e2e_seconds", "1", "2", "--text_len", "8"],
                  "bench_train": ["--budgets", "4k,auto", "--steps", "3", "--warmup", "1"],
                  "bench_train_e2e": ["--minutes", "1", "--epochs", "2"],
                  "bench_extraction": ["--utterances", "16", "--num_workers", "0"]}
"""Extra arguments that keep the CPU smoke run short (``--device cpu``)."""
WHEELS_HINT = (
    "Bring missing packages as wheels: on a machine with network run `bash benchmarks/prepare_device_wheels.sh` "
    "(it fills .whl/ for CPython 3.12 manylinux), copy .whl/ along, and start the command with "
    "`python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && "
    "export PYTHONPATH=/tmp/site:$PYTHONPATH` (docs/benchmarks.md)."
)


def project_requirements() -> list[str]:
    """The ``[project] dependencies`` of pyproject.toml, as written there."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


def requirement_problem(requirement: str) -> str | None:
    """Why ``requirement`` is not met here (missing, wrong version, import fails), or None."""
    from packaging.requirements import Requirement

    parsed = Requirement(requirement)
    try:
        version = importlib.metadata.version(parsed.name)
    except importlib.metadata.PackageNotFoundError:
        return f"{parsed.name}: not installed (needs {parsed.specifier or 'any version'})"
    if parsed.specifier and not parsed.specifier.contains(version, prereleases=True):
        return f"{parsed.name}: version {version} installed, needs {parsed.specifier}"
    module = IMPORT_NAMES.get(parsed.name.lower(), parsed.name.replace("-", "_"))
    try:
        importlib.import_module(module)
    except Exception as error:  # an installed package can still fail to load (missing shared library)
        return f"{parsed.name}: installed {version} but `import {module}` fails: {error}"
    return None


def device_facts(device: str) -> tuple[dict, list[str]]:
    """Versions and accelerator facts, and what keeps ``device`` from being used."""
    import torch

    facts = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
             "transformers": importlib.metadata.version("transformers")}
    if device != "cuda":
        return facts, []
    if not torch.cuda.is_available():
        return facts, ["torch.cuda.is_available() is False: this torch build or machine has no usable CUDA GPU"]
    properties = torch.cuda.get_device_properties(0)
    facts |= {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
              "capability": f"{properties.major}.{properties.minor}",
              "flash_attention": bool(torch.backends.cuda.is_flash_attention_available())}
    return facts, []


def preflight(device: str) -> tuple[dict, list[str]]:
    """Facts about this machine and every problem that stops the check."""
    problems = [problem for requirement in project_requirements() if (problem := requirement_problem(requirement))]
    for module in ("pytest", "indextts.gpt.generation"):
        try:
            importlib.import_module(module)
        except Exception as error:
            problems.append(f"`import {module}` fails: {error}")
    if any(problem.startswith("torch:") for problem in problems):
        return {}, problems
    facts, device_problems = device_facts(device)
    return facts, problems + device_problems


def child_environment() -> dict:
    """The environment of the subprocesses: the repository importable without installing it."""
    environment = dict(os.environ)
    paths = [str(REPO_ROOT)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment.setdefault("PYTHONUNBUFFERED", "1")
    return environment


def run_step(command: list[str], timeout: float) -> dict:
    """Run one subprocess with a time limit; its status, exit code, wall time and the end of its output."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO_ROOT, env=child_environment(), capture_output=True, text=True,
                              timeout=max(timeout, 1.0))
        status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as expired:
        status, code = f"timed out after {timeout:.0f} s", None
        output = (expired.stdout or b"").decode(errors="replace") + (expired.stderr or b"").decode(errors="replace")
    seconds = round(time.perf_counter() - start, 1)
    print(f"[gpu_check] {' '.join(command[1:3])}: {status} in {seconds} s", flush=True)
    return {"command": command, "status": status, "exit_code": code, "seconds": seconds, "output_tail": output[-4000:]}


def pytest_counts(output: str) -> dict:
    """passed/failed/skipped/error counts from pytest's summary line."""
    return {kind: int(count) for count, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", output)}


def cuda_test_files() -> list[str]:
    """Test modules that use the ``cuda`` marker (collecting only these keeps the step short)."""
    return [str(path.relative_to(REPO_ROOT)) for path in sorted((REPO_ROOT / "tests").glob("test_*.py"))
            if "mark.cuda" in path.read_text(encoding="utf-8")]


def run_tests(timeout: float, out: Path) -> dict:
    files = cuda_test_files()
    if not files:
        return {"status": "ok (no cuda tests found)"}
    step = run_step([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider",
                     f"--junitxml={out / 'cuda_tests.xml'}", *files], timeout)
    step["counts"] = pytest_counts(step["output_tail"])
    if step["exit_code"] == 5:  # pytest: no tests collected
        step["status"] = "ok (no cuda tests collected)"
    return step


def run_benchmark(name: str, device: str, size: str, timeout: float, out: Path) -> dict:
    script = REPO_ROOT / "benchmarks" / f"{name}.py"
    if not script.is_file():
        return {"status": "not run: script missing"}
    json_path = out / f"{name}.json"
    extra = CPU_BENCH_ARGS.get(name, []) if device == "cpu" else []
    step = run_step([sys.executable, str(script), "--device", device, "--size", size, "--json", str(json_path),
                     *extra], timeout)
    if json_path.is_file():
        step["result"] = json.loads(json_path.read_text(encoding="utf-8"))
    return step


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="where everything runs")
    parser.add_argument("--size", choices=["1.5", "tiny"], default="1.5", help="model sizes of the benchmarks")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="folder for the JSON and table")
    parser.add_argument("--budget_s", type=float, default=460.0, help="wall-clock budget of all steps")
    parser.add_argument("--skip_tests", action="store_true", help="leave out `pytest -m cuda`")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these benchmarks")
    return parser.parse_args(argv)


def run_steps(args, out: Path, deadline: float) -> dict:
    """The tests and the benchmarks, each within its share of the budget and what is left of it."""
    steps = {}
    names = (["tests"] if not args.skip_tests else []) + list(args.only or BENCHMARKS)
    for name in names:
        timeout = min(STEP_SHARES[name] * args.budget_s * 2, deadline - time.monotonic())
        if timeout <= 5:
            steps[name] = {"status": "not run: the time budget is spent"}
        elif name == "tests":
            steps[name] = run_tests(timeout, out)
        else:
            steps[name] = run_benchmark(name, args.device, args.size, timeout, out)
    return steps


def main(argv=None) -> int:
    args = parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    facts, problems = preflight(args.device)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": args.device,
              "size": args.size, "machine": facts, "preflight": problems}
    if problems:
        print("[gpu_check] preflight failed:\n  - " + "\n  - ".join(problems) + "\n" + WHEELS_HINT, flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return 2
    print(f"[gpu_check] preflight ok: {json.dumps(facts)}", flush=True)
    report["steps"] = run_steps(args, out, deadline)
    report["seconds"] = round(args.budget_s - (deadline - time.monotonic()), 1)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown_report(report)
    (out / "gpu_check.md").write_text(table, encoding="utf-8")
    print(table, flush=True)
    failed = [name for name, step in report["steps"].items()
              if not step["status"].startswith(("ok", "not run: script missing"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
