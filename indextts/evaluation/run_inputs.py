"""What an evaluation reads from a training run: its checkpoints, its eval set, its speaker references.

A run folder (written by train.py, see ``indextts.training``) holds ``config.yaml`` (with
``model_dir`` and ``speaker_info``), the final adapter at the top level (the best by validation
mel loss) and step checkpoints ``checkpoints/step_XXXXXXXX/``, each a loadable run of its own. The
eval set is every speaker's validation rows whose real recording exists, plus optional extra
texts spoken by every speaker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file

from indextts.checkpoint_folder import tensors_fingerprint
from indextts.errors import EvaluationError, IndexTTSError
from indextts.evaluation.metrics import language_of
from indextts.lora import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    RUN_CONFIG,
    SPEAKERS_FILE,
    SPEAKERS_INFO,
)
from indextts.training.checkpointing import CHECKPOINT_PATTERN, CHECKPOINTS_DIR

logger = logging.getLogger(__name__)

FINAL = "final"
"""The name of the run's top-level (final) adapter among the checkpoints."""


@dataclass(frozen=True)
class EvalItem:
    """One sentence one speaker says: from a validation row (``audio`` is its real recording) or a text list."""

    speaker: str
    uid: str
    text: str
    audio: Path | None
    seed: int

    @property
    def key(self) -> str:
        return f"{self.speaker}/{self.uid}"

    @property
    def language(self) -> str:
        return language_of(self.text)


@dataclass(frozen=True)
class Checkpoint:
    """A loadable adapter of the run: ``name`` is "step_XXXXXXXX" or "final"."""

    name: str
    step: int
    folder: Path
    fingerprint: str


def load_run_config(run_dir: Path) -> DictConfig:
    """The run's config.yaml; EvaluationError when ``run_dir`` is not a training run folder."""
    path = run_dir / RUN_CONFIG
    if not path.is_file():
        raise EvaluationError(f"{run_dir} is not a training run folder: it has no {RUN_CONFIG}. Pass --run "
                              "runs/<name>, the run_dir that indextts-train wrote.")
    return OmegaConf.load(path)


def _fingerprint(folder: Path) -> str:
    """Short hash of the adapter weights and speakers: equal hashes mean the same model.

    Hashes the tensors, not the file bytes: safetensors writes header metadata in no fixed order.
    """
    digest = hashlib.sha256()
    for path in (folder / ADAPTER_DIR / ADAPTER_WEIGHTS, folder / SPEAKERS_FILE):
        digest.update(tensors_fingerprint(load_file(str(path))).encode())
    return digest.hexdigest()[:16]


def _is_complete(folder: Path) -> bool:
    needed = (ADAPTER_DIR + "/" + ADAPTER_WEIGHTS, SPEAKERS_FILE, SPEAKERS_INFO, RUN_CONFIG)
    return all((folder / name).is_file() for name in needed)


def _final_step(run_dir: Path) -> int:
    return int(json.loads((run_dir / SPEAKERS_INFO).read_text(encoding="utf-8")).get("step", -1))


def find_checkpoints(run_dir: Path, names: Sequence[str] | None = None) -> list[Checkpoint]:
    """The run's step checkpoints (by step) then the final adapter, or only those ``names`` choose.

    A name is "final", a folder name "step_00000200" or a step number "200".
    """
    found: dict[str, tuple[int, Path]] = {}
    folder = run_dir / CHECKPOINTS_DIR
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and path.is_dir() and _is_complete(path):
            found[path.name] = (int(match.group(1)), path)
    if _is_complete(run_dir):
        found[FINAL] = (_final_step(run_dir), run_dir)
    if not found:
        raise EvaluationError(f"{run_dir} holds no checkpoint to evaluate: no complete {CHECKPOINTS_DIR}/step_* "
                              "folder and no final adapter. Train first (indextts-train saves them), or check the path.")
    chosen = list(found) if names is None else [_checkpoint_name(name, found, run_dir) for name in names]
    return [Checkpoint(name, found[name][0], found[name][1], _fingerprint(found[name][1]))
            for name in dict.fromkeys(chosen)]


