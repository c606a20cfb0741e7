"""Audio loading and the log-mel features (checked against the conformance goldens)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file

from indextts.audio import MelSpectrogramFeatures, load_audio
from indextts.config import load_config
from indextts.errors import AudioError

from helpers import conformance_folders

MODEL_GOLDENS = conformance_folders("expected.safetensors")


@pytest.mark.parametrize("folder", MODEL_GOLDENS, ids=[p.name for p in MODEL_GOLDENS])
def test_log_mel_matches_golden(folder):
    expected = load_file(folder / "expected.safetensors")
    features = MelSpectrogramFeatures.from_config(load_config(folder).dataset.mel)
    index = 0
    while f"audio_{index}" in expected:
        mel = features(expected[f"audio_{index}"])
        assert mel.shape == (1, *expected[f"mel_{index}"].shape)
        torch.testing.assert_close(mel[0], expected[f"mel_{index}"], atol=1e-4, rtol=1e-4)
        index += 1
    assert index > 0


def test_log_mel_batch_equals_single_rows():
    audio = torch.randn(2, 24000).clamp(-1, 1)
    features = MelSpectrogramFeatures()
    batch = features(audio)
    assert batch.shape == (2, 100, 24000 // 256 + 1)
    torch.testing.assert_close(batch[1], features(audio[1])[0])


def test_load_audio_downmixes_resamples_and_clips(tmp_path):
    seconds, rate = 0.5, 16000
    time = np.arange(int(seconds * rate)) / rate
    left = 1.5 * np.sin(2 * np.pi * 220 * time)
    right = np.zeros_like(left)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), rate, subtype="FLOAT")
    audio = load_audio(path)
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert abs(audio.shape[0] - int(seconds * 24000)) <= 1
    assert audio.abs().max() <= 1.0
    assert audio.abs().max() > 0.7  # the mono mix of a 1.5 sine and silence peaks near 0.75


def test_load_audio_keeps_24k_mono_samples(tmp_path):
    samples = (0.5 * np.sin(np.linspace(0, 100, 4800))).astype(np.float32)
    path = tmp_path / "mono.wav"
    soundfile.write(path, samples, 24000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path).numpy(), samples, atol=1e-7)


def test_load_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        load_audio(tmp_path / "missing.wav")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEnot really audio")
    with pytest.raises(AudioError, match="Cannot read"):
        load_audio(broken)
