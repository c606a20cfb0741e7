"""LoRA on the IndexTTS GPT: wrapping with PEFT, per-speaker conditions, saving, loading, merging.

Training adds PEFT LoRA adapters to the GPT-2 blocks (``gpt.h.*.attn.c_attn`` ... , GPT-2's
``Conv1D`` layers, hence ``fan_in_fan_out``) and, when special tokens were added to the tokenizer,
PEFT "trainable tokens" for the new rows of ``text_embedding``. The frozen ``text_head`` is only
used by the auxiliary text loss, never by inference, so it is resized but not trained. Each
speaker gets learnable conditioning latents (32, D) that replace the conditioning encoder at
inference.

A run folder (see ``load_trained_run``) holds the adapter in PEFT's own format, so the standard
``peft.PeftModel.from_pretrained(base_gpt, run_dir / "adapter")`` loads it too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from omegaconf import OmegaConf
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from indextts.atomic_files import write_json_atomic
from indextts.errors import CheckpointError

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
SPEAKERS_FILE = "speakers.safetensors"
SPEAKERS_INFO = "speakers.json"
RUN_CONFIG = "config.yaml"
TOKENIZER_FILE = Path("tokenizer") / "bpe.model"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
DEFAULT_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
TEXT_EMBEDDING = "text_embedding"


def lora_target_pattern(targets: Sequence[str]) -> str:
    """A PEFT ``target_modules`` regex matching ``targets`` (e.g. "attn.c_attn") in every GPT-2 block only."""
    if not targets:
        raise ValueError("at least one LoRA target module is needed")
    alternatives = "|".join(re.escape(target) for target in targets)
    return rf"gpt\.h\.\d+\.(?:{alternatives})"


def make_lora_config(r: int, alpha: float, dropout: float, targets: Sequence[str] = DEFAULT_TARGETS,
                     new_token_ids: Sequence[int] = ()) -> LoraConfig:
    """LoRA on the GPT-2 blocks (+ trainable rows of ``text_embedding`` for ``new_token_ids``)."""
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_target_pattern(targets),
        fan_in_fan_out=True, bias="none",
        trainable_token_indices={TEXT_EMBEDDING: sorted(int(i) for i in new_token_ids)} if new_token_ids else None,
    )


def add_lora(gpt: nn.Module, config: LoraConfig) -> PeftModel:
    """Wrap ``gpt`` (a UnifiedVoice) with PEFT; only the adapter (and new token rows) stay trainable."""
    return get_peft_model(gpt, config)


class LearnedConditions(nn.Module):
    """Learnable conditioning latents, one (32, D) block per speaker: speaker_ids (B,) -> (B, 32, D)."""

    def __init__(self, names: Sequence[str], initial: torch.Tensor, trainable: bool = True):
        super().__init__()
        if initial.dim() != 3 or initial.shape[0] != len(names):
            raise ValueError(f"initial conditions must be (S, 32, D) for {len(names)} speakers, got {tuple(initial.shape)}")
        self.names = list(names)
        self.latents = nn.Parameter(initial.detach().clone().float(), requires_grad=trainable)

    def forward(self, speaker_ids: torch.Tensor) -> torch.Tensor:
        """speaker_ids (B,) -> (B, 32, D) float32, exact copies of the rows.

        A one-hot matmul instead of ``index_select``: its backward is a plain matmul, deterministic
        on CUDA (``index_select``'s backward adds with atomics). Autocast is off, so the rows stay
        exact float32 copies whatever the training precision.
        """
        count, latents, dim = self.latents.shape
        with torch.autocast(device_type=speaker_ids.device.type, enabled=False):
            one_hot = torch.nn.functional.one_hot(speaker_ids, count).to(self.latents.dtype)  # (B, S)
            return (one_hot @ self.latents.reshape(count, latents * dim)).reshape(-1, latents, dim)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Name -> condition (32, D), detached float32 CPU copies."""
        return {name: self.latents[i].detach().float().cpu().clone() for i, name in enumerate(self.names)}


@dataclass
class TrainedSpeaker:
    """What inference needs to speak as a trained speaker."""

    condition: torch.Tensor  # (32, D) GPT conditioning latents
    reference_mel: torch.Tensor  # (100, F) log-mel of the speaker's medoid utterance (BigVGAN speaker embedding)


@dataclass
class TrainedRun:
    """A loaded training run: the GPT with the adapter applied, the speakers, and the tokenizer to use."""

    gpt: nn.Module
    speakers: dict[str, TrainedSpeaker]
    tokenizer_path: Path | None  # the run's bpe.model when special tokens were added, else None (use the base one)


def save_speakers(folder: Path, speakers: dict[str, TrainedSpeaker], info: dict) -> None:
    """Write ``speakers.safetensors`` ("<name>.condition", "<name>.reference_mel") and ``speakers.json``."""
    tensors = {}
    for name, speaker in speakers.items():
        tensors[f"{name}.condition"] = speaker.condition.detach().float().cpu().contiguous()
        tensors[f"{name}.reference_mel"] = speaker.reference_mel.detach().float().cpu().contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / SPEAKERS_FILE), metadata={"format": "indextts-speakers"})
    write_json_atomic(folder / SPEAKERS_INFO, info, sync=False)


