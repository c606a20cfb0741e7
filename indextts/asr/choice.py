"""Which ASR backend transcribes a recording: ``auto`` picks one that knows its language.

``--asr auto[:<whisper>]`` (the default of ``indextts-prepare`` and ``indextts voice build``) decides from the
language (``--language``, or Whisper's language id per clip) and what this machine has:

=============  ==============================================================================
language       backend
=============  ==============================================================================
``en``         Whisper when available, else PocketSphinx (offline, its model ships in the wheel)
``zh``         Paraformer when FunASR is installed, else Whisper, else refused
other          Whisper, else refused
not given      Whisper detects each clip's language (Chinese clips go to Paraformer when
               FunASR is installed), else refused: PocketSphinx cannot tell the language
=============  ==============================================================================

Whisper (``<whisper>``, a folder or hub id, by default ``DEFAULT_WHISPER_MODEL``) is available
when it is a folder, is in the hub cache, or the hub can be reached to download it once. PocketSphinx never hears non-English speech: naming it with another
``--language`` is refused as well. The choice is made before any clip is cut, and a refusal names
what to install.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import numpy as np

from indextts.asr.backends import (
    DEFAULT_WHISPER_MODEL,
    ASRBackend,
    ASRError,
    Transcript,
    WhisperASR,
    load_asr,
)
from indextts.errors import extra_install_command
from indextts.hub import model_available

logger = logging.getLogger(__name__)

AUTO = "auto"
CHINESE = "zh"
ENGLISH = "en"


def whisper_available(source: str) -> bool:
    """Whether the Whisper ``source`` (a folder or a hub id) can be loaded here, without loading it."""
    return importlib.util.find_spec("transformers") is not None and model_available(source)


def paraformer_installed() -> bool:
    """Whether FunASR (the Paraformer backend) is installed."""
    return importlib.util.find_spec("funasr") is not None


@dataclass(frozen=True)
class ASRChoice:
    """The backend specs to load (one, or Whisper then Paraformer for routed Chinese) and why."""

    specs: tuple[str, ...]
    reason: str

    def load(self, device: str) -> ASRBackend:
        backends = [load_asr(spec, device) for spec in self.specs]
        return backends[0] if len(backends) == 1 else LanguageRouter(*backends)


class LanguageRouter:
    """Whisper detects each clip's language; Chinese clips go to the Chinese backend, others to Whisper."""

    languages = None

    def __init__(self, whisper: WhisperASR, chinese: ASRBackend) -> None:
        self.whisper = whisper
        self.chinese = chinese
        self.name = f"{whisper.name} + {chinese.name} for {CHINESE}"
        self.low_confidence = whisper.low_confidence

    def transcribe(self, audio: np.ndarray, sample_rate: int, language: str | None = None) -> Transcript:
        language = language or self.whisper.language_of(audio, sample_rate)
        backend = self.chinese if language == CHINESE else self.whisper
        return backend.transcribe(audio, sample_rate, language)


def _no_backend(language: str | None, whisper_model: str) -> ASRError:
    whisper = (f"make Whisper available (run once with network so that {whisper_model} reaches the hub cache, "
               "or pass --asr auto:<folder of a Whisper model>)")
    if language is None:
        return ASRError(
            "The language of the recordings is unknown and cannot be detected here: language detection needs "
            f"Whisper, which is not available ({whisper_model} is not in the hub cache and the hub cannot be "
            "reached). For English speech pass --language en (offline PocketSphinx); "
            f"otherwise {whisper}."
        )
    chinese = (f"install Paraformer with {extra_install_command('paraformer')} or "
               if language == CHINESE else "")
    return ASRError(
        f"No ASR backend for language '{language}' is available here: PocketSphinx hears English only, and "
        f"Whisper is not available. To transcribe '{language}' speech, {chinese}{whisper}."
    )


def _refuse_pocketsphinx(language: str) -> ASRError:
    chinese = f"--asr paraformer ({extra_install_command('paraformer')}) or " if language == CHINESE else ""
    return ASRError(
        f"PocketSphinx recognises English only, but the speech is in '{language}' (--language). "
        f"Use {chinese}--asr whisper:<model> (e.g. {DEFAULT_WHISPER_MODEL}), or --asr auto to pick one."
    )


def choose_asr(spec: str, language: str | None) -> ASRChoice:
    """The backend for ``spec`` (``auto[:<whisper>]`` or an explicit spec) on speech in ``language``
    (None: unknown)."""
    kind, _, whisper_model = spec.partition(":")
    if kind != AUTO:
        if spec == "pocketsphinx" and language not in (None, ENGLISH):
            raise _refuse_pocketsphinx(language)
        return ASRChoice((spec,), "as given with --asr")
    whisper_model = whisper_model or DEFAULT_WHISPER_MODEL
    whisper = f"whisper:{whisper_model}"
    if language == CHINESE and paraformer_installed():
        return ASRChoice(("paraformer",), "Paraformer for Chinese (FunASR is installed)")
    if whisper_available(whisper_model):
        if language is None and paraformer_installed():
            return ASRChoice((whisper, "paraformer"), "Whisper detects each clip's language; Paraformer for Chinese")
        detail = "detects each clip's language" if language is None else f"for '{language}'"
        return ASRChoice((whisper,), f"Whisper {detail}")
    if language == ENGLISH:
        return ASRChoice(("pocketsphinx",), "PocketSphinx for English (Whisper is not available here)")
    raise _no_backend(language, whisper_model)
