"""RunFolder: the one owner of a training run's folder layout.

A run folder (``runs/<name>``, written by ``indextts-train``) holds::

    config.yaml                       resolved training config, ``model_dir`` (the base folder) and
                                      ``model`` (facts about the base GPT)
    adapter/                          the final LoRA adapter, PEFT format (adapter_model.safetensors,
                                      adapter_config.json); the best by validation, or a promoted one
    speakers.safetensors, speakers.json   the trained speaker conditions and their description
    tokenizer/bpe.model               only when special tokens were added
    metrics.jsonl, train.log, tensorboard/, .lock
    checkpoints/step_XXXXXXXX/        step snapshots: the files above plus the resume state
    eval/                             indextts-eval's scores and reports

Every module that reads or writes a run goes through this class: the paths, the run's config (one
error for a folder that is not a run), its base folder, its checkpoints, the crash-safe installs of
the final files (best, promoted) and of a step snapshot (one staging helper whose temporary names
``remove_temp`` knows), the fingerprint of an adapter and the metrics file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from indextts.atomic_files import (
    REPLACED_SUFFIX,
    STAGING_SUFFIX,
    replace_dir_atomic,
    restore_replaced_dir,
    staged_dir,
)
from indextts.errors import IndexTTSError
from indextts.fingerprints import hash_json, tensors_fingerprint

RUN_CONFIG = "config.yaml"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
SPEAKERS_FILE = "speakers.safetensors"
SPEAKERS_INFO = "speakers.json"
TOKENIZER_FILE = Path("tokenizer") / "bpe.model"
"""The run's own tokenizer, written when special tokens were added."""
METRICS_FILE = "metrics.jsonl"
TRAIN_LOG = "train.log"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"
CHECKPOINTS_DIR = "checkpoints"
EVAL_DIR = "eval"
FINAL = "final"
"""The name of the run's top-level (final) adapter among its checkpoints."""
STEP_PREFIX = "step_"
CHECKPOINT_PATTERN = re.compile(rf"^{STEP_PREFIX}(\d{{8}})$")
FINAL_FILES = (SPEAKERS_FILE, SPEAKERS_INFO)
"""The final files besides the adapter folder."""


class RunFolderError(IndexTTSError):
    """A folder given as a training run is not one, or lacks what the caller needs."""


def checkpoint_name(step: int) -> str:
    """``step_XXXXXXXX``: the folder name of the snapshot at ``step``."""
    return f"{STEP_PREFIX}{step:08d}"


def step_of(folder: Path) -> int | None:
    """The step of a ``step_XXXXXXXX`` folder; None for any other name."""
    match = CHECKPOINT_PATTERN.match(Path(folder).name)
    return int(match.group(1)) if match else None


