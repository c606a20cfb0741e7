"""Cut a long recording into clips at its pauses, using Silero VAD's speech probabilities.

The plan, in seconds of the recording:

1. Silero VAD scores every 32 ms frame; hysteresis on the score gives speech runs, pauses shorter
   than ``min_pause`` are bridged and runs shorter than ``min_speech`` dropped.
2. Each run is one clip. A run longer than the clip limit is split at the quietest frame (lowest
   RMS level) of the window that leaves both sides within bounds, again and again.
3. A run shorter than the lower bound joins its neighbour across the shorter pause when the result
   still fits; otherwise it is dropped.
4. Each clip keeps up to ``padding`` of silence on both sides, never past the middle of a pause.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
import torch

from indextts.errors import PrepareError
from indextts.prepare.silero_network import FRAME_SAMPLES as VAD_FRAME
from indextts.prepare.silero_network import SileroNetwork

VAD_SAMPLE_RATE = 16000
"""Silero VAD scores 512-sample (32 ms) frames at 16 kHz."""
FRAME_SECONDS = VAD_FRAME / VAD_SAMPLE_RATE
QUIET_SPAN_FRAMES = 3
"""Splits look for the quietest ~100 ms, not the quietest frame: a stop consonant's closure is as
silent as a pause for one frame, but not for three."""
HYSTERESIS = 0.15
"""Speech ends where the score falls below ``threshold - HYSTERESIS`` (as Silero's own helper does)."""


@dataclass(frozen=True)
class SlicingOptions:
    """Clip bounds and VAD settings, in seconds (``max_seconds`` already capped by the model)."""

    min_seconds: float = 2.0
    max_seconds: float = 12.0
    padding: float = 0.15
    min_pause: float = 0.3
    min_speech: float = 0.25
    threshold: float = 0.5

    def validate(self) -> None:
        problems = []
        if not 0 < self.min_seconds < self.max_seconds:
            problems.append(f"the clip bounds must satisfy 0 < min ({self.min_seconds}) < max ({self.max_seconds})")
        if not 0 <= 2 * self.padding < self.min_seconds:
            problems.append(f"twice the padding ({self.padding}) must be below the minimum clip length")
        if not 0 < self.threshold < 1:
            problems.append(f"the VAD threshold ({self.threshold}) must lie between 0 and 1")
        if problems:
            raise PrepareError(f"Invalid slicing options: {'; '.join(problems)}. Fix the command-line values.")


@dataclass(frozen=True)
class Clip:
    """One planned clip: the speech it holds and the padded span cut out, in seconds."""

    speech_start: float
    speech_end: float
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


class SileroVAD:
    """Silero VAD's 16 kHz model from the pickle-free weights inside the ``silero-vad`` wheel (no download)."""

    def __init__(self) -> None:
        self._network = SileroNetwork.from_wheel()

    def speech_probabilities(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono float audio (S,) -> speech probability per 32 ms frame (N,), N = ceil(S' / 512)."""
        samples = soxr.resample(audio, sample_rate, VAD_SAMPLE_RATE) if sample_rate != VAD_SAMPLE_RATE else audio
        with torch.inference_mode():
            scores = self._network(torch.from_numpy(np.ascontiguousarray(samples, np.float32)))
        return scores.numpy()


def speech_runs(probabilities: np.ndarray, options: SlicingOptions) -> list[tuple[float, float]]:
    """Frame scores (N,) -> speech runs ``[(start, end)]`` in seconds, pauses < min_pause bridged."""
    runs: list[list[float]] = []
    speaking = False
    for index, probability in enumerate(probabilities):
        if not speaking and probability >= options.threshold:
            speaking = True
            runs.append([index * FRAME_SECONDS, len(probabilities) * FRAME_SECONDS])
        elif speaking and probability < options.threshold - HYSTERESIS:
            speaking = False
            runs[-1][1] = index * FRAME_SECONDS
    merged: list[list[float]] = []
    for start, end in runs:
        if merged and start - merged[-1][1] < options.min_pause:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged if end - start >= options.min_speech]


def frame_levels_db(audio: np.ndarray, sample_rate: int, frame_seconds: float = FRAME_SECONDS) -> np.ndarray:
    """Mono audio (S,) -> RMS level in dB per frame (N,), frames of ``frame_seconds``."""
    frame = max(1, round(frame_seconds * sample_rate))
    count = len(audio) // frame
    frames = audio[: count * frame].reshape(count, frame).astype(np.float64)
    return 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)


def quiet_span_levels_db(levels_db: np.ndarray) -> np.ndarray:
    """Frame levels (N,) -> mean level of the ``QUIET_SPAN_FRAMES`` frames centred on each (N,)."""
    kernel = np.ones(QUIET_SPAN_FRAMES) / QUIET_SPAN_FRAMES
    return np.convolve(levels_db, kernel, mode="same")


def _split_long_run(start: float, end: float, levels_db: np.ndarray, longest: float, shortest: float
                    ) -> list[tuple[float, float]]:
    """Split a run longer than ``longest`` at its quietest frames; every piece within bounds when possible."""
    pieces = []
    while end - start > longest:
        window_start = start + shortest
        window_end = min(start + longest, end - shortest)
        if window_end <= window_start:
            window_end = start + longest
        first = int(np.ceil(window_start / FRAME_SECONDS))
        last = max(first + 1, int(window_end / FRAME_SECONDS))
        window = levels_db[first:last]
        cut = (first + int(np.argmin(window))) * FRAME_SECONDS if window.size else window_end
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def _join_short_runs(runs: list[tuple[float, float]], shortest: float, longest: float
                     ) -> list[tuple[float, float]]:
    """Join each run shorter than ``shortest`` to the neighbour across the shorter pause, if it fits."""
    runs = list(runs)
    index = 0
    while index < len(runs):
        start, end = runs[index]
        if end - start >= shortest:
            index += 1
            continue
        gaps = []
        if index > 0:
            gaps.append((start - runs[index - 1][1], index - 1))
        if index + 1 < len(runs):
            gaps.append((runs[index + 1][0] - end, index + 1))
        for _, neighbour in sorted(gaps):
            first, second = sorted((index, neighbour))
            if runs[second][1] - runs[first][0] <= longest:
                runs[first:second + 1] = [(runs[first][0], runs[second][1])]
                index = first
                break
        else:
            index += 1
    return runs


def plan_clips(runs: list[tuple[float, float]], levels_db: np.ndarray, total_seconds: float,
               options: SlicingOptions) -> list[Clip]:
    """Speech runs -> padded clips within ``[min_seconds, max_seconds]`` (shorter leftovers dropped)."""
    longest = options.max_seconds - 2 * options.padding
    shortest = options.min_seconds - 2 * options.padding
    pieces = [piece for start, end in runs for piece in _split_long_run(start, end, levels_db, longest, shortest)]
    pieces = _join_short_runs(pieces, shortest, longest)
    clips = []
    for index, (start, end) in enumerate(pieces):
        previous_end = pieces[index - 1][1] if index > 0 else 0.0
        next_start = pieces[index + 1][0] if index + 1 < len(pieces) else total_seconds
        clip_start = max(start - options.padding, (previous_end + start) / 2 if index > 0 else 0.0)
        clip_end = min(end + options.padding, (end + next_start) / 2 if index + 1 < len(pieces) else total_seconds)
        clip = Clip(start, end, clip_start, clip_end)
        if options.min_seconds <= clip.duration <= options.max_seconds:
            clips.append(clip)
    return clips


def slice_recording(audio: np.ndarray, sample_rate: int, vad: SileroVAD, options: SlicingOptions) -> list[Clip]:
    """Mono audio (S,) of a long recording -> the clips to cut from it, in order."""
    runs = speech_runs(vad.speech_probabilities(audio, sample_rate), options)
    levels = quiet_span_levels_db(frame_levels_db(audio, sample_rate))
    return plan_clips(runs, levels, len(audio) / sample_rate, options)
