"""Streaming within a sentence: audio of a sentence's first codes while the rest are being generated.

Every ``chunk_codes`` generated codes, the codes the sentence is sure to speak first
(:func:`indextts.gpt.generation.stream_codes`, then :func:`indextts.inference.synthesis.settled_speech_codes`
for silence trimming) get their GPT latents (attention is causal, so the latents of a prefix are the
prefix of the sentence's latents) and are vocoded in a window that starts ``STREAM_CONTEXT_FRAMES``
frames early. BigVGAN looks both ways, so a window's audio stops ``STREAM_LOOKAHEAD_FRAMES`` before
its last settled frame, and its last ``STREAM_OVERLAP_FRAMES`` frames of audio are held back, vocoded
again by the next window and crossfaded into it (:class:`indextts.inference.synthesis.CrossfadeStitcher`). Joined, the pieces have the sentence's length and
match its whole-sentence audio except near the crossfades (tests/test_streaming.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from indextts.gpt.generation import GenerationConfig
from indextts.inference.speech import VOCODER_EDGE_FRAMES, SpeechModels
from indextts.inference.synthesis import CrossfadeStitcher, SynthesisOptions, settled_speech_codes, silence_min_total

STREAM_CONTEXT_FRAMES = VOCODER_EDGE_FRAMES
"""Latent frames before a window's first new frame (where the window's left edge stops mattering)."""

STREAM_LOOKAHEAD_FRAMES = VOCODER_EDGE_FRAMES
"""Settled frames after a window's last audio frame (its right edge stops mattering): they cost decode
time (about 16 ms at 1,000 codes/s), not audio time."""

STREAM_OVERLAP_FRAMES = 4
"""Frames at the end of each window's audio held back and crossfaded with the next window's audio of them."""


@dataclass
class SentencePiece:
    """Audio ready to play (S,) float32, the codes (N,) it first voices, and whether the sentence is done."""

    waveform: np.ndarray
    codes: torch.Tensor
    final: bool


def stream_sentence(models: SpeechModels, condition: torch.Tensor, speaker_embedding: torch.Tensor,
                    text_ids: torch.Tensor, options: SynthesisOptions, generation: GenerationConfig,
                    chunk_codes: int) -> Iterator[SentencePiece]:
    """Pieces of one sentence's audio: condition (32, D), speaker_embedding (1, E, 1), text_ids (L,).

    ``generation`` is the sentence's batch setting (seeded as its batch); the last piece has ``final``
    set and may be empty.
    """
    conditions, ids = condition[None], text_ids[None].to(models.device)
    lengths = torch.tensor([len(text_ids)], device=models.device)
    samples_per_code = models.samples_per_code
    stitcher = CrossfadeStitcher(STREAM_OVERLAP_FRAMES * samples_per_code)
    min_total = silence_min_total(options.silence_trimming)
    voiced = reported = 0  # frames whose audio went to the stitcher (held back included); codes handed out
    for rows, final in models.stream_codes(conditions, ids, lengths, generation, every=chunk_codes):
        codes = models.spoken_codes(rows[0], options) if final else settled_speech_codes(
            rows[0], options.silence_code, options.max_silence_codes, min_total)
        end = len(codes) if final else len(codes) - STREAM_LOOKAHEAD_FRAMES
        if end <= voiced and not final:
            continue
        start = voiced - len(stitcher.held) // samples_per_code
        context_start = max(0, start - STREAM_CONTEXT_FRAMES)
        audio = np.zeros(0, dtype=np.float32)
        if len(codes):
            latents = models.latents(conditions, ids, lengths, [codes])[0]  # (N, D)
            window = models.vocode([latents[context_start:]], [speaker_embedding])[0]
            audio = window[(start - context_start) * samples_per_code: end * samples_per_code]
        ready = stitcher.add(audio, final)
        voiced = end
        if len(ready) or final:
            yield SentencePiece(ready, codes[reported:end].cpu(), final)
            reported = voiced