def load_speakers(path: Path) -> dict[str, TrainedSpeaker]:
    """Read a ``speakers.safetensors`` file into name -> TrainedSpeaker."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist. A finished training run writes it; check the run "
                              "folder, or export again with tools/export_merged.py.")
    tensors = load_file(str(path))
    names = sorted({key.rsplit(".", 1)[0] for key in tensors})
    broken = [n for n in names if f"{n}.condition" not in tensors or f"{n}.reference_mel" not in tensors]
    if broken or not names:
        raise CheckpointError(f"{path} must hold '<name>.condition' and '<name>.reference_mel' for every "
                              f"speaker; incomplete: {broken or 'no speakers at all'}. Re-run or re-export the training run.")
    return {n: TrainedSpeaker(tensors[f"{n}.condition"], tensors[f"{n}.reference_mel"]) for n in names}


def base_fingerprint(gpt: nn.Module, rows: int) -> str:
    """A short hash of frozen base weights (mel head, first ``rows`` text embeddings), to spot a different base."""
    digest = hashlib.sha256()
    for tensor in (gpt.mel_head.weight, gpt.text_embedding.weight[:rows]):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def describe_base(gpt: nn.Module) -> dict:
    """The base-model facts an adapter depends on; stored in the run config under ``model``."""
    return {
        "model_dim": int(gpt.model_dim),
        "layers": len(gpt.gpt.h),
        "text_vocab_size": int(gpt.text_vocab_size),
        "mel_vocab_size": int(gpt.mel_head.out_features),
    }


def _require_files(run_dir: Path) -> None:
    needed = [run_dir / ADAPTER_DIR / ADAPTER_CONFIG, run_dir / ADAPTER_DIR / ADAPTER_WEIGHTS,
              run_dir / SPEAKERS_FILE, run_dir / RUN_CONFIG]
    missing = [str(p.relative_to(run_dir)) for p in needed if not p.is_file()]
    if missing:
        raise CheckpointError(f"The training run folder {run_dir} lacks {missing}. Point to a folder written by "
                              "train.py (runs/<name>) that has finished at least one validation or the final save.")


def _check_base(run_dir: Path, run_model: dict, gpt: nn.Module) -> None:
    base = describe_base(gpt)
    base_rows = int(run_model["base_text_vocab_size"])
    problems = [f"{key} {run_model[key]} in the run but {base[key]} in the base"
                for key in ("model_dim", "layers", "mel_vocab_size") if int(run_model[key]) != base[key]]
    if base["text_vocab_size"] not in (base_rows, int(run_model["text_vocab_size"])):
        problems.append(f"text vocabulary {base['text_vocab_size']} rows in the base but {base_rows} in the "
                        "run's base")
    if problems:
        raise CheckpointError(
            f"The adapter in {run_dir} was trained on a different base GPT: {'; '.join(problems)}. Load it with "
            f"the checkpoint folder it was trained from (model_dir in {run_dir / RUN_CONFIG}).")
    if "base_fingerprint" in run_model and base_fingerprint(gpt, base_rows) != run_model["base_fingerprint"]:
        logger.warning("The base GPT's weights differ from the ones %s was trained on (same shapes, other "
                       "values, or another precision); the adapter may sound wrong.", run_dir)


def load_trained_run(run_dir: str | Path, base_gpt: nn.Module, merge: bool = True) -> TrainedRun:
    """Apply a training run to ``base_gpt`` (a UnifiedVoice loaded strictly from the base checkpoint).

    Run folder layout (written by train.py): ``adapter/`` (PEFT: adapter_config.json +
    adapter_model.safetensors), ``speakers.safetensors`` + ``speakers.json``, ``config.yaml``
    (resolved training config; its ``model`` section describes the base), ``tokenizer/bpe.model``
    when special tokens were added. The text vocabulary of ``base_gpt`` is grown in place when the
    run added tokens. With ``merge`` the adapter is folded into the weights and the plain
    UnifiedVoice is returned; otherwise the UnifiedVoice keeps PEFT's adapter layers (same outputs,
    slower). Raises CheckpointError when files are missing or the adapter does not fit the base.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    _require_files(run_dir)
    run_config = OmegaConf.load(run_dir / RUN_CONFIG)
    if "model" not in run_config:
        raise CheckpointError(f"{run_dir / RUN_CONFIG} has no 'model' section; it was not written by this "
                              "train.py. Re-train or point to another run folder.")
    run_model = OmegaConf.to_container(run_config.model)
    _check_base(run_dir, run_model, base_gpt)
    if base_gpt.text_vocab_size < int(run_model["text_vocab_size"]):
        base_gpt.resize_text_vocab(int(run_model["text_vocab_size"]))
    adapter_dir = run_dir / ADAPTER_DIR
    try:
        model = PeftModel.from_pretrained(base_gpt, str(adapter_dir), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"The adapter in {adapter_dir} does not fit the base GPT: {error}. Load it with the "
                              "checkpoint folder it was trained from.") from error
    _check_adapter_keys(model, adapter_dir)
    model.eval()
    gpt = model.merge_and_unload() if merge else model.get_base_model()
    tokenizer = run_dir / TOKENIZER_FILE
    return TrainedRun(gpt=gpt, speakers=load_speakers(run_dir / SPEAKERS_FILE),
                      tokenizer_path=tokenizer if tokenizer.is_file() else None)


