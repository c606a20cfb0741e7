"""Speech recognition backends behind one interface: ``load_asr(spec).transcribe(audio, rate)``.

Specs:

- ``whisper:<local path or hub id>``: transformers ``WhisperForConditionalGeneration`` with its
  ``WhisperProcessor``; the language is forced when given, else detected per clip. The confidence
  is the mean probability of the generated tokens.
- ``pocketsphinx``: CMU PocketSphinx with the en-us acoustic model, dictionary and language model
  shipped inside its wheel (offline, English only). The confidence is the mean word posterior.
- ``paraformer[:<model>]``: FunASR Paraformer (default ``paraformer-zh``), when ``funasr`` is
  installed. FunASR reports no confidence.

Every backend takes mono or multi-channel float audio at any sample rate and resamples it with
soxr to the 16 kHz its model expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soxr

from indextts.errors import IndexTTSError, extra_install_command
from indextts.hub import offline_and_missing, prepare_hub_source

ASR_SAMPLE_RATE = 16000
"""Whisper, PocketSphinx's en-us model and Paraformer all listen at 16 kHz."""

DEFAULT_PARAFORMER_MODEL = "paraformer-zh"
DEFAULT_WHISPER_MODEL = "openai/whisper-large-v3"
"""The Whisper that evaluation and ``--asr auto`` use unless told otherwise."""

_SPHINX_NON_WORDS = ("<", "[", "+")
"""Sentence marks (<s>, <sil>) and fillers ([NOISE], ++BREATH++) in PocketSphinx segmentations."""

SPECS_HELP = "'whisper:<local path or hub id>', 'pocketsphinx' or 'paraformer[:<model>]'"


class ASRError(IndexTTSError):
    """An ASR backend cannot be loaded or cannot transcribe the given audio."""


@dataclass(frozen=True)
class Transcript:
    """What a backend heard in one clip."""

    text: str
    """As recognised, in spoken form (no number or punctuation normalisation)."""
    confidence: float | None
    """In [0, 1] where the backend has one (Whisper: mean token probability)."""
    language: str | None
    """Forced or detected, ISO 639-1 ("en", "zh")."""


class ASRBackend(Protocol):
    """Anything that turns a clip of speech into a ``Transcript``."""

    name: str
    languages: frozenset[str] | None
    """The ISO 639-1 languages it recognises; None: any language."""
    low_confidence: float | None
    """Transcripts below this confidence are flagged as doubtful; None: the backend has no usable score."""

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        """``audio`` is float (S,) or (S, C) at ``sample_rate``; ``language`` forces ISO 639-1."""
        ...


def to_mono_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Float audio (S,) or (S, C) at ``sample_rate`` -> float32 mono (S',) at 16 kHz."""
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1 or samples.size == 0:
        raise ASRError(
            f"ASR needs a non-empty mono (S,) or multi-channel (S, C) waveform, got an array of shape "
            f"{np.shape(audio)}. Pass the samples of one clip."
        )
    if sample_rate != ASR_SAMPLE_RATE:
        samples = soxr.resample(samples, sample_rate, ASR_SAMPLE_RATE, quality="HQ")
    return np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)


def _missing_package(package: str, backend: str, error: ImportError) -> ASRError:
    return ASRError(
        f"The ASR backend '{backend}' needs the '{package}' package, which is not installed ({error}). "
        f"Install it with {extra_install_command('prepare')} (or `pip install {package}`), or choose another "
        f"backend: {SPECS_HELP}."
    )


def _unloadable_whisper(source: str, cause: str, network: str) -> ASRError:
    return ASRError(
        f"Cannot load the Whisper model '{source}': {cause}. {network}Pass a folder holding a Whisper model and "
        "its processor files (config.json, model weights, tokenizer and preprocessor_config.json), or a hub id "
        f"such as {DEFAULT_WHISPER_MODEL} on a machine that can download it once."
    )