class RunFolder:
    """A training run folder (``root``), or the run of one of its step snapshots (see ``locate``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    @classmethod
    def locate(cls, folder: str | Path) -> tuple[RunFolder, str]:
        """The run of ``folder`` and the name of the snapshot it is: ``(run, "final")`` for a run folder,
        ``(run, "step_XXXXXXXX")`` for one of its ``checkpoints/step_XXXXXXXX`` folders."""
        folder = Path(folder).expanduser()
        if step_of(folder) is not None and folder.parent.name == CHECKPOINTS_DIR:
            return cls(folder.parent.parent), folder.name
        return cls(folder), FINAL

    # ----------------------------------------------------------------- names and paths
    @property
    def name(self) -> str:
        """The run's name: its folder's name (the voice prefix, the server's default voice name)."""
        return self.root.resolve().name

    def label(self, snapshot: str = FINAL) -> str:
        """``<run>`` for the final adapter, ``<run>@step_XXXXXXXX`` for a snapshot."""
        return self.name if snapshot == FINAL else f"{self.name}@{snapshot}"

    @property
    def config_path(self) -> Path:
        return self.root / RUN_CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def log_path(self) -> Path:
        return self.root / TRAIN_LOG

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / TENSORBOARD_DIR

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / checkpoint_name(step)

    def snapshot_dir(self, name: str) -> Path:
        """The folder of snapshot ``name`` ("final" or ``step_XXXXXXXX``)."""
        return self.root if name == FINAL else self.checkpoints_dir / name

    # ----------------------------------------------------------------- config and base
    def is_run(self) -> bool:
        return self.config_path.is_file()

    def config(self) -> DictConfig:
        """The run's config.yaml; RunFolderError when the folder is not a training run."""
        if not self.is_run():
            raise RunFolderError(
                f"{self.root} is not a training run folder: it has no {RUN_CONFIG}. Give the run_dir that "
                "indextts-train wrote (runs/<name>), or one of its checkpoints/step_XXXXXXXX folders.")
        try:
            return OmegaConf.load(self.config_path)
        except Exception as error:  # noqa: BLE001 - any YAML error: the file is not what training wrote
            raise RunFolderError(f"Cannot read {self.config_path} ({error}). Restore it from the run's newest "
                                 f"{CHECKPOINTS_DIR}/ snapshot, which holds a copy.") from error

    def model_dir(self, override: str | Path | None = None) -> Path:
        """The base folder the run was trained from: ``override``, else ``model_dir`` of its config
        (relative to the working folder), resolved."""
        if override is not None:
            return Path(override).expanduser().resolve()
        value = self.config().get("model_dir")
        if not value:
            raise RunFolderError(f"{self.config_path} names no model_dir. Pass the base folder explicitly "
                                 "(--model_dir, or IndexTTS.from_pretrained(model_dir, adapter=run)).")
        return Path(str(value)).expanduser().resolve()

    # ----------------------------------------------------------------- snapshots
    def checkpoints(self) -> list[Path]:
        """The complete ``step_XXXXXXXX`` snapshots, oldest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        return sorted(p for p in self.checkpoints_dir.iterdir() if p.is_dir() and step_of(p) is not None)

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    @staticmethod
    def has_final_files(folder: Path) -> bool:
        """Whether ``folder`` (the run or a snapshot) holds a loadable adapter, speakers and config."""
        needed = (Path(ADAPTER_DIR) / ADAPTER_WEIGHTS, SPEAKERS_FILE, SPEAKERS_INFO, RUN_CONFIG)
        return all((folder / name).is_file() for name in needed)

    @staticmethod
    def adapter_fingerprint(folder: Path) -> str:
        """Hash of a snapshot's adapter and speaker tensors (not the file bytes: safetensors writes its
        header metadata in no fixed order): equal fingerprints mean the same model."""
        from safetensors.torch import load_file

        paths = (folder / ADAPTER_DIR / ADAPTER_WEIGHTS, folder / SPEAKERS_FILE)
        return hash_json(*(tensors_fingerprint(load_file(str(path))) for path in paths))

    def final_step(self) -> int:
        """The step the final adapter was saved at (-1 when unknown)."""
        return int(json.loads((self.root / SPEAKERS_INFO).read_text(encoding="utf-8")).get("step", -1))

    # ----------------------------------------------------------------- crash-safe writes
    def write_snapshot(self, step: int, write: Callable[[Path], None]) -> Path:
        """Write ``checkpoints/step_<step>`` through ``write(folder)``, staged and then moved in whole."""
        target = self.checkpoint_dir(step)
        target.parent.mkdir(parents=True, exist_ok=True)
        with staged_dir(target) as staging:
            write(staging)
        return target

    def install_final(self, write: Callable[[Path], None]) -> None:
        """Make the files ``write(folder)`` puts in a staging folder (adapter/, speakers.*) the run's
        final ones: each speakers file by ``os.replace``, the adapter folder by a crash-safe swap."""
        staging = self.root / f".final{STAGING_SUFFIX}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            write(staging)
            for name in FINAL_FILES:
                os.replace(staging / name, self.root / name)
            replace_dir_atomic(staging / ADAPTER_DIR, self.root / ADAPTER_DIR)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def promote(self, snapshot: Path) -> bool:
        """Copy a snapshot's adapter and speakers over the final ones; False when ``snapshot`` is the run."""
        if snapshot.resolve() == self.root.resolve():
            return False

        def copy(staging: Path) -> None:
            shutil.copytree(snapshot / ADAPTER_DIR, staging / ADAPTER_DIR)
            for name in FINAL_FILES:
                shutil.copyfile(snapshot / name, staging / name)

        self.install_final(copy)
        return True

    def remove_temp(self) -> None:
        """Delete the staging folders a killed process left, and finish the folder swaps it interrupted."""
        for folder in (self.root, self.checkpoints_dir):
            for stale in folder.glob(f".*{STAGING_SUFFIX}") if folder.is_dir() else []:
                shutil.rmtree(stale, ignore_errors=True)
            for old in folder.glob(f".*{REPLACED_SUFFIX}") if folder.is_dir() else []:
                restore_replaced_dir(folder / old.name[1:-len(REPLACED_SUFFIX)])

    # ----------------------------------------------------------------- metrics
    def read_metrics(self) -> list[dict]:
        """The records of metrics.jsonl (none when it does not exist yet); a torn last line is skipped."""
        if not self.metrics_path.is_file():
            return []
        records = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records
