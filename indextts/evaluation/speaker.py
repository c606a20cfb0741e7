"""Speaker-verification backends behind one interface: ``load_speaker_encoder(spec).embed(audio, rate)``.

Specs:

- ``wavlm:<local path or hub id>``: transformers ``WavLMForXVector`` with its feature extractor,
  e.g. ``microsoft/wavlm-base-plus-sv``; the x-vector is the embedding.
- ``resemblyzer``: the GE2E speaker encoder whose weights ship inside the ``resemblyzer`` wheel
  (offline); it trims long silences with WebRTC VAD before embedding.
- ``auto``: ``wavlm:microsoft/wavlm-base-plus-sv`` when it is in the hub cache or the hub answers,
  else ``resemblyzer`` when installed (``choose_speaker_encoder``).

Every encoder takes mono or multi-channel float audio at any sample rate, resamples it with soxr
to 16 kHz and returns an L2-normalised (D,) float32 vector, so the speaker similarity (SIM) of two
clips is the dot product of their embeddings.
"""

from __future__ import annotations

import importlib.util
from typing import Protocol

import numpy as np

from indextts.errors import EvaluationError, extra_install_command
from indextts.asr.backends import ASR_SAMPLE_RATE, to_mono_16k
from indextts.hub import model_available, offline_and_missing, prepare_hub_source

SPECS_HELP = "'auto', 'wavlm:<local path or hub id>' or 'resemblyzer'"
AUTO = "auto"
DEFAULT_WAVLM_MODEL = "microsoft/wavlm-base-plus-sv"
MIN_SECONDS = 0.5
"""Shorter clips are zero-padded to this length: WavLM's x-vector layers need about 0.3 s of frames."""


class SpeakerEncoder(Protocol):
    """Anything that maps a clip of speech to a speaker embedding."""

    name: str

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """``audio`` float (S,) or (S, C) at ``sample_rate`` -> L2-normalised float32 (D,)."""
        ...


def cosine_similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Cosine of two (D,) embeddings (their dot product when both are L2-normalised)."""
    norms = float(np.linalg.norm(first) * np.linalg.norm(second))
    return float(np.dot(first, second) / norms) if norms else 0.0


def _normalised(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def _padded_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    samples = to_mono_16k(audio, sample_rate)
    shortfall = int(MIN_SECONDS * ASR_SAMPLE_RATE) - len(samples)
    return np.pad(samples, (0, shortfall)) if shortfall > 0 else samples


def _missing_package(package: str, backend: str, error: ImportError, install: str) -> EvaluationError:
    return EvaluationError(
        f"The speaker encoder '{backend}' needs the '{package}' package, which is not installed ({error}). "
        f"Install it with {install}, or choose another encoder: {SPECS_HELP}."
    )


def _unloadable_wavlm(source: str, cause: str, network: str) -> EvaluationError:
    return EvaluationError(
        f"Cannot load the WavLM speaker-verification model '{source}': {cause}. {network}Pass a folder holding "
        "a WavLMForXVector model and its preprocessor_config.json, or a hub id such as "
        f"{DEFAULT_WAVLM_MODEL} on a machine that can download it once."
    )


class WavLMSpeakerEncoder:
    """WavLM x-vectors through transformers, from a local folder or a hub id (downloaded once)."""

    def __init__(self, source: str, device: str = "cpu") -> None:
        missing = offline_and_missing(source)
        if missing:
            raise _unloadable_wavlm(source, "it is not on this machine", missing)
        import torch
        from transformers import AutoFeatureExtractor, WavLMForXVector

        self.name = f"wavlm:{source}"
        self._torch = torch
        network = prepare_hub_source(source)
        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(source)
            self.model = WavLMForXVector.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise _unloadable_wavlm(source, str(error), network) from error
        self.model.to(device).eval()
        self.device = device

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The x-vector (D,) of one clip, L2-normalised."""
        inputs = self.feature_extractor(_padded_16k(audio, sample_rate), sampling_rate=ASR_SAMPLE_RATE,
                                        return_tensors="pt")
        with self._torch.inference_mode():
            output = self.model(inputs.input_values.to(self.device))
        return _normalised(output.embeddings[0].float().cpu().numpy())


class ResemblyzerEncoder:
    """The GE2E encoder of ``resemblyzer`` (256-dim), weights inside its wheel; no download."""

    name = "resemblyzer"

    def __init__(self, device: str = "cpu") -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav
        except ImportError as error:
            raise _missing_package("resemblyzer", "resemblyzer", error,
                                   f"{extra_install_command('eval')} then `pip install --no-deps resemblyzer`") from error
        self._encoder = VoiceEncoder(device, verbose=False)
        self._preprocess = preprocess_wav

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """GE2E embedding (256,) of one clip after volume normalisation and silence trimming.

        When the voice activity detector leaves less than ``MIN_SECONDS`` (a very short or
        unvoiced clip), the untrimmed clip is embedded instead.
        """
        samples = _padded_16k(audio, sample_rate)
        trimmed = self._preprocess(samples)
        if len(trimmed) < MIN_SECONDS * ASR_SAMPLE_RATE:
            trimmed = samples
        return _normalised(self._encoder.embed_utterance(trimmed))


def choose_speaker_encoder(spec: str) -> str:
    """``spec`` itself, or for ``auto`` the encoder this machine can load (WavLM, else resemblyzer)."""
    if spec != AUTO:
        return spec
    if importlib.util.find_spec("transformers") is not None and model_available(DEFAULT_WAVLM_MODEL):
        return f"wavlm:{DEFAULT_WAVLM_MODEL}"
    if importlib.util.find_spec("resemblyzer") is not None:
        return "resemblyzer"
    raise EvaluationError(
        f"No speaker encoder is available here: {DEFAULT_WAVLM_MODEL} is not in the hub cache and the hub cannot "
        "be reached, and resemblyzer (the offline encoder) is not installed. Install it with `pip install --no-deps "
        "resemblyzer` (its other needs come with the [eval] extra), or run once with network so that WavLM is "
        "cached, or pass --sim wavlm:<folder of a WavLM x-vector model>."
    )


def load_speaker_encoder(spec: str, device: str = "cpu") -> SpeakerEncoder:
    """Build the encoder named by ``spec`` (see the module docstring) on ``device``."""
    kind, _, argument = choose_speaker_encoder(spec).partition(":")
    if kind == "wavlm" and argument:
        return WavLMSpeakerEncoder(argument, device)
    if kind == "resemblyzer" and not argument:
        return ResemblyzerEncoder(device)
    raise EvaluationError(
        f"Unknown speaker encoder '{spec}'. Use {SPECS_HELP}, e.g. 'wavlm:microsoft/wavlm-base-plus-sv' "
        "(downloads once from the hub) or 'resemblyzer' (offline, needs the [eval] extra and resemblyzer)."
    )
