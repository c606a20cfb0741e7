"""Step checkpoints of a run: what they hold beyond the run files, which one a resume takes, and how
they are kept (the folder layout and the crash-safe writes are ``indextts.run_folder.RunFolder``'s).

A checkpoint (``RunFolder.checkpoint_dir(step)``) holds the loadable run files (adapter, speakers,
config) plus what an exact resume needs: ``optimizer.safetensors`` + ``optimizer.json`` (the
optimizer state split into tensors and the rest), ``rng.safetensors`` (every rank's generators)
and ``trainer_state.json`` (position in the data, scheduler, scaler, early-stopping state, the
resolved token budget and the not yet logged loss sums). It is staged and moved into place whole,
so a kill leaves either no checkpoint or a complete one. The run folder itself is guarded by
``RunLock`` so two runs never write it at once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from peft.utils import set_peft_model_state_dict
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from indextts.atomic_files import write_json_atomic
from indextts.errors import TrainingError
from indextts.run_folder import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    CHECKPOINTS_DIR,
    SPEAKERS_INFO,
    STEP_PREFIX,
    RunFolder,
    step_of,
)
from indextts.runtime import DistributedContext

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
RNG_FILE = "rng.safetensors"
RESUME_FILES = (STATE_FILE, OPTIMIZER_TENSORS, OPTIMIZER_META, RNG_FILE)
RESUME_HINT = f"train.resume=<run_dir>/{CHECKPOINTS_DIR}/{STEP_PREFIX}XXXXXXXX"
"""How a message names a checkpoint folder to resume from."""


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step of the run ``run_dir``, if any."""
    return RunFolder(run_dir).latest_checkpoint()


def resume_target(run_dir: Path, resume: str | None) -> Path | None:
    """The checkpoint ``train.resume`` names (None for a fresh run); refuses every unclear case."""
    run = RunFolder(run_dir)
    latest = run.latest_checkpoint()
    if resume is None:
        if latest is not None:
            raise TrainingError(f"{run_dir} already holds checkpoints. Continue it with --resume "
                                "(train.resume=auto) or choose a new run_dir=... .")
        return None
    if resume == "auto":
        if latest is None:
            raise TrainingError(f"--resume (train.resume=auto) was given but {run.checkpoints_dir} holds no "
                                "complete checkpoint, so there is nothing to continue. Drop --resume to start a "
                                "fresh run, or check run_dir.")
        return latest
    folder = Path(resume).expanduser().resolve()
    missing = [name for name in RESUME_FILES if not (folder / name).is_file()]
    if missing:
        raise TrainingError(f"train.resume={resume}: {folder} is not a complete checkpoint folder (lacks "
                            f"{missing}). Use train.resume=auto or {RESUME_HINT}.")
    return folder


def abandon_later_checkpoints(run_dir: Path, step: int) -> Path | None:
    """Move the checkpoints after ``step`` into ``abandoned-<time>/`` beside them (resume from an earlier one)."""
    run = RunFolder(run_dir)
    later = [p for p in run.checkpoints() if step_of(p) > step]
    if not later:
        return None
    target = run.checkpoints_dir / f"abandoned-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=True)
    for folder in later:
        os.rename(folder, target / folder.name)
    logger.warning("Resuming from step %d: moved the %d later checkpoint(s) %s aside into %s", step, len(later),
                   [p.name for p in later], target)
    return target


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints."""
    for old in RunFolder(run_dir).checkpoints()[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser state dict into tensors (for safetensors) and the rest (for JSON)."""
    state_dict = optimizer.state_dict()
    tensors, other = {}, {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                other.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state": other}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of ``optimizer_to_files``: a state dict for ``Optimizer.load_state_dict``."""
    state: dict[int, dict] = {int(i): dict(values) for i, values in meta["state"].items()}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def write_checkpoint(run_dir: Path, step: int, write_artifacts: Callable[[Path], None],
                     optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor], state: dict) -> Path:
    """Write the checkpoint of ``step`` crash-safely; ``write_artifacts(folder)`` adds the run files. One
    written before by a run that was resumed from an earlier step is replaced."""
    def write(folder: Path) -> None:
        write_artifacts(folder)
        tensors, meta = optimizer_to_files(optimizer)
        save_file(tensors, str(folder / OPTIMIZER_TENSORS))
        write_json_atomic(folder / OPTIMIZER_META, meta, sync=False)
        save_file({k: v.contiguous() for k, v in rng.items()}, str(folder / RNG_FILE))
        write_json_atomic(folder / STATE_FILE, state, sync=False)

    return RunFolder(run_dir).write_snapshot(step, write)


