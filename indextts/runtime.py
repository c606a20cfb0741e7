"""Where and how numbers are computed: device, precision and the torchrun context, in one place.

Extraction, training and inference all resolve their ``device`` and ``precision`` settings here,
so the three commands accept the same words and mean the same by them:

- device: ``auto`` (the local GPU when there is one, else the CPU), ``cpu``, ``cuda`` or
  ``cuda:N``. Under torchrun a CUDA device is offset by the process's ``LOCAL_RANK``, so ranks
  never share a GPU by accident.
- precision: ``fp32 | bf16 | fp16 | auto``. ``auto`` is resolved by the caller's rule for CUDA
  (each stage passes the half type it prefers) and is ``fp32`` on the CPU.

On the CPU, long runs also ask the C library to keep freed memory for reuse
(``reuse_freed_host_memory``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from indextts.errors import ConfigError, DistributedError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# glibc mallopt() parameters, and the values reuse_freed_host_memory() gives them.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
HOST_MMAP_THRESHOLD = 32 * 2**20  # the largest value glibc accepts on 64-bit systems
HOST_TRIM_THRESHOLD = 2**30

logger = logging.getLogger(__name__)


def local_rank() -> int:
    """This process's GPU slot on its node under torchrun (0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    """Number of processes in the torchrun job (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(requested: str | torch.device | None = "auto") -> torch.device:
    """The device named by ``requested``, combined with the local rank under torchrun.

    ``auto``/None picks CUDA when available. ``cuda:N`` under torchrun becomes ``cuda:N+LOCAL_RANK``.
    A CUDA device becomes the current device, so every CUDA context opens on the right GPU.
    """
    name = "auto" if requested is None else str(requested)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"Unknown device '{name}'. Use auto, cpu, cuda or cuda:N.") from error
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ConfigError(f"The device '{name}' was requested but CUDA is not available on this machine. "
                          "Use device auto or cpu (--device cpu, train.device=cpu), or install a CUDA build of PyTorch.")
    index = (device.index or 0) + (local_rank() if world_size() > 1 else 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"The device '{name}' with LOCAL_RANK {local_rank()} needs GPU {index}, but only "
                          f"{torch.cuda.device_count()} are visible. Start fewer processes per node.")
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    return device


def resolve_precision(precision: str, device: torch.device, cuda_auto: str = "fp16") -> str:
    """A concrete ``fp32 | bf16 | fp16`` for ``device``; ``auto`` means ``cuda_auto`` on CUDA, fp32 elsewhere.

    ``cuda_auto="bf16"`` falls back to fp16 on GPUs without bf16 support.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"Unknown precision '{precision}'. Use one of: {', '.join(PRECISIONS)}.")
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    if cuda_auto == "bf16" and not torch.cuda.is_bf16_supported():
        return "fp16"
    return cuda_auto


def dtype_of(precision: str) -> torch.dtype:
    """The torch dtype of a concrete precision name."""
    if precision not in DTYPES:
        raise ConfigError(f"Unknown precision '{precision}'. Use one of: {', '.join(DTYPES)}.")
    return DTYPES[precision]


def autocast(device: torch.device, precision: str):
    """An autocast context for a concrete precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype_of(precision))


DEFAULT_DIST_TIMEOUT_S = 600.0
"""How long a rank waits for the others at any collective when the caller names no timeout."""

LOST_PEER_SIGNS = ("timed out", "timeout", "connection closed by peer", "connection reset by peer")
"""Words of the gloo/NCCL/store errors raised when another rank does not arrive (lower case)."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a torchrun job (rank 0 of 1 without torchrun).

    Every collective of the job (barriers, all-reduces, all-gathers) waits at most ``timeout_s``
    seconds: the process group is created with that timeout."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    timeout_s: float = DEFAULT_DIST_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def lost_peer(self, error: BaseException, where: str) -> DistributedError | None:
        """The user's message for ``error`` when it is a collective that gave up on another rank, else None."""
        if not self.enabled or not any(sign in str(error).lower() for sign in LOST_PEER_SIGNS):
            return None
        return DistributedError(
            f"Rank {self.rank} of {self.world_size} stopped waiting for the other processes {where} (a "
            f"collective timed out after {self.timeout_s:g} s or a peer left: {str(error).splitlines()[0]}). "
            "Another rank crashed, hung or was killed: read its output above. If the machine is only "
            "slow, raise train.dist_timeout_s.")


def constant_buffer_ddp_options() -> dict:
    """DDP keyword arguments for a model whose buffers are equal on every rank and never change.

    Newer torch deprecates ``broadcast_buffers`` (a FutureWarning on every run) for
    ``forward_sync_buffers``; older releases only know the former. Either way no forward pass syncs buffers.
    """
    import inspect

    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}


def init_distributed(device: str | torch.device | None = "auto",
                     timeout_s: float = DEFAULT_DIST_TIMEOUT_S) -> DistributedContext:
    """Resolve the device and join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU).

    Joining and every later collective wait at most ``timeout_s`` seconds for the other ranks."""
    chosen = resolve_device(device)
    size = world_size()
    context = DistributedContext(rank=int(os.environ.get("RANK", 0)) if size > 1 else 0, world_size=size, device=chosen,
                                 timeout_s=timeout_s)
    if size > 1 and not dist.is_initialized():
        try:
            dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo",
                                    timeout=timedelta(seconds=timeout_s))
        except RuntimeError as error:  # DistStoreError and DistBackendError are RuntimeErrors
            raise context.lost_peer(error, "while joining the process group at start-up") or error
    return context


def reuse_freed_host_memory() -> bool:
    """Make glibc keep freed tensor memory for the next step instead of handing it back to the kernel.

    CPU training allocates and frees the same large activations every step. With glibc's defaults,
    blocks above a moving threshold are mapped fresh from the kernel and the top of the heap is
    trimmed, so a step can page-fault its activations in again (zero-filled by the kernel): on the
    2-core CI machine that was five times the page faults and over a tenth of a tiny training run's
    wall time (docs/training.md). After this call, blocks up to 32 MiB come from the heap and up to
    1 GiB of freed heap stays mapped for reuse. Process-wide; returns False where the C library is
    not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    applied = all(mallopt(option, value) == 1 for option, value in ((M_MMAP_THRESHOLD, HOST_MMAP_THRESHOLD),
                                                                    (M_TRIM_THRESHOLD, HOST_TRIM_THRESHOLD)))
    logger.debug("glibc malloc keeps freed memory for reuse: %s", applied)
    return applied
