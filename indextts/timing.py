"""Wall-clock time per synthesis stage, and the real-time factor derived from it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass
class StageTimings:
    """Wall-clock seconds spent in each stage of one synthesis call.

    When requests share a batch (``IndexTTS.synthesize_many``), each one reports the stages of the
    batches it took part in.
    """

    text: float = 0.0
    conditioning: float = 0.0
    generation: float = 0.0
    latents: float = 0.0
    vocoder: float = 0.0
    num_codes: int = 0
    audio_seconds: float = 0.0

    @property
    def total(self) -> float:
        """Seconds for the whole call."""
        return self.text + self.conditioning + self.generation + self.latents + self.vocoder

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of compute per second of audio (lower is faster)."""
        return self.total / self.audio_seconds if self.audio_seconds else float("inf")

    def summary(self) -> str:
        """One line per stage with times, GPT codes per second and the real-time factor."""
        codes_per_second = self.num_codes / self.generation if self.generation else 0.0
        return "\n".join([
            f"text       {self.text:8.3f} s",
            f"condition  {self.conditioning:8.3f} s",
            f"generate   {self.generation:8.3f} s  ({self.num_codes} codes, {codes_per_second:.1f} codes/s)",
            f"latents    {self.latents:8.3f} s",
            f"vocoder    {self.vocoder:8.3f} s",
            f"total      {self.total:8.3f} s  for {self.audio_seconds:.2f} s of audio, RTF {self.rtf:.4f}",
        ])


class Stopwatch:
    """Adds the seconds spent inside ``with stopwatch("stage"):`` to that field of each StageTimings.

    On CUDA the device is synchronised at the end of the block, so the time covers the queued work.
    """

    def __init__(self, timings: list[StageTimings], device: torch.device):
        self.timings = timings
        self.device = device
        self.stage = ""
        self.start = 0.0

    def __call__(self, stage: str) -> Stopwatch:
        self.stage = stage
        return self

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - self.start
        for timings in self.timings:
            setattr(timings, self.stage, getattr(timings, self.stage) + elapsed)
