"""The trainable whole (PEFT GPT + learned speaker conditions), its optimizer and its schedule."""

from __future__ import annotations

import math

import torch
from peft.optimizers import create_loraplus_optimizer
from torch import nn

from indextts.errors import TrainingError
from indextts.families import Family
from indextts.training.data import Batch
from indextts.lora import LearnedConditions
from indextts.training.config import CONDITION_PAIRINGS, EMOTION_SOURCES, TrainSettings


class TrainingModel(nn.Module):
    """The PEFT-wrapped GPT plus per-speaker conditions (what DDP wraps).

    IndexTTS 1.x: the prefix is the speaker's (32, D) latents. IndexTTS-2/2.5 (``family.generation`` 2):
    ``conditioning_prefix(speaker rows, emotion vectors)``, the speaker rows being the learned ones or,
    when the batch carries paired conditions (``train.condition_pairing=prompt``), those; 2.5 adds
    the language ids to the text.
    """

    def __init__(self, gpt: nn.Module, speakers: LearnedConditions, family: Family):
        super().__init__()
        self.gpt = gpt
        self.speakers = speakers
        self.family = family
        # conditioning rows before the text of every example (32; IndexTTS-2: 34; 2.5: 3), for token counts
        self.prefix_rows = prefix_rows(family, int(speakers.latents.shape[1]))

    def forward(self, batch: Batch):
        base = self.gpt.get_base_model()
        if self.family.generation == 1:
            conditioning = self.speakers(batch.speaker_ids)  # (B, 32, D)
            return base.forward_train(conditioning, batch.text_ids, batch.text_lengths, batch.codes,
                                      batch.code_lengths)
        paired = batch.conditions.shape[1] > 0
        speaker = batch.conditions if paired else self.speakers(batch.speaker_ids)  # (B, 32 or 1, D)
        prefix = base.conditioning_prefix(speaker, batch.emotions)  # (B, 34 or 3, D)
        languages = batch.languages if self.family.multilingual else None
        return base.forward_train(prefix, batch.text_ids, batch.text_lengths, batch.codes, batch.code_lengths,
                                  languages=languages)


def prefix_rows(family: Family, condition_rows: int) -> int:
    """Rows before the text: the speaker's condition rows, plus IndexTTS-2/2.5's two duration rows."""
    from indextts.v2.gpt.model import DURATION_ROWS

    return condition_rows + (DURATION_ROWS if family.generation == 2 else 0)


def check_family_settings(train: TrainSettings, base) -> None:
    """``train.emotion`` and ``train.condition_pairing`` exist for IndexTTS-2/2.5 only: refused elsewhere
    when set to anything but their defaults (silently ignoring them would mislead)."""
    if base.family.generation == 2:
        return
    defaults = (("train.emotion", train.emotion, EMOTION_SOURCES[0]),
                ("train.condition_pairing", train.condition_pairing, CONDITION_PAIRINGS[0]))
    changed = [f"{key}={value}" for key, value, default in defaults if value != default]
    if changed:
        raise TrainingError(f"{', '.join(changed)} apply to IndexTTS-2/2.5 bases only, and model_dir={base.root} is "
                            f"{base.family}, which has no emotion vectors or extracted prompt conditions. Remove "
                            f"them (the defaults are train.emotion={EMOTION_SOURCES[0]}, train.condition_pairing="
                            f"{CONDITION_PAIRINGS[0]}) or train an IndexTTS-2/2.5 base.")


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_lr_ratio: float):
    """LR multiplier: linear warm-up from 0, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return multiplier


def build_optimizer(peft_model: nn.Module, speakers: LearnedConditions, train: TrainSettings,
                    device: torch.device) -> torch.optim.Optimizer:
    """AdamW with LoRA+ groups, added token rows and speaker conditions in their own groups (fused on CUDA)."""
    opt = train.optimizer
    token_params = [p for n, p in peft_model.named_parameters() if p.requires_grad and "trainable_tokens" in n]
    for param in token_params:
        param.requires_grad_(False)  # grouped below with their own learning rate and no weight decay
    optimizer = create_loraplus_optimizer(
        peft_model, torch.optim.AdamW, lr=opt.lr, loraplus_lr_ratio=opt.loraplus_lr_ratio,
        loraplus_weight_decay=opt.weight_decay, betas=tuple(opt.betas), eps=opt.eps, fused=device.type == "cuda")
    for param in token_params:
        param.requires_grad_(True)
    if token_params:
        optimizer.add_param_group({"params": token_params, "lr": opt.token_embedding_lr, "weight_decay": 0.0})
    if speakers.latents.requires_grad:
        optimizer.add_param_group({"params": [speakers.latents], "lr": train.speaker_conditions.lr,
                                   "weight_decay": 0.0})
    return optimizer


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainSettings,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(round(train.scheduler.warmup_ratio * total_steps))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(warmup, total_steps, train.scheduler.min_lr_ratio))
