"""Model-free steps of synthesis: sentence batching, silence trimming, joining and writing wavs.

These pieces sit between the text frontend, the GPT and BigVGAN in ``indextts.infer``. They hold
no model state, so tests check them directly and the synthesis loop stays short.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from indextts.errors import InferenceError

PCM16_MAX = 32767


def length_batches(lengths: Sequence[int], max_batch_size: int, max_ratio: float = 1.5) -> list[list[int]]:
    """Group item indices into batches of similar length for padded batched generation.

    Items are sorted by length; a batch is closed when it holds ``max_batch_size`` items or when the
    next item is more than ``max_ratio`` times longer than the batch's shortest one, so that padding
    (wasted decode work and a longer prompt for short sentences) stays small. Returns lists of the
    original indices, shortest batch first.
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        if (
            batch is None
            or len(batch) >= max_batch_size
            or lengths[index] > max_ratio * max(lengths[batch[0]], 1)
        ):
            batches.append([index])
        else:
            batch.append(index)
    return batches


def strip_stop_code(codes: torch.Tensor, stop_code: int) -> torch.Tensor:
    """Cut a generated code sequence (N,) at its first stop code (the stop code itself is dropped)."""
    stops = (codes == stop_code).nonzero()
    return codes[: int(stops[0])] if len(stops) else codes


def trim_silence_runs(codes: torch.Tensor, silence_code: int, max_run: int) -> torch.Tensor:
    """Shorten every run of ``silence_code`` in ``codes`` (N,) to at most ``max_run`` codes.

    The released GPTs sometimes emit long stretches of the DVAE's silence code (52 for the release
    models), which become seconds of dead air. Runs up to ``max_run`` are natural pauses and kept.
    A negative ``max_run`` disables trimming.
    """
    if max_run < 0 or codes.numel() == 0:
        return codes
    values, counts = torch.unique_consecutive(codes, return_counts=True)
    counts = torch.where(values == silence_code, counts.clamp(max=max_run), counts)
    return torch.repeat_interleave(values, counts)


def join_waveforms(waveforms: Sequence[np.ndarray], pause_samples: int) -> np.ndarray:
    """Concatenate mono float waveforms with ``pause_samples`` of silence between neighbours."""
    if not waveforms:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(max(pause_samples, 0), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for i, waveform in enumerate(waveforms):
        if i:
            pieces.append(gap)
        pieces.append(np.asarray(waveform, dtype=np.float32))
    return np.concatenate(pieces)


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """Convert a float waveform to int16 PCM, clipping to [-1, 1] first so loud peaks never wrap."""
    clipped = np.clip(np.nan_to_num(np.asarray(waveform, dtype=np.float32)), -1.0, 1.0)
    return np.rint(clipped * PCM16_MAX).astype(np.int16)


def _unwritable(path: Path, reason: object) -> InferenceError:
    return InferenceError(
        f"Cannot write the output wav {path}: {reason}. Choose an output path in a folder you can "
        "write to."
    )


def check_writable(path: str | Path) -> None:
    """Fail early, before slow synthesis, when a wav cannot be written at ``path``.

    Creates the missing parent folders and a temporary file beside ``path`` (removed again).
    Raises InferenceError when ``path`` is a folder or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise InferenceError(
            f"The output path {path} is a folder. Give a file name ending in .wav, e.g. {path / 'out.wav'}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent):
            pass
    except OSError as error:
        raise _unwritable(path, error.strerror or error) from error


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> Path:
    """Write a mono float waveform as a 16-bit PCM WAV, creating folders and replacing atomically.

    The file is written to a temporary name beside ``path`` and moved over it only when complete,
    so an existing wav is never left half-written. Raises InferenceError when ``path`` cannot be
    written (a folder, read-only location, full disk).
    """
    path = Path(path)
    check_writable(path)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".wav.tmp", dir=path.parent)
        os.close(handle)
        sf.write(temporary, to_pcm16(waveform), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(temporary, path)
        temporary = None
    except (OSError, sf.SoundFileError) as error:
        raise _unwritable(path, getattr(error, "strerror", None) or error) from error
    finally:
        if temporary is not None and os.path.exists(temporary):
            os.unlink(temporary)
    return path
