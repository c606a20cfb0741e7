"""Memory-safe batching: a token budget sized from free GPU memory, and out-of-memory detection.

``data.max_tokens=auto`` runs one probe step (forward + backward) on a batch shaped like the
longest examples of the data, measures the peak memory it adds per padded token, and divides the
free memory (``torch.cuda.mem_get_info``, times ``data.auto_memory_fraction``) by that cost. The
probe uses the longest sequence because attention makes the per-token cost grow with length, so
shorter batches stay under the estimate. On the CPU ``auto`` means ``data.cpu_max_tokens``.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from indextts.training.data import CONDITION_LATENTS, Batch, sequence_length, v2_defaults

logger = logging.getLogger(__name__)

PROBE_ROWS = 2
OUT_OF_MEMORY_MARKS = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "not enough memory")
"""cuBLAS/cuDNN (and the CPU allocator) report a failed allocation as a plain RuntimeError with these words."""


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: torch's OutOfMemoryError or a library's RuntimeError."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(mark in str(error) for mark in OUT_OF_MEMORY_MARKS)


def probe_batch(text_tokens: int, codes: int, rows: int = PROBE_ROWS, emotion_dim: int = 0) -> Batch:
    """A batch of ``rows`` examples of the given lengths (token id 1, code 1, speaker 0, zero emotion
    vectors of ``emotion_dim`` for IndexTTS-2/2.5, language 0, learned conditions), on the CPU."""
    ones = torch.ones(rows, dtype=torch.long)
    return Batch(torch.ones(rows, text_tokens, dtype=torch.long), ones * text_tokens,
                 torch.ones(rows, codes, dtype=torch.long), ones * codes, torch.zeros(rows, dtype=torch.long),
                 torch.arange(rows), *v2_defaults(rows, emotion_dim))


def measure_bytes_per_token(step: Callable[[Batch], None], batch: Batch, device: torch.device,
                            prefix_rows: int = CONDITION_LATENTS) -> float:
    """Peak memory one ``step`` (forward + backward) on ``batch`` adds, per padded token (CUDA only);
    ``prefix_rows``: the family's conditioning rows per example."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(batch)
    torch.cuda.synchronize(device)
    return max(1.0, (torch.cuda.max_memory_allocated(device) - before) / batch.padded_size(prefix_rows))


def token_budget_from_memory(device: torch.device, bytes_per_token: float, fraction: float, longest: int) -> int:
    """Tokens per micro-batch that fit ``fraction`` of the free memory of ``device`` (at least ``longest``)."""
    free, _total = torch.cuda.mem_get_info(device)
    budget = int(free * fraction / bytes_per_token)
    if budget < longest:
        logger.warning("Free GPU memory (%.1f GiB) fits only %d tokens per batch at %.0f bytes per token, less than "
                       "the longest example (%d); such examples form single batches and may run out of memory.",
                       free / 2**30, budget, bytes_per_token, longest)
    return max(budget, longest)


def auto_token_budget(device: torch.device, step: Callable[[Batch], None], longest_text: int, longest_codes: int,
                      fraction: float, cpu_budget: int, emotion_dim: int = 0,
                      prefix_rows: int = CONDITION_LATENTS) -> int:
    """``data.max_tokens=auto``: measured on CUDA, ``cpu_budget`` elsewhere. IndexTTS-2/2.5 pass their
    emotion vector width and prefix rows (34 or 3), so the probe and the per-token cost match their batches."""
    if device.type != "cuda":
        return cpu_budget
    probe = probe_batch(longest_text, longest_codes, emotion_dim=emotion_dim)
    cost = measure_bytes_per_token(step, probe, device, prefix_rows)
    budget = token_budget_from_memory(device, cost, fraction, sequence_length(longest_text, longest_codes, prefix_rows))
    logger.info("data.max_tokens=auto: %.0f bytes per token measured -> %d tokens per micro-batch", cost, budget)
    return budget
