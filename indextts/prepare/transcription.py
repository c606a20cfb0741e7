"""Transcribe clips and check the transcripts with the project's text frontend.

The backend is chosen once per run (``indextts.asr.choice``: ``auto`` picks one that knows the
language) before any clip is cut. A transcript whose confidence is below the backend's own
``low_confidence`` is flagged ``low_confidence`` and stays out of the list unless approved.

The list keeps the transcript as the ASR wrote it (what was spoken). The frontend's normalised
form (numbers and symbols read out, as training will see it) is kept for review; a transcript the
frontend cannot speak, or one that is longer than the model's text limit, is flagged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from indextts.asr.backends import ASRBackend, ASRError
from indextts.asr.choice import ASRChoice, choose_asr
from indextts.errors import PrepareError, TextError
from indextts.text import TextNormalizer

logger = logging.getLogger(__name__)


class Flag:
    """Flags written to review.csv (several per clip, joined by ``;``)."""

    LOW_CONFIDENCE = "low_confidence"
    EMPTY_TRANSCRIPT = "empty_transcript"
    UNSPEAKABLE_TEXT = "unspeakable_text"
    TOO_MANY_TEXT_TOKENS = "too_many_text_tokens"
    LOW_SNR = "low_snr"
    CLIPPING = "clipping"
    PEAK_LIMITED = "peak_limited"

    DROPPING = (LOW_CONFIDENCE, EMPTY_TRANSCRIPT, UNSPEAKABLE_TEXT, TOO_MANY_TEXT_TOKENS)
    """Flags that keep a clip out of the audio list when doubtful clips are dropped."""


@dataclass(frozen=True)
class CheckedTranscript:
    text: str
    normalised: str
    confidence: float | None
    language: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class TextLimits:
    """Where the checks get their limits: the model family's ``text_counter`` (``.count(text).num_tokens``,
    the count extraction makes; None: not checked) and ``max_text_tokens`` from the model config."""

    text_counter: object | None
    max_text_tokens: int


class Transcriber:
    """One ASR backend plus the frontend checks; both are loaded on first use."""

    def __init__(self, asr_spec: str, device: str, language: str | None, limits: TextLimits) -> None:
        self.asr_spec = asr_spec
        self.device = device
        self.language = language
        self.limits = limits
        self._choice: ASRChoice | None = None
        self._asr: ASRBackend | None = None
        self._normalizer: TextNormalizer | None = None

    def choose(self) -> ASRChoice:
        """The backend for this run's spec and language (decided once; raises ASRError when none fits)."""
        if self._choice is None:
            try:
                self._choice = choose_asr(self.asr_spec, self.language)
            except ASRError as error:
                raise PrepareError(f"{error} Nothing was cut or written.") from error
            logger.info("ASR: %s (%s).", " + ".join(self._choice.specs), self._choice.reason)
        return self._choice

    def _load(self) -> None:
        if self._asr is None:
            self._asr = self.choose().load(self.device)
            self._normalizer = TextNormalizer()
            if self.limits.text_counter is None:
                logger.info("No model tokenizer given: transcripts are normalised but their token count is not checked.")

    def _text_flags(self, text: str) -> tuple[str, list[str]]:
        """The normalised text and the frontend's flags for ``text``."""
        if not text.strip():
            return "", [Flag.EMPTY_TRANSCRIPT]
        counter = self.limits.text_counter
        try:
            normalised = self._normalizer.normalize(text)
            too_long = counter is not None and counter.count(text).num_tokens > self.limits.max_text_tokens
        except TextError:
            return "", [Flag.UNSPEAKABLE_TEXT]
        return normalised, [Flag.TOO_MANY_TEXT_TOKENS] if too_long else []

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> CheckedTranscript:
        """Mono clip (S,) -> its transcript, normalised form, confidence and text flags."""
        self._load()
        transcript = self._asr.transcribe(audio, sample_rate, self.language)
        text = " ".join(transcript.text.split())
        normalised, flags = self._text_flags(text)
        bar = self._asr.low_confidence
        if text and bar is not None and transcript.confidence is not None and transcript.confidence < bar:
            flags.append(Flag.LOW_CONFIDENCE)
        return CheckedTranscript(text, normalised, transcript.confidence, transcript.language, tuple(flags))
