"""A long recording with known utterance boundaries, built from an audio list (e.g. the demo's).

The utterances are trimmed of their own leading and trailing silence and joined with pauses of
chosen lengths, so the exact start and end of every utterance in the result is known: the demo
uses it to exercise ``indextts-prepare``, and the tests to measure where the slicer cuts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from indextts.audio import load_audio
from indextts.errors import PrepareError
from indextts.contracts.audio_list import parse_audio_list

SILENCE_LEVEL = 1e-3
"""Samples below this magnitude at an utterance's ends count as its own silence."""


@dataclass(frozen=True)
class SpokenSegment:
    """Where one utterance lies in the long recording, in seconds, and what it says."""

    start: float
    end: float
    text: str


def trim_silence(samples: np.ndarray) -> np.ndarray:
    """Drop leading and trailing samples of (S,) quieter than ``SILENCE_LEVEL``."""
    loud = np.flatnonzero(np.abs(samples) >= SILENCE_LEVEL)
    return samples[loud[0]: loud[-1] + 1] if loud.size else samples[:0]


def build_long_recording(list_path: str | Path, out_path: str | Path, pauses: list[float],
                         sample_rate: int, lead_seconds: float = 0.5) -> list[SpokenSegment]:
    """Join the utterances of ``list_path`` into one mono 16-bit wav at ``out_path``.

    ``lead_seconds`` of silence open and close the file and ``pauses[i]`` seconds separate
    utterance i from i + 1 (so ``len(pauses)`` must be the utterance count minus one).
    """
    utterances = parse_audio_list(list_path).utterances
    if len(pauses) != len(utterances) - 1:
        raise PrepareError(f"{len(utterances)} utterances in {list_path} need {len(utterances) - 1} pauses, "
                           f"got {len(pauses)}. Give one pause per gap between utterances.")
    pieces = [np.zeros(round(lead_seconds * sample_rate), np.float32)]
    segments = []
    position = len(pieces[0])
    for index, utterance in enumerate(utterances):
        speech = trim_silence(load_audio(utterance.audio, sample_rate).numpy())
        segments.append(SpokenSegment(position / sample_rate, (position + len(speech)) / sample_rate, utterance.text))
        gap = pauses[index] if index < len(pauses) else lead_seconds
        pieces += [speech, np.zeros(round(gap * sample_rate), np.float32)]
        position += len(speech) + len(pieces[-1])
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out_path), np.concatenate(pieces), sample_rate, subtype="PCM_16")
    return segments