def _check_adapter_keys(model: PeftModel, adapter_dir: Path) -> None:
    """Exactly the adapter's tensors must have been loaded: none missing, none left over."""
    with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as handle:
        stored = set(handle.keys())
    expected = set(get_peft_model_state_dict(model).keys())
    if stored != expected:
        missing, extra = sorted(expected - stored)[:5], sorted(stored - expected)[:5]
        raise CheckpointError(f"The adapter in {adapter_dir} does not match its config or the base GPT: missing "
                              f"tensors {missing}, unexpected tensors {extra}. Re-export it from the run's checkpoints.")


def export_merged(run_dir: str | Path, model_dir: str | Path, out_dir: str | Path) -> Path:
    """Write a complete checkpoint folder with the adapter merged into an official-format ``gpt.pth``.

    ``out_dir`` gets gpt.pth (``{"model": state_dict}``, loadable strictly by the reference
    IndexTTS), config.yaml (the base config with ``gpt.number_text_tokens`` updated when tokens were
    added), bpe.model (the run's tokenizer, else the base one), copies of the DVAE and BigVGAN
    files, and speakers.safetensors + speakers.json of the run.
    """
    from indextts.checkpoints import load_gpt
    from indextts.config import checkpoint_paths, load_config

    run_dir, model_dir, out_dir = (Path(p).expanduser().resolve() for p in (run_dir, model_dir, out_dir))
    base_config = load_config(model_dir)
    paths = checkpoint_paths(model_dir, base_config)
    run = load_trained_run(run_dir, load_gpt(model_dir, base_config), merge=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = base_config.copy()
    config.gpt.number_text_tokens = int(run.gpt.number_text_tokens)
    state_dict = {key: value.detach().float().cpu().contiguous() for key, value in run.gpt.state_dict().items()}
    torch.save({"model": state_dict}, out_dir / config.gpt_checkpoint)
    OmegaConf.save(config, out_dir / "config.yaml")
    shutil.copyfile(run.tokenizer_path or paths.bpe, out_dir / config.dataset.bpe_model)
    for source, name in ((paths.dvae, config.dvae_checkpoint), (paths.bigvgan, config.bigvgan_checkpoint)):
        shutil.copyfile(source, out_dir / name)
    shutil.copyfile(run_dir / SPEAKERS_FILE, out_dir / SPEAKERS_FILE)
    shutil.copyfile(run_dir / SPEAKERS_INFO, out_dir / SPEAKERS_INFO)
    return out_dir
