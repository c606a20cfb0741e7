"""LoRA on the IndexTTS GPT: wrapping with PEFT, per-speaker conditions, saving (loading: indextts.inference.adapters).

Training adds PEFT LoRA adapters to the GPT-2 blocks (``gpt.h.*.attn.c_attn`` ... , GPT-2's
``Conv1D`` layers, hence ``fan_in_fan_out``) and, when special tokens were added to the tokenizer,
PEFT "trainable tokens" for the new rows of ``text_embedding``. The frozen ``text_head`` is only
used by the auxiliary text loss, never by inference, so it is resized but not trained. Each
speaker gets learnable conditioning latents (32, D) that replace the conditioning encoder at
inference.

A run folder (``indextts.run_folder``) holds the adapter in PEFT's own format, so the standard
``peft.PeftModel.from_pretrained(base_gpt, run_dir / "adapter")`` loads it too. Loading a run onto a
base GPT, merged or as a weight patch, and exporting a merged ``gpt.pth``: ``indextts.inference.adapters``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from torch import nn

from indextts.atomic_files import write_json_atomic
from indextts.run_folder import SPEAKERS_FILE, SPEAKERS_INFO

logger = logging.getLogger(__name__)

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
    """Learnable conditioning latents, one (C, D) block per speaker: speaker_ids (B,) -> (B, C, D).

    C is 32 for IndexTTS 1.x and IndexTTS-2 (perceiver latents), 1 for IndexTTS-2.5 (the CAMPPlus row).
    """

    def __init__(self, names: Sequence[str], initial: torch.Tensor, trainable: bool = True):
        super().__init__()
        if initial.dim() != 3 or initial.shape[0] != len(names):
            raise ValueError(f"initial conditions must be (S, C, D) for {len(names)} speakers, got {tuple(initial.shape)}")
        self.names = list(names)
        self.latents = nn.Parameter(initial.detach().clone().float(), requires_grad=trainable)

    def forward(self, speaker_ids: torch.Tensor) -> torch.Tensor:
        """speaker_ids (B,) -> (B, C, D) float32, exact copies of the rows.

        A one-hot matmul instead of ``index_select``: its backward is a plain matmul, deterministic
        on CUDA (``index_select``'s backward adds with atomics). Autocast is off, so the rows stay
        exact float32 copies whatever the training precision.
        """
        count, latents, dim = self.latents.shape
        with torch.autocast(device_type=speaker_ids.device.type, enabled=False):
            one_hot = torch.nn.functional.one_hot(speaker_ids, count).to(self.latents.dtype)  # (B, S)
            return (one_hot @ self.latents.reshape(count, latents * dim)).reshape(-1, latents, dim)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Name -> condition (C, D), detached float32 CPU copies."""
        return {name: self.latents[i].detach().float().cpu().clone() for i, name in enumerate(self.names)}


@dataclass
class TrainedSpeaker:
    """What inference needs to speak as a trained speaker."""

    condition: torch.Tensor  # (32, D) GPT conditioning latents (IndexTTS-2.5: the (1, D) CAMPPlus row)
    reference_mel: torch.Tensor  # (100, F) log-mel of the medoid utterance (1.x: BigVGAN's speaker embedding;
    # IndexTTS-2/2.5: the (80, F) S2Mel prompt mel, ``prompt.mel``)
    emotion: torch.Tensor | None = None  # IndexTTS-2/2.5: (D,) emotion vector of the medoid utterance
    prompt_semantic: torch.Tensor | None = None  # IndexTTS-2/2.5: (Tp, C) S2Mel prompt content features
    style: torch.Tensor | None = None  # IndexTTS-2/2.5: (192,) CAMPPlus style of the medoid utterance

    V2_KEYS = ("emotion", "prompt_semantic", "style")

    @property
    def is_v2(self) -> bool:
        """Whether this speaker was trained on an IndexTTS-2 / 2.5 base (it carries an emotion and a prompt)."""
        return self.emotion is not None


def save_speakers(folder: Path, speakers: dict[str, TrainedSpeaker], info: dict) -> None:
    """Write ``speakers.safetensors`` ("<name>.condition", "<name>.reference_mel" and, for IndexTTS-2/2.5,
    "<name>.emotion", "<name>.prompt_semantic", "<name>.style") and ``speakers.json``."""
    tensors = {}
    for name, speaker in speakers.items():
        for key in ("condition", "reference_mel", *TrainedSpeaker.V2_KEYS):
            value = getattr(speaker, key)
            if value is not None:
                tensors[f"{name}.{key}"] = value.detach().float().cpu().contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / SPEAKERS_FILE), metadata={"format": "indextts-speakers"})
    write_json_atomic(folder / SPEAKERS_INFO, info, sync=False)


def describe_base(gpt: nn.Module) -> dict:
    """The base-model facts an adapter depends on; stored in the run config under ``model``."""
    return {
        "model_dim": int(gpt.model_dim),
        "layers": len(gpt.gpt.h),
        "text_vocab_size": int(gpt.text_vocab_size),
        "mel_vocab_size": int(gpt.mel_head.out_features),
    }
