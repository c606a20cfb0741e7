"""The preflight of ``benchmarks/gpu_check.py``: what must be installed and importable before any step.

Every dependency of pyproject.toml in a fitting version, every module of ``indextts`` the steps
import and the benchmarks' own helper modules (a missing protobuf or an old peft shows here, not
halfway through the check), pytest, and
CUDA with ``--device cuda``. Names the versions of what it found.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"pyyaml": "yaml"}
"""Distributions whose import name is not their name with '-' read as '_'."""
OPTIONAL_PACKAGES = ("indextts.cli", "indextts.evaluation", "indextts.evaluation", "indextts.prepare", "indextts.serving",
                     "indextts.serving", "indextts.webui")
"""Modules behind optional extras (serving, web UI, evaluation, preparation): no step imports them."""
BENCHMARK_MODULES = ("v2_bench_folder", "v2_bench_stages")
"""Sibling modules of the benchmarks that the steps import (bench_v2_reference.py's folder and stages)."""
NAMED_VERSIONS = ("transformers", "peft", "numpy", "sentencepiece", "protobuf", "omegaconf", "safetensors",
                  "soundfile", "soxr", "wetext", "pytest")
WHEELS_HINT = (
    "Bring missing packages as wheels: on a machine with network run `bash benchmarks/prepare_device_wheels.sh` "
    "(it fills .whl/ for CPython 3.12 manylinux), carry .whl/ along, and start the command with "
    "`python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && "
    "export PYTHONPATH=$PWD:/tmp/site` (docs/benchmarks.md)."
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


def step_modules() -> list[str]:
    """Every module of ``indextts`` outside the optional extras, read off the source tree (nothing imported)."""
    names = []
    for path in sorted((REPO_ROOT / "indextts").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(OPTIONAL_PACKAGES):
            names.append(name)
    return names


def module_problems(modules: list[str]) -> list[str]:
    """`import X fails: why` for every module that does not import."""
    problems = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:  # any failure to import is what the preflight reports
            problems.append(f"`import {module}` fails: {type(error).__name__}: {error}")
    return problems


def versions() -> dict:
    """Python, torch, CUDA and the versions of the packages the steps lean on (None: not installed)."""
    import torch

    found = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
             "indextts": (spec := importlib.util.find_spec("indextts")) and spec.origin}
    for name in NAMED_VERSIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def device_problems(device: str) -> tuple[dict, list[str]]:
    """Accelerator facts, and what keeps ``device`` from being used."""
    import torch

    if device != "cuda":
        return {}, []
    if not torch.cuda.is_available():
        return {}, ["torch.cuda.is_available() is False: this torch build or machine has no usable CUDA GPU"]
    properties = torch.cuda.get_device_properties(0)
    return {"gpu": properties.name, "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
            "capability": f"{properties.major}.{properties.minor}",
            "flash_attention": bool(torch.backends.cuda.is_flash_attention_available())}, []


def preflight(device: str) -> tuple[dict, list[str]]:
    """Facts about this machine (versions named) and every problem that stops the check."""
    problems = [problem for requirement in project_requirements() if (problem := requirement_problem(requirement))]
    if any(problem.startswith("torch:") for problem in problems):
        return {}, problems
    problems += module_problems(["pytest", *step_modules(), *BENCHMARK_MODULES])
    if problems:
        return versions(), problems
    facts, problems = device_problems(device)
    return versions() | facts, problems
