"""Bookkeeping between log lines and across a resume: the loss window and config changes.

``LossWindow`` sums the micro-batch losses and the gradient norms on the device, so a training
step never waits for the host; ``summary`` reads them once per ``train.log_every_steps`` (and,
with ``train.log_every_seconds``, once the window is that old). Its state travels in checkpoints,
so a resumed run logs the same numbers as an uninterrupted one (by steps; time is not replayed).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf

logger = logging.getLogger(__name__)

Reduce = Callable[[torch.Tensor], torch.Tensor]


class LossWindow:
    """Device-side sums of (loss, text loss, mel loss, grad norm) since the last log line.

    ``max_seconds`` > 0: the window is ``overdue`` once it has been open that long.
    """

    def __init__(self, device: torch.device, max_seconds: float = 0.0):
        self.device = device
        self.max_seconds = max_seconds
        self.reset()

    def reset(self) -> None:
        self.sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        self.steps = 0
        self.tokens = 0
        self.lr = 0.0
        self.started = time.perf_counter()

    def overdue(self) -> bool:
        """Whether a time-based log line is due (never without ``max_seconds``)."""
        return self.max_seconds > 0 and time.perf_counter() - self.started >= self.max_seconds

    def add_losses(self, parts: torch.Tensor, tokens: int) -> None:
        """``parts`` (3,): one micro-batch's loss, text and mel loss, already divided by the group size."""
        self.sums[:3] += parts
        self.tokens += tokens

    def add_step(self, grad_norm: torch.Tensor, lr: float) -> None:
        self.sums[3] += grad_norm
        self.steps += 1
        self.lr = lr

    def _reduced(self, reduce: Reduce) -> list[float]:
        tokens = torch.tensor([float(self.tokens)], dtype=torch.float64, device=self.device)
        return reduce(torch.cat([self.sums, tokens])).tolist()

    def summary(self, reduce: Reduce, world_size: int) -> dict:
        """Means over the window's steps and all processes (sums ``reduce``d over them); starts a new window."""
        values = self._reduced(reduce)
        count = self.steps * world_size
        record = {"loss": values[0] / count, "text_loss": values[1] / count, "mel_loss": values[2] / count,
                  "lr": self.lr, "grad_norm": values[3] / count,
                  "tokens_per_s": values[4] / max(time.perf_counter() - self.started, 1e-9)}
        self.reset()
        return record

    def state_dict(self, reduce: Reduce) -> dict:
        """The window summed over processes (every rank must call this: ``reduce`` is collective)."""
        values = self._reduced(reduce)
        return {"sums": values[:4], "tokens": values[4], "steps": self.steps, "lr": self.lr}

    def load_state_dict(self, state: dict | None, is_main: bool) -> None:
        """Restore a saved window; the process sums live on rank 0 alone (they are summed at log time)."""
        self.reset()
        if not state:
            return
        self.steps, self.lr = int(state["steps"]), float(state["lr"])
        if is_main:
            self.sums = torch.tensor(state["sums"], dtype=torch.float64, device=self.device)
            self.tokens = int(state["tokens"])


def time_based_log_seconds(configured: float, world_size: int) -> float:
    """``train.log_every_seconds`` as it applies: off under torchrun, where every rank would have to agree
    on the clock at every step (a collective per step) before the loss window's all-reduce."""
    if configured > 0 and world_size > 1:
        logger.warning("train.log_every_seconds=%g is ignored with %d processes; losses are logged every "
                       "train.log_every_steps steps.", configured, world_size)
        return 0.0
    return configured


FIXED_AT_RESUME = ("train.lora.", "train.speaker_conditions.trainable", "train.condition_pairing")
"""Keys (or prefixes) that decide what is trained, and so the optimizer's parameter groups: a resume cannot
change them."""


def _dotted(node, prefix: str = "") -> dict:
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    return {key: value for name, child in node.items() for key, value in _dotted(child, f"{prefix}{name}.").items()}


def resume_differences(saved_config: DictConfig, current: dict) -> list[str]:
    """Warn about changed train/data keys; return the changed ``FIXED_AT_RESUME`` keys (they cannot resume)."""
    saved = OmegaConf.to_container(saved_config)
    fixed_changes = []
    for section in ("train", "data"):
        old_keys = _dotted(saved.get(section, {}), f"{section}.")
        new_keys = _dotted(current.get(section, {}), f"{section}.")
        for key in sorted(set(old_keys) | set(new_keys)):
            old, new = old_keys.get(key), new_keys.get(key)
            if key == "train.resume" or old == new:
                continue
            if key.startswith(FIXED_AT_RESUME):
                fixed_changes.append(f"{key} was {old!r}, now {new!r}")
            else:
                logger.warning("Config differs from the checkpoint: %s was %r, now %r", key, old, new)
    return fixed_changes
