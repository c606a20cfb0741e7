"""Score one clip: transcribe it, compare the transcript with the text, and measure its speaker similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from indextts.errors import AudioError
from indextts.evaluation.asr import ASRBackend, load_asr
from indextts.evaluation.metrics import SCRIPTS, score
from indextts.evaluation.run_inputs import EvalItem
from indextts.evaluation.speaker import cosine_similarity, load_speaker_encoder

ANY_LANGUAGE = "*"
MIN_SCORED_SECONDS = 0.05
"""Clips shorter than this (a synthesis that produced no codes) count as silence: all words deleted, no SIM."""


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Float32 samples (S,) or (S, C) and the sample rate of a recording."""
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32")
    except (OSError, RuntimeError, sf.LibsndfileError) as error:
        raise AudioError(f"Cannot read the recording {path}: {error}. Restore the file or leave it out.") from error
    return samples, int(sample_rate)


class Scorer:
    """ASR backends by language, one speaker encoder, and each speaker's reference embedding.

    Args:
        asr: language ("en", "zh") or "*" -> ASR spec (see ``load_asr``); a language without a
            backend (and no "*") is not transcribed, so its rows carry SIM only.
        sim: speaker encoder spec (see ``load_speaker_encoder``).
        references: speaker -> the real recording SIM is measured against.
    """

    def __init__(self, asr: dict[str, str], sim: str, references: dict[str, Path], device: str = "cpu"):
        backends = {spec: load_asr(spec, device) for spec in dict.fromkeys(asr.values())}
        self.routes: dict[str, ASRBackend] = {language: backends[spec] for language, spec in asr.items()}
        self.encoder = load_speaker_encoder(sim, device)
        self.reference_embeddings = {speaker: self.encoder.embed(*read_audio(path))
                                     for speaker, path in references.items()}

    def backend_for(self, language: str) -> ASRBackend | None:
        return self.routes.get(language) or self.routes.get(ANY_LANGUAGE)

    def score(self, item: EvalItem, audio: np.ndarray, sample_rate: int) -> dict:
        """Row fields for one clip: transcript, edit counts per script (``errors_mixed`` ...) and ``sim``."""
        backend = self.backend_for(item.language)
        silent = len(audio) < MIN_SCORED_SECONDS * sample_rate
        fields: dict = {"asr": None if backend is None else backend.name, "transcript": None,
                        "asr_confidence": None, "sim": None}
        if backend is not None:
            transcript = None if silent else backend.transcribe(audio, sample_rate, item.language)
            fields["transcript"] = "" if transcript is None else transcript.text
            fields["asr_confidence"] = None if transcript is None else transcript.confidence
            result = score(item.text, fields["transcript"])
            fields["normalised_text"], fields["normalised_transcript"] = result.reference, result.hypothesis
            for script in SCRIPTS:
                fields[f"errors_{script}"] = result.counts[script].errors
                fields[f"tokens_{script}"] = result.counts[script].reference_tokens
        if not silent:
            embedding = self.encoder.embed(audio, sample_rate)
            fields["sim"] = cosine_similarity(embedding, self.reference_embeddings[item.speaker])
        return fields
