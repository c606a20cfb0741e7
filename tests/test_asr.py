"""ASR backends: plumbing with a tiny random Whisper, and real offline recognition with pocketsphinx.

The pocketsphinx test proves the backend runs a real model on real speech (the demo's eSpeak
recordings); its WER measures eSpeak's intelligibility to a small 2015 model, not any IndexTTS output.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import soundfile as sf
from helpers import write_tiny_whisper

from demo_data import make_demo_dataset
from indextts.asr.backends import (
    ASR_SAMPLE_RATE,
    ASRError,
    Transcript,
    load_asr,
    to_mono_16k,
)


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    return load_asr(f"whisper:{write_tiny_whisper(tmp_path_factory.mktemp('whisper'))}")


def noise_clip(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.1, int(seconds * sample_rate)).astype(np.float32)


def test_tiny_whisper_plumbing_detects_or_forces_the_language(tiny_whisper):
    clip = noise_clip(2.0, 24000)
    detected = tiny_whisper.transcribe(clip, 24000)
    forced = tiny_whisper.transcribe(clip, 24000, language="zh")
    assert isinstance(detected, Transcript) and isinstance(detected.text, str)
    assert detected.language in ("en", "zh")
    assert forced.language == "zh"
    for transcript in (detected, forced):
        assert transcript.confidence is not None and 0.0 < transcript.confidence <= 1.0
    assert tiny_whisper.transcribe(clip, 24000, language="zh") == forced


def test_tiny_whisper_plumbing_takes_any_rate_and_channel_layout(tiny_whisper):
    mono = noise_clip(1.5, ASR_SAMPLE_RATE, seed=1)
    stereo_48k = np.repeat(np.interp(np.arange(mono.size * 3) / 3, np.arange(mono.size), mono)[:, None], 2, 1)
    assert tiny_whisper.transcribe(stereo_48k, 48000, language="en").language == "en"
    assert tiny_whisper.name.startswith("whisper:")


def test_to_mono_16k_resamples_and_averages_channels():
    stereo = np.stack([np.full(48000, 0.5), np.full(48000, -0.1)], axis=1)
    mono = to_mono_16k(stereo, 48000)
    assert mono.dtype == np.float32 and mono.shape == (16000,)
    assert abs(float(np.median(mono)) - 0.2) < 1e-3
    with pytest.raises(ASRError, match="non-empty"):
        to_mono_16k(np.zeros(0), 16000)


@pytest.mark.parametrize("spec", ["whisper", "vosk", "pocketsphinx:large", ""])
def test_unknown_spec_names_the_valid_ones(spec):
    with pytest.raises(ASRError, match="pocketsphinx"):
        load_asr(spec)


@pytest.mark.skipif(importlib.util.find_spec("funasr") is not None, reason="funasr is installed")
def test_paraformer_without_funasr_names_the_extra():
    """In a checkout (the suite runs in one) the hint is the editable form; tests/test_install.py checks a wheel's."""
    with pytest.raises(ASRError, match=r"pip install -e '\.\[paraformer\]'"):
        load_asr("paraformer")


def test_missing_whisper_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ASRError, match="Cannot load the Whisper model"):
        load_asr(f"whisper:{tmp_path / 'absent'}")


def test_pocketsphinx_refuses_other_languages():
    with pytest.raises(ASRError, match="English only"):
        load_asr("pocketsphinx").transcribe(np.zeros(16000, np.float32), 16000, language="zh")


def test_pocketsphinx_transcribes_english_demo_speech(tmp_path, record_property):
    """Real model, real (synthetic) speech: every English clip gets words; the WER is recorded."""
    import jiwer

    lists = make_demo_dataset(tmp_path, sentences_per_speaker=6, seed=0)
    asr = load_asr("pocketsphinx")
    references, hypotheses = [], []
    for list_path in lists:
        for line in list_path.read_text(encoding="utf-8").splitlines():
            audio_path, text = line.split("\t")
            if audio_path.endswith("_en.wav"):
                samples, rate = sf.read(list_path.parent / audio_path, dtype="float32")
                transcript = asr.transcribe(samples, rate)
                assert transcript.text and transcript.language == "en"
                assert 0.0 <= transcript.confidence <= 1.0
                references.append(text.lower().strip(".!?,"))
                hypotheses.append(transcript.text)
    wer = jiwer.wer(references, hypotheses)
    record_property("pocketsphinx_wer", wer)
    print(f"pocketsphinx WER on {len(references)} English demo clips: {wer:.3f}")
    assert len(references) >= 4 and np.isfinite(wer) and wer < 1.0
