"""What an evaluation reads from a training run: its checkpoints, its eval set, its speaker references.

A run folder (``indextts.run_folder``) holds its config (with ``model_dir`` and
``speaker_info``), the final adapter at the top level (the best by validation mel loss) and step
snapshots, each a loadable run of its own. The eval set is every speaker's validation rows whose real recording exists, plus optional extra
texts spoken by every speaker.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.errors import EvaluationError, IndexTTSError
from indextts.evaluation.metrics import language_of
from indextts.run_folder import FINAL, SPEAKERS_INFO, RunFolder, checkpoint_name, step_of

logger = logging.getLogger(__name__)

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


def find_checkpoints(run: RunFolder, names: Sequence[str] | None = None) -> list[Checkpoint]:
    """The run's step snapshots (by step) then the final adapter, or only those ``names`` choose.

    A name is "final", a snapshot folder name ("step_00000200") or a step number ("200").
    """
    found: dict[str, tuple[int, Path]] = {
        path.name: (step_of(path), path) for path in run.checkpoints() if RunFolder.has_final_files(path)}
    if RunFolder.has_final_files(run.root):
        found[FINAL] = (run.final_step(), run.root)
    if not found:
        raise EvaluationError(f"{run.root} holds no checkpoint to evaluate: no complete snapshot in "
                              f"{run.checkpoints_dir} and no final adapter. Train first (indextts-train saves "
                              "them), or check the path.")
    chosen = list(found) if names is None else [_checkpoint_name(name, found, run.root) for name in names]
    return [Checkpoint(name, found[name][0], found[name][1], RunFolder.adapter_fingerprint(found[name][1]))
            for name in dict.fromkeys(chosen)]


def _checkpoint_name(name: str, found: dict[str, tuple[int, Path]], run_dir: Path) -> str:
    candidate = checkpoint_name(int(name)) if name.isdigit() else name
    if candidate not in found:
        raise EvaluationError(f"Checkpoint '{name}' is not in {run_dir}. Choose from: {', '.join(found)} "
                              f"(a step number, a snapshot folder name such as {checkpoint_name(200)}, or "
                              f"'{FINAL}').")
    return candidate


def resolve_model_dir(run: RunFolder, override: str | Path | None = None) -> Path:
    """The base folder: ``override`` or the run config's model_dir (relative to the working folder)."""
    model_dir = run.model_dir(override)
    if not CheckpointFolder.holds_config(model_dir):
        raise EvaluationError(f"The base checkpoint folder {model_dir} (model_dir of {run.config_path}) has no "
                              "config. Pass --model_dir with the folder the run was trained from.")
    return model_dir


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
    from indextts.contracts.manifests import read_manifest
    from indextts.contracts.speaker_info import read_speaker_info

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