def _checkpoint_name(name: str, found: dict[str, tuple[int, Path]], run_dir: Path) -> str:
    candidate = f"step_{int(name):08d}" if name.isdigit() else name
    if candidate not in found:
        raise EvaluationError(f"Checkpoint '{name}' is not in {run_dir}. Choose from: {', '.join(found)} "
                              "(a step number, a step_XXXXXXXX folder name or 'final').")
    return candidate


def resolve_model_dir(run_dir: Path, cfg: DictConfig, override: str | Path | None = None) -> Path:
    """The base checkpoint folder: ``override`` or the run config's model_dir (relative to the working folder)."""
    model_dir = Path(override if override is not None else cfg.get("model_dir", "checkpoints")).expanduser()
    if not (model_dir / "config.yaml").is_file():
        raise EvaluationError(f"The base checkpoint folder {model_dir.resolve()} (model_dir of {run_dir / RUN_CONFIG}) "
                              "has no config.yaml. Pass --model_dir with the folder the run was trained from.")
    return model_dir.resolve()


def speaker_references(run_dir: Path, checkpoint: Checkpoint) -> dict[str, Path]:
    """Speaker -> the real recording every SIM is measured against (the medoid utterance of training)."""
    info = json.loads((checkpoint.folder / SPEAKERS_INFO).read_text(encoding="utf-8"))
    references = {entry["name"]: Path(entry["medoid_audio"]) for entry in info.get("speakers", [])}
    missing = [f"{name}: {path}" for name, path in references.items() if not path.is_file()]
    if missing or not references:
        raise EvaluationError(f"The speaker reference recordings named in {checkpoint.folder / SPEAKERS_INFO} are "
                              f"missing ({'; '.join(missing) or 'no speakers listed'}). SIM compares against them; "
                              "restore the extracted data at those paths or run where it lives.")
    return references


def _item_seed(seed: int, key: str) -> int:
    """A seed per utterance that stays the same whatever else is in the eval set."""
    return seed + zlib.crc32(key.encode("utf-8")) % 1_000_000


def validation_items(cfg: DictConfig, speakers: Sequence[str], seed: int,
                     max_per_speaker: int | None = None) -> list[EvalItem]:
    """The run's validation rows with text and an existing recording, for the run's ``speakers``."""
    from indextts.data import read_manifest
    from indextts.extraction import read_speaker_info

    try:
        infos = read_speaker_info(cfg.speaker_info)
    except IndexTTSError as error:
        raise EvaluationError(f"Cannot read the run's validation data: {error}") from error
    items = []
    for info in infos:
        if info.speaker not in speakers or not info.valid_jsonl or not info.valid_jsonl.is_file():
            continue
        rows = [row for row in read_manifest(info.valid_jsonl) if row.audio is not None and row.text.strip()]
        present = [row for row in rows if row.audio.is_file()]
        if len(present) < len(rows):
            logger.warning("%d validation recording(s) of '%s' are missing; they are left out.",
                           len(rows) - len(present), info.speaker)
        for row in present[:max_per_speaker]:
            key = f"{info.speaker}/{row.uid}"
            items.append(EvalItem(info.speaker, row.uid, row.text, row.audio, _item_seed(seed, key)))
    return items


def text_items(path: Path, speakers: Sequence[str], seed: int) -> list[EvalItem]:
    """Every non-blank line of the UTF-8 file ``path``, said by every speaker (uid "text_<line>")."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"Cannot read the text list {path}: {error}. Give a UTF-8 file, one sentence a line.") from error
    return [EvalItem(speaker, f"text_{number:04d}", line.strip(), None, _item_seed(seed, f"{speaker}/text_{number:04d}"))
            for speaker in speakers for number, line in enumerate(lines, start=1) if line.strip()]
