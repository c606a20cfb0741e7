"""One training step: micro-batch forward and backward (safe against out-of-memory), the update, validation.

Nothing here waits for the host: losses come back as device tensors (summed by ``LossWindow``),
and the gradient norm stays on the device. An out-of-memory error in a micro-batch splits it in
two and retries each half, weighting the halves' losses by their share of the batch's targets so
the gradients add up to the whole batch's; a single example that still does not fit is named.
So that an error in the middle of a backward can be undone, each backward that does not
synchronise under DDP starts on empty ``.grad`` (the earlier micro-batches' gradients set aside,
no copy) and adds them back when it succeeds.
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from indextts.training.data import Batch, Example
from indextts.errors import TrainingError
from indextts.runtime import DistributedContext, autocast, resolve_precision
from indextts.training.memory import is_out_of_memory
from indextts.training.progress import LossWindow

logger = logging.getLogger(__name__)

TOP_K = 10
CUBLAS_WORKSPACE = ":4096:8"
Shares = tuple[float, float]
WHOLE: Shares = (1.0, 1.0)


def enable_deterministic_algorithms() -> bool:
    """Deterministic kernels only (an op without one raises); returns the previous setting.

    cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when CUDA starts, so call this before anything touches CUDA.
    """
    if torch.cuda.is_initialized() and os.environ.get("CUBLAS_WORKSPACE_CONFIG") is None:
        logger.warning("CUDA started before train.deterministic could set CUBLAS_WORKSPACE_CONFIG; set "
                       "CUBLAS_WORKSPACE_CONFIG=%s in the environment for an exact resume.", CUBLAS_WORKSPACE)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    return previous


def deterministic_error(error: RuntimeError, device: torch.device) -> TrainingError | None:
    """The user-facing error for an op without a deterministic kernel (None for any other error)."""
    if "deterministic" not in str(error):
        return None
    return TrainingError(f"train.deterministic=true, but an operation has no deterministic kernel on {device}: "
                         f"{str(error).splitlines()[0]} Set train.deterministic=false (resume is then close, "
                         "not bit-exact, on GPUs).")


def training_precision(requested: str, device: torch.device, tf32: bool) -> str:
    """``train.precision`` resolved (auto: bf16 on CUDA, fp32 elsewhere); TF32 matmuls set on CUDA."""
    precision = resolve_precision(requested, device, cuda_auto="bf16")
    if precision == "fp16" and device.type != "cuda":
        raise TrainingError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU.")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return precision


def compute_loss(model: nn.Module, batch: Batch, device: torch.device, precision: str, text_weight: float,
                 shares: Shares = WHOLE):
    """text_weight * text CE + (1 - text_weight) * mel CE of ``batch``; returns (loss, TrainOutput).

    ``shares`` scale the two losses when ``batch`` is part of a split batch (its share of the
    whole batch's text and mel targets), so the parts' losses add up to the whole one's.
    """
    batch = batch.to(device, non_blocking=True)
    with autocast(device, precision):
        output = model(batch)
    loss = text_weight * output.text_loss * shares[0] + (1.0 - text_weight) * output.mel_loss * shares[1]
    return loss, output


@dataclass
class TrainStepRunner:
    """Runs micro-batches and optimizer updates of one model (``ddp_model`` under torchrun)."""

    model: nn.Module  # the plain TrainingModel
    ddp_model: nn.Module  # DDP-wrapped (or the same model)
    forward_model: nn.Module  # what the training forward calls (ddp_model, maybe compiled)
    dist: DistributedContext
    precision: str
    text_weight: float
    grad_clip: float
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    window: LossWindow
    examples: list[Example]  # the training dataset, to name a clip that cannot fit
    step: int = 0  # optimizer steps done (set at resume), to name the step in errors

    def __post_init__(self) -> None:
        self.params = [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def device(self) -> torch.device:
        return self.dist.device

    def backward(self, batch: Batch, scale: float, sync: bool, shares: Shares = WHOLE) -> torch.Tensor:
        """Forward and backward of ``batch`` (loss x ``scale``); (3,) device tensor: loss, text, mel loss.

        On out-of-memory (cuBLAS/cuDNN allocation failures included) the gradients this batch had
        already added are dropped and the batch is split in two, each half retried (recursively);
        only the last half synchronises gradients under DDP. Under DDP an out-of-memory error inside
        a synchronising backward ends the run: the other processes already wait in its all-reduce.
        """
        synchronising = sync and self.dist.enabled
        earlier = None if synchronising else self._set_gradients_aside()
        in_backward = False
        try:
            with nullcontext() if sync or not self.dist.enabled else self.ddp_model.no_sync():
                loss, output = compute_loss(self.forward_model, batch, self.device, self.precision, self.text_weight,
                                            shares)
                in_backward = True
                self.scaler.scale(loss * scale).backward()
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
        else:
            if earlier is not None:
                self._add_gradients_back(earlier)
            return torch.stack([loss.detach(), output.text_loss.detach() * shares[0],
                                output.mel_loss.detach() * shares[1]])
        # out of memory, handled outside the except block so that the failed step's tensors are freed
        if synchronising and in_backward:
            raise self._synchronised_out_of_memory(batch)
        if earlier is not None:
            self._restore_gradients(earlier)
        return self._backward_halves(batch, scale, sync, shares)

    def _set_gradients_aside(self) -> list[torch.Tensor | None]:
        """Take the accumulated gradients off the parameters (no copy), so a backward leaves only its own."""
        earlier = [param.grad for param in self.params]
        for param in self.params:
            param.grad = None
        return earlier

    def _add_gradients_back(self, earlier: list[torch.Tensor | None]) -> None:
        """``.grad`` = this backward's + ``earlier``: the sums AccumulateGrad forms, in one foreach add."""
        pairs = [(param.grad, old) for param, old in zip(self.params, earlier)
                 if param.grad is not None and old is not None]
        if pairs:
            torch._foreach_add_([new for new, _ in pairs], [old for _, old in pairs])
        for param, old in zip(self.params, earlier):
            if param.grad is None:
                param.grad = old

    def _restore_gradients(self, earlier: list[torch.Tensor | None]) -> None:
        """Drop what a failed backward added: the gradients are ``earlier`` again, exactly."""
        for param, old in zip(self.params, earlier):
            param.grad = old

    def _synchronised_out_of_memory(self, batch: Batch) -> TrainingError:
        rows = len(batch.text_lengths)
        return TrainingError(
            f"Out of device memory on rank {self.dist.rank} of {self.dist.world_size} at optimizer step "
            f"{self.step + 1}, inside the backward that synchronises gradients across processes ({rows} rows, "
            f"{batch.padded_size(self.model.prefix_rows)} padded tokens). The other processes already wait in its "
            "all-reduce, so the batch cannot be split and retried; the run stops. Lower data.max_tokens (or "
            "data.auto_memory_fraction), or set train.gradient_checkpointing=true, then resume with --resume.")

    def _backward_halves(self, batch: Batch, scale: float, sync: bool, shares: Shares) -> torch.Tensor:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        rows = len(batch.text_lengths)
        if rows == 1:
            example = self.examples[int(batch.example_indices[0])]
            raise TrainingError(f"Out of device memory on a single example: {example.describe()} needs "
                                f"{batch.padded_size(self.model.prefix_rows)} sequence positions. Lower "
                                "data.max_tokens, set train.gradient_checkpointing=true, or drop this clip from the "
                                "audio list.")
        logger.warning("Out of memory on a micro-batch of %d rows (%d padded tokens): split in two and retried",
                       rows, batch.padded_size(self.model.prefix_rows))
        text_targets, mel_targets = batch.text_lengths + 1, batch.code_lengths + 1
        half, total = rows // 2, torch.zeros(3, device=self.device)
        for start, stop in ((0, half), (half, rows)):
            part_shares = (shares[0] * float(text_targets[start:stop].sum() / text_targets.sum()),
                           shares[1] * float(mel_targets[start:stop].sum() / mel_targets.sum()))
            total += self.backward(batch.rows(start, stop), scale, sync and stop == rows, part_shares)
        return total

    def update(self) -> None:
        """Clip, step, schedule; the gradient norm and the lr this step applied go to the window."""
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        lr = self.scheduler.get_last_lr()[0]  # the lr this step applies (the scheduler moves on below)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.window.add_step(grad_norm.detach(), lr)
        self.step += 1

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` (a device tensor) over processes."""
        if self.dist.enabled:
            torch.distributed.all_reduce(values)
        return values

    def check_replicas(self) -> None:
        """Under DDP every process must end with the same trainable weights (a cheap end-of-run proof)."""
        digest = hashlib.sha256()
        for param in self.params:
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
        gathered: list = [None] * self.dist.world_size
        torch.distributed.all_gather_object(gathered, digest.hexdigest())
        if len(set(gathered)) != 1:
            raise TrainingError(f"The {self.dist.world_size} processes ended with different trainable weights "
                                f"({gathered}); the saved adapter is rank 0's. Please report this as a bug.")
        logger.info("All %d processes hold identical trainable weights (sha256 %s)", self.dist.world_size,
                    gathered[0][:16])

    @torch.no_grad()
    def validate(self, loader) -> dict:
        """Validation text/mel loss and mel top-1/top-10 accuracy, averaged over all valid targets."""
        self.model.eval()
        totals = torch.zeros(6, dtype=torch.float64, device=self.device)  # text loss sum, count, mel ..., top-1, top-k
        for batch in loader:
            _, output = compute_loss(self.model, batch, self.device, self.precision, self.text_weight)
            text_count, mel_count = output.text_target_mask.sum(), output.mel_target_mask.sum()
            top = output.mel_logits.topk(min(TOP_K, output.mel_logits.shape[1]), dim=1).indices  # (B, K, N+1)
            hits = (top == output.mel_targets.unsqueeze(1)) & output.mel_target_mask.unsqueeze(1)
            totals += torch.stack([output.text_loss * text_count, text_count, output.mel_loss * mel_count,
                                   mel_count, hits[:, 0].sum(), hits.any(dim=1).sum()]).double()
            del output, top, hits  # free the logits before the next forward
        totals = self.all_reduce(totals).tolist()
        self.model.train()
        mel = max(totals[3], 1)
        return {"text_loss": totals[0] / max(totals[1], 1), "mel_loss": totals[2] / mel,
                "mel_top1": totals[4] / mel, f"mel_top{TOP_K}": totals[5] / mel}
