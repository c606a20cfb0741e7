"""Merging a training run into a complete checkpoint folder of its base's family (``indextts-export``).

The exported folder is a base folder like the one the run was trained on (IndexTTS 1.0/1.5 or
IndexTTS-2/2.5), with the adapter folded into ``gpt.pth`` (the release format, loadable strictly
by the reference implementation) and the run's speakers beside it, so that it speaks by speaker
name. Nothing is overwritten: the target must be new or empty and outside the base and the run,
and it is written in a staging folder that is moved into place only when complete.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from indextts.atomic_files import staged_dir, write_json_atomic
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.errors import CheckpointError
from indextts.inference.adapters import TrainedRun, load_trained_run
from indextts.run_folder import SPEAKERS_FILE, SPEAKERS_INFO

logger = logging.getLogger(__name__)

EXPORT_INFO = "export.json"
"""Written into an exported folder: which run and which base it was merged from."""
MODEL_FILE_PATTERNS = ("*.pth", "*.pt", "*.safetensors", "*.bin", "*.yaml", "*.model", "*.json")
"""Files that make a folder a checkpoint folder or a run; an export never writes over one."""


def _relation(path: Path, folder: Path) -> str | None:
    """How ``path`` relates to ``folder``: "is", "is inside", "contains", or None (both resolved)."""
    if path == folder:
        return "is"
    if folder in path.parents:
        return "is inside"
    return "contains" if path in folder.parents else None


def check_export_target(out_dir: Path, run_dir: Path, model_dir: Path) -> None:
    """Refuse an export folder that would overwrite the base, the run, or any existing folder's files.

    All paths resolved. Raises CheckpointError before anything is read or written.
    """
    for folder, what in ((model_dir, "the base checkpoint folder"), (run_dir, "the training run folder")):
        relation = _relation(out_dir, folder)
        if relation:
            raise CheckpointError(
                f"The export folder {out_dir} {relation} {what} {folder}; exporting there would overwrite "
                "or delete its files. Name a new folder outside both, e.g. exported/<name>.")
    if out_dir.exists() and not out_dir.is_dir():
        raise CheckpointError(f"The export folder {out_dir} is a file. Name a new folder, e.g. exported/<name>.")
    present = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if present:
        models = sorted({p for pattern in MODEL_FILE_PATTERNS for p in present if Path(p).match(pattern)})
        what = f"model files ({', '.join(models[:5])})" if models else f"files ({', '.join(present[:5])})"
        raise CheckpointError(
            f"The export folder {out_dir} already holds {what}; an export writes a complete new folder and "
            "never replaces existing files. Name a folder that does not exist yet (or is empty), or delete "
            "that one first if you no longer need it.")


def export_merged(run_dir: str | Path, model_dir: str | Path, out_dir: str | Path,
                  allow_base_mismatch: bool = False) -> Path:
    """Write a complete checkpoint folder with the adapter merged into a release-format ``gpt.pth``.

    ``out_dir`` gets gpt.pth (``{"model": state_dict}``, loadable strictly by the reference
    IndexTTS of the base's family), config.yaml (the base config with ``gpt.number_text_tokens``
    updated when tokens were added), the tokenizer (the run's, else the base one), copies of the
    other model files of the base folder (:func:`base_model_files`), speakers.safetensors +
    speakers.json of the run (so the folder speaks by speaker name) and export.json (the run and
    the base identity it was merged from). ``out_dir`` must be new or empty and outside the base
    and the run (:func:`check_export_target`).
    """
    run_dir, model_dir, out_dir = (Path(p).expanduser().resolve() for p in (run_dir, model_dir, out_dir))
    check_export_target(out_dir, run_dir, model_dir)
    base = CheckpointFolder(model_dir)
    run = load_trained_run(run_dir, base.load_gpt(), base=base, allow_base_mismatch=allow_base_mismatch,
                           patch_only=True)
    parameters = dict(run.gpt.named_parameters())
    for key in run.patch.parameter_names:  # the same arithmetic as IndexTTS's voices: equal weights, equal codes
        run.patch.write_into(key, parameters[key].detach().clone(), parameters[key])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(out_dir) as staging:
        _write_export(staging, run, base, run_dir)
    return out_dir


def base_model_files(base: CheckpointFolder) -> list[Path]:
    """The base folder's files and model folders an export copies besides gpt.pth, config and tokenizer.

    IndexTTS 1.0/1.5: the DVAE and BigVGAN. IndexTTS-2/2.5: S2Mel, the w2v-BERT statistics, the
    emotion matrices, 2.5's ``codec.pth``, the glossary and the Qwen emotion model when present, and
    the auxiliary models the base keeps in its ``hf_cache/``. Auxiliary models found in the
    Hugging Face cache instead stay there: the exported folder finds them the same way.
    """
    if base.v2 is None:
        return [base.paths.dvae, base.paths.bigvgan]
    from indextts.v2.folder import AUX_MODELS
    from indextts.v2.text import GLOSSARY_FILE

    paths = base.v2.paths
    release = [paths.s2mel, paths.w2v_stats, paths.emotion_matrix, paths.speaker_matrix, paths.qwen,
               base.root / GLOSSARY_FILE, paths.semantic_codec if base.family.multilingual else None]
    in_folder = {model.description: model.in_folder(base.root) for model in AUX_MODELS.values()}
    for description in sorted(name for name, path in in_folder.items() if not path.exists()):
        logger.info("The %s is not in %s; the exported folder finds it where the base does.", description, base.root)
    return [p for p in release + list(in_folder.values()) if p is not None and p.exists()]


def _copy_into(folder: Path, source: Path, root: Path) -> None:
    """Copy the file or model folder ``source`` (inside ``root``) to the same relative place in ``folder``."""
    target = folder / source.relative_to(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)


def _write_export(folder: Path, run: TrainedRun, base: CheckpointFolder, run_dir: Path) -> None:
    """Write the merged checkpoint folder's files (see :func:`export_merged`) into ``folder``."""
    config = base.cfg.copy()
    config.gpt.number_text_tokens = int(run.gpt.number_text_tokens)
    state_dict = {key: value.detach().float().cpu().contiguous() for key, value in run.gpt.state_dict().items()}
    torch.save({"model": state_dict}, folder / config.gpt_checkpoint)
    OmegaConf.save(config, folder / CONFIG_FILENAME)
    tokenizer = folder / base.paths.bpe.relative_to(base.root)
    tokenizer.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.tokenizer_path or base.paths.bpe, tokenizer)
    for source in base_model_files(base):
        _copy_into(folder, source, base.root)
    shutil.copyfile(run_dir / SPEAKERS_FILE, folder / SPEAKERS_FILE)
    shutil.copyfile(run_dir / SPEAKERS_INFO, folder / SPEAKERS_INFO)
    write_json_atomic(folder / EXPORT_INFO, {"run": str(run_dir), "base": str(base.root),
                                             "base_identity": base.identity()}, sync=False)
