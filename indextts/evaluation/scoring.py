"""Score one clip: transcribe it, compare the transcript with the text, and measure its speaker similarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from indextts.errors import AudioError, EvaluationError
from indextts.asr.backends import ASR_SAMPLE_RATE, ASRBackend, ASRError, load_asr, to_mono_16k
from indextts.asr.choice import AUTO, choose_asr
from indextts.evaluation.metrics import SCRIPTS, score
from indextts.evaluation.run_inputs import EvalItem
from indextts.evaluation.speaker import cosine_similarity, load_speaker_encoder

ANY_LANGUAGE = "*"
LANGUAGES = ("en", "zh")
"""The languages eval rows have (``metrics.language_of``): the keys an ASR route may name, besides "*"."""
MIN_SCORED_SECONDS = 0.05
"""Clips shorter than this (a synthesis that produced no codes) count as silence: all words deleted, no SIM."""


def check_asr_routes(asr: dict[str, str]) -> None:
    """Refuse route keys that no eval row can have (a typo would leave that language unscored)."""
    unknown = sorted(set(asr) - {ANY_LANGUAGE, *LANGUAGES})
    if unknown:
        raise EvaluationError(
            f"--asr names the language(s) {', '.join(repr(key) for key in unknown)}, but eval rows are "
            f"{' or '.join(LANGUAGES)} (mixed Chinese-English text is zh). Write en=SPEC, zh=SPEC, or a bare "
            "SPEC for every language.")


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Float32 samples (S,) or (S, C) and the sample rate of a recording."""
    try:
        samples, sample_rate = sf.read(str(path), dtype="float32")
    except (OSError, RuntimeError, sf.LibsndfileError) as error:
        raise AudioError(f"Cannot read the recording {path}: {error}. Restore the file or leave it out.") from error
    return samples, int(sample_rate)


def resolve_auto_routes(asr: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Routes with every ``auto[:<whisper>]`` spec replaced per language by the backend
    ``indextts.asr.choice`` picks; returns (routes, language -> why it has no backend here)."""
    routes, unavailable = {}, {}
    for key, spec in asr.items():
        if spec.partition(":")[0] != AUTO:
            routes[key] = spec
            continue
        for language in LANGUAGES if key == ANY_LANGUAGE else (key,):
            if language in asr and key == ANY_LANGUAGE:
                continue  # the language's own route wins over "*"
            try:
                routes[language] = choose_asr(spec, language).specs[0]
            except ASRError as error:
                unavailable[language] = f"{language}: {error} SIM only"
    return routes, unavailable


class Scorer:
    """ASR backends by language, one speaker encoder, and each speaker's reference embedding.

    Args:
        asr: language ("en", "zh") or "*" -> ASR spec (see ``load_asr``); a language without a
            backend (and no "*"), or whose "*" backend does not recognise it, is not transcribed:
            its rows carry SIM only and say why in ``asr_skipped``.
        sim: speaker encoder spec (see ``load_speaker_encoder``).
        references: speaker -> the real recording SIM is measured against.
    """

    def __init__(self, asr: dict[str, str], sim: str, references: dict[str, Path], device: str = "cpu"):
        asr, self.unavailable = resolve_auto_routes(asr)
        backends = {spec: load_asr(spec, device) for spec in dict.fromkeys(asr.values())}
        self.routes: dict[str, ASRBackend] = {language: backends[spec] for language, spec in asr.items()}
        for language, backend in self.routes.items():
            if language != ANY_LANGUAGE and not _recognises(backend, language):
                raise EvaluationError(
                    f"--asr {language}={asr[language]}: this backend recognises {', '.join(sorted(backend.languages))} "
                    f"only, not {language}. Route {language} to a backend that knows it (e.g. whisper:<model>).")
        self.encoder = load_speaker_encoder(sim, device)
        self.reference_embeddings = {speaker: self.encoder.embed(*read_audio(path))
                                     for speaker, path in references.items()}

    def backend_for(self, language: str) -> ASRBackend | None:
        """The backend that transcribes ``language``; None when no route covers it or it does not know it."""
        backend = self.routes.get(language) or self.routes.get(ANY_LANGUAGE)
        return backend if backend is not None and _recognises(backend, language) else None

    def skip_reason(self, language: str) -> str | None:
        """Why rows in ``language`` get no transcript (None: they get one)."""
        if self.backend_for(language) is not None:
            return None
        if language in self.unavailable:
            return self.unavailable[language]
        backend = self.routes.get(ANY_LANGUAGE)
        if backend is None:
            return f"{language}: no ASR backend (--asr {language}=SPEC), SIM only"
        return f"{language}: {backend.name} recognises {', '.join(sorted(backend.languages))} only, SIM only"

    def score(self, item: EvalItem, audio: np.ndarray, sample_rate: int) -> dict:
        """Row fields for one clip: transcript, edit counts per script (``errors_mixed`` ...) and ``sim``.

        The clip, at any rate (24 kHz from IndexTTS 1.x, 22.05 kHz from IndexTTS-2/2.5, a recording's
        own), is resampled once to the 16 kHz mono that ASR and the speaker encoder both take.
        """
        backend = self.backend_for(item.language)
        silent = len(audio) < MIN_SCORED_SECONDS * sample_rate
        if not silent:
            audio, sample_rate = to_mono_16k(audio, sample_rate), ASR_SAMPLE_RATE
        fields: dict = {"asr": None if backend is None else backend.name, "transcript": None,
                        "asr_confidence": None, "asr_skipped": self.skip_reason(item.language), "sim": None}
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


def _recognises(backend: ASRBackend, language: str) -> bool:
    return backend.languages is None or language in backend.languages
