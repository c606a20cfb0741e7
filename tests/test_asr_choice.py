"""``--asr auto``: a backend that knows the language, never PocketSphinx on speech that is not English."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import write_tiny_whisper

from indextts.asr import choice
from indextts.asr.backends import DEFAULT_WHISPER_MODEL, ASRError, Transcript
from indextts.asr.choice import LanguageRouter, choose_asr, whisper_available

WHISPER = f"whisper:{DEFAULT_WHISPER_MODEL}"


@pytest.fixture
def machine(monkeypatch):
    """Set what this machine has: ``machine(whisper=..., paraformer=...)``."""
    def have(whisper: bool, paraformer: bool) -> None:
        monkeypatch.setattr(choice, "whisper_available", lambda source: whisper)
        monkeypatch.setattr(choice, "paraformer_installed", lambda: paraformer)
    return have


@pytest.mark.parametrize("language, whisper, paraformer, specs", [
    ("en", False, False, ("pocketsphinx",)),
    ("en", True, False, (WHISPER,)),
    ("zh", False, True, ("paraformer",)),
    ("zh", True, True, ("paraformer",)),
    ("zh", True, False, (WHISPER,)),
    ("fr", True, False, (WHISPER,)),
    (None, True, False, (WHISPER,)),
    (None, True, True, (WHISPER, "paraformer")),
])
def test_auto_picks_a_backend_that_knows_the_language(machine, language, whisper, paraformer, specs):
    machine(whisper, paraformer)
    assert choose_asr("auto", language).specs == specs


@pytest.mark.parametrize("language, expected", [
    ("zh", r"No ASR backend for language 'zh'.*install Paraformer.*\[paraformer\].*Whisper"),
    ("fr", r"No ASR backend for language 'fr'.*PocketSphinx hears English only.*Whisper"),
    (None, r"language of the recordings is unknown.*--language en"),
])
def test_auto_refuses_when_nothing_here_knows_the_language(machine, language, expected):
    machine(False, False)
    with pytest.raises(ASRError, match=expected):
        choose_asr("auto", language)


def test_pocketsphinx_is_never_chosen_for_other_languages(machine):
    machine(False, False)
    with pytest.raises(ASRError, match=r"PocketSphinx recognises English only.*'zh'.*--asr paraformer"):
        choose_asr("pocketsphinx", "zh")
    assert choose_asr("pocketsphinx", "en").specs == ("pocketsphinx",)
    assert choose_asr("whisper:/models/w", "zh").specs == ("whisper:/models/w",)


def test_auto_with_a_named_whisper_uses_that_model(tmp_path, machine):
    machine(True, False)
    assert choose_asr(f"auto:{tmp_path}", "de").specs == (f"whisper:{tmp_path}",)


def test_whisper_is_available_from_a_folder_or_the_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    assert whisper_available(str(tmp_path))
    assert not whisper_available(str(tmp_path / "absent"))
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not whisper_available("openai/whisper-tiny")
    snapshot = cache / "models--openai--whisper-tiny" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (cache / "models--openai--whisper-tiny" / "refs").mkdir()
    (cache / "models--openai--whisper-tiny" / "refs" / "main").write_text("0123abcd")
    assert whisper_available("openai/whisper-tiny")


class _Heard:
    """A stand-in backend that says which backend heard the clip and in which language."""

    def __init__(self, name: str, detected: str = "en") -> None:
        self.name, self.detected, self.low_confidence = name, detected, 0.5

    def language_of(self, audio, sample_rate) -> str:
        return self.detected

    def transcribe(self, audio, sample_rate, language=None) -> Transcript:
        return Transcript(self.name, 0.9, language)


@pytest.mark.parametrize("detected, forced, heard_by, language", [
    ("zh", None, "paraformer", "zh"), ("en", None, "whisper", "en"), ("en", "zh", "paraformer", "zh")])
def test_router_sends_chinese_clips_to_the_chinese_backend(detected, forced, heard_by, language):
    router = LanguageRouter(_Heard("whisper", detected), _Heard("paraformer"))
    heard = router.transcribe(np.zeros(1600, np.float32), 16000, forced)
    assert (heard.text, heard.language) == (heard_by, language)


def test_auto_with_a_tiny_whisper_detects_each_clips_language(tmp_path, machine):
    """Plumbing with a tiny random Whisper (not a real model): the loaded choice detects, then decodes."""
    machine(True, False)
    folder = write_tiny_whisper(tmp_path / "whisper")
    backend = choose_asr(f"auto:{folder}", None).load("cpu")
    clip = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    assert backend.transcribe(clip, 16000).language in ("en", "zh")
    assert backend.low_confidence == 0.5


def test_eval_auto_routes_each_language_and_leaves_unknown_ones_to_sim_only(machine):
    from indextts.evaluation.scoring import resolve_auto_routes

    machine(False, False)
    routes, unavailable = resolve_auto_routes({"*": "auto"})
    assert routes == {"en": "pocketsphinx"} and list(unavailable) == ["zh"]
    assert unavailable["zh"].startswith("zh: No ASR backend for language 'zh'") and unavailable["zh"].endswith("SIM only")
    machine(True, False)
    assert resolve_auto_routes({"*": "auto", "zh": "paraformer"}) == ({"en": WHISPER, "zh": "paraformer"}, {})