def read_checkpoint_state(folder: Path) -> dict:
    """``trainer_state.json`` of a checkpoint."""
    try:
        return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TrainingError(f"Cannot read {folder / STATE_FILE}: {error}. Resume from another checkpoint "
                            f"({RESUME_HINT}).") from error


def trained_speakers(run_dir: str, resume: str | None) -> list[str] | None:
    """Names of the speakers the checkpoint to resume was trained on, in index order (None for a fresh run).

    A run keeps its speakers: data extracted into the folder later must not change what it resumes.
    """
    if resume is None:
        return None
    try:
        folder = resume_target(Path(run_dir).expanduser().resolve(), resume)
    except TrainingError:
        return None  # refused after the inputs are checked, in the usual order (Trainer._setup_run_dir)
    try:
        entries = json.loads((folder / SPEAKERS_INFO).read_text(encoding="utf-8"))["speakers"]
        return [entry["name"] for entry in sorted(entries, key=lambda entry: entry["index"])]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise TrainingError(f"Cannot read the speakers this run was trained on from {folder / SPEAKERS_INFO} "
                            f"({error}). Resume from another checkpoint "
                            f"({RESUME_HINT}).") from error


def load_adapter(peft_model, folder: Path, device: torch.device, settings_hint: str) -> None:
    """Load the checkpoint's adapter into ``peft_model``; a shape or key mismatch is a TrainingError."""
    path = folder / ADAPTER_DIR / ADAPTER_WEIGHTS
    problem = None
    try:
        result = set_peft_model_state_dict(peft_model, load_file(str(path), device=str(device)))
        if result.unexpected_keys or any("lora_" in k or "trainable_tokens" in k for k in result.missing_keys):
            problem = f"unexpected tensors {result.unexpected_keys[:3]}"
    except (RuntimeError, ValueError, SafetensorError, OSError) as error:
        problem = str(error).splitlines()[0]
    if problem:
        raise TrainingError(f"The adapter in {folder} does not match this run's LoRA settings ({settings_hint}; "
                            f"{problem}). Resume with the settings it was trained with, or start a new run_dir.")


def load_optimizer(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    tensors = load_file(str(folder / OPTIMIZER_TENSORS))
    meta = json.loads((folder / OPTIMIZER_META).read_text(encoding="utf-8"))
    optimizer.load_state_dict(optimizer_from_files(tensors, meta))


def gather_rng_states(context: DistributedContext) -> dict[str, torch.Tensor]:
    """Every rank's CPU (and CUDA) generator state as ``"<kind>.rank<r>"`` (collective under torchrun)."""
    states = {"cpu": torch.get_rng_state()}
    if context.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(context.device)
    if not context.enabled:
        return {f"{k}.rank0": v for k, v in states.items()}
    gathered: list = [None] * context.world_size
    dist.all_gather_object(gathered, {k: v.cpu() for k, v in states.items()})
    return {f"{k}.rank{r}": v for r, s in enumerate(gathered) for k, v in s.items()}


def restore_rng_states(rng: dict[str, torch.Tensor], context: DistributedContext) -> None:
    torch.set_rng_state(rng[f"cpu.rank{context.rank}"])
    if context.device.type == "cuda" and f"cuda.rank{context.rank}" in rng:
        torch.cuda.set_rng_state(rng[f"cuda.rank{context.rank}"], context.device)


class RunLock:
    """An exclusive ``fcntl`` lock on the run folder's lock file, held for a run's lifetime (by rank 0).

    A second run on the same folder (a resume started while the workers of a killed launcher
    still write checkpoints, or a plain second command) is refused while the first one lives; the
    kernel drops the lock when the holder exits, however it exits.
    """

    def __init__(self, run_dir: Path):
        self.path = RunFolder(run_dir).lock_path
        self._handle = None

    def acquire(self) -> "RunLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # run_dir, or a folder above it, is a file
            raise TrainingError(f"Cannot use run_dir={self.path.parent} as the run folder: {error}. A file is in the "
                                "way: choose a folder path for the run, e.g. run_dir=runs/<name>.") from error
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise TrainingError(f"Another training process (pid {holder}) is using the run folder {self.path.parent}. "
                                "Wait for it to finish or stop it, then run again; or choose another run_dir=... .")
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