class WhisperASR:
    """Whisper through transformers, from a local folder or a hub id (downloaded once by the hub)."""

    def __init__(self, source: str, device: str = "cpu") -> None:
        missing = offline_and_missing(source)
        if missing:
            raise _unloadable_whisper(source, "it is not on this machine", missing)
        try:
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor
        except ImportError as error:
            raise _missing_package("transformers", "whisper", error) from error
        self.name = f"whisper:{source}"
        self.languages = None
        # Mean token probability: clean read speech scores about 0.8-0.95; below one half the
        # transcript is usually a guess (hallucinated words, the wrong language).
        self.low_confidence = 0.5
        self._torch = torch
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        network = prepare_hub_source(source)
        try:
            self.processor = WhisperProcessor.from_pretrained(source)
            self.model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError) as error:
            raise _unloadable_whisper(source, str(error), network) from error
        self.model.to(device).eval()
        self.device = device
        # Half the decoder positions (224 for the released models): far more than a 30 s clip
        # holds, and leaves room for the start, language and task tokens.
        self._max_new_tokens = self.model.config.max_target_positions // 2
        self._language_codes = {
            token_id: token.strip("<|>")
            for token, token_id in (getattr(self.model.generation_config, "lang_to_id", None) or {}).items()
        }

    def _features(self, audio: np.ndarray, sample_rate: int):
        extracted = self.processor.feature_extractor(
            to_mono_16k(audio, sample_rate), sampling_rate=ASR_SAMPLE_RATE, return_tensors="pt"
        )
        return extracted.input_features.to(self.device, self.model.dtype)

    def _detect_language(self, features) -> str:
        if not self._language_codes:
            raise ASRError(
                f"The Whisper model {self.name} has no language tokens (generation_config.lang_to_id), "
                "so it cannot detect the language. Pass the language explicitly or use a multilingual "
                "Whisper checkpoint."
            )
        language_id = int(self.model.detect_language(features)[0])
        return self._language_codes[language_id]

    def language_of(self, audio: np.ndarray, sample_rate: int) -> str:
        """The ISO 639-1 language Whisper hears in one clip (S,) or (S, C)."""
        with self._torch.inference_mode():
            return self._detect_language(self._features(audio, sample_rate))

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        """Decode one clip (up to 30 s) greedily; the language is detected first when not given."""
        features = self._features(audio, sample_rate)
        with self._torch.inference_mode():
            language = language or self._detect_language(features)
            generated = self.model.generate(
                features, language=language, task="transcribe", max_new_tokens=self._max_new_tokens,
                return_dict_in_generate=True, output_scores=True,
            )
            token_log_probs = self.model.compute_transition_scores(
                generated.sequences, generated.scores, normalize_logits=True
            )
        confidence = float(token_log_probs[0].float().exp().mean()) if token_log_probs.numel() else None
        text = self.processor.tokenizer.decode(generated.sequences[0], skip_special_tokens=True).strip()
        return Transcript(text=text, confidence=confidence, language=language)


class PocketSphinxASR:
    """CMU PocketSphinx with the US English models inside its wheel; no download, English only.

    The confidence is the mean word posterior: the whole-sentence posterior is near 0 even for a
    perfect transcript, so it would flag every clip.
    """

    name = "pocketsphinx"
    languages = frozenset({"en"})
    # No bar: its mean word posterior does not rank transcripts. On the eSpeak demo speech, English
    # clips score 0.05-0.74 and Mandarin ones (heard as English gibberish) 0.2-0.47, so any bar would
    # drop clips at random. Use Whisper where a meaningful flag matters.
    low_confidence = None

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as error:
            raise _missing_package("pocketsphinx", "pocketsphinx", error) from error
        self._decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL")

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        """Decode one utterance; ``language`` must be None or "en" (the only model it ships)."""
        if language not in (None, "en"):
            raise ASRError(
                f"The pocketsphinx backend recognises English only, but language '{language}' was "
                "requested. Use a Whisper model (--asr whisper:<model>) or paraformer for other languages."
            )
        samples = to_mono_16k(audio, sample_rate)
        pcm = (samples * np.iinfo(np.int16).max).astype(np.int16)
        decoder = self._decoder
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        if hypothesis is None:
            return Transcript(text="", confidence=0.0, language="en")
        word_posteriors = [
            segment.prob for segment in decoder.seg() if not segment.word.startswith(_SPHINX_NON_WORDS)
        ]
        confidence = float(np.clip(np.mean(word_posteriors), 0.0, 1.0)) if word_posteriors else 0.0
        return Transcript(text=hypothesis.hypstr.strip(), confidence=confidence, language="en")


class ParaformerASR:
    """FunASR Paraformer (Mandarin by default), only when the optional ``funasr`` package is installed."""

    def __init__(self, model: str = DEFAULT_PARAFORMER_MODEL, device: str = "cpu") -> None:
        try:
            from funasr import AutoModel
        except ImportError as error:
            raise ASRError(
                f"The ASR backend 'paraformer' needs FunASR, which is not installed ({error}). Install it "
                f"with {extra_install_command('paraformer')} (or `pip install funasr`), or choose another "
                f"backend: {SPECS_HELP}."
            ) from error
        self.name = f"paraformer:{model}"
        self.languages = None  # depends on the model; paraformer-zh also hears the English in mixed text
        self.low_confidence = None
        self._model = AutoModel(model=model, device=device, disable_update=True)

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        """Decode one clip; the language is the model's ("zh" for paraformer-zh), never detected."""
        results = self._model.generate(input=to_mono_16k(audio, sample_rate), disable_pbar=True)
        text = str(results[0].get("text", "")).strip() if results else ""
        return Transcript(text=text, confidence=None, language=language or "zh")


def load_asr(spec: str, device: str = "cpu") -> ASRBackend:
    """Build the backend named by ``spec`` (see the module docstring) on ``device``."""
    kind, _, argument = spec.partition(":")
    if kind == "whisper" and argument:
        return WhisperASR(argument, device)
    if kind == "pocketsphinx" and not argument:
        return PocketSphinxASR()
    if kind == "paraformer":
        return ParaformerASR(argument or DEFAULT_PARAFORMER_MODEL, device)
    raise ASRError(
        f"Unknown ASR backend '{spec}'. Use {SPECS_HELP}, e.g. 'whisper:openai/whisper-large-v3' "
        "(needs the [prepare] or [eval] extra), 'pocketsphinx' (offline English, [prepare] extra)."
    )
