"""CAMPPlus and its Kaldi filter-bank features: structure, pinned torchaudio values, strict loading, goldens."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from indextts.errors import AudioError, CheckpointError
from indextts.v2.campplus import CAMPPlus, CAMPPlusDims, campplus_features, load_campplus
from indextts.v2.fbank import kaldi_fbank

from helpers import v2_golden_folders, v2_manifest

GOLDENS = v2_golden_folders()
FLOAT_TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}
SMALL = CAMPPlusDims(embedding_size=12, growth_rate=4, bn_size=2, init_channels=8)


def test_meta_build_matches_release_manifest():
    with torch.device("meta"):
        model = CAMPPlus(CAMPPlusDims())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == v2_manifest()["IndexTTS-2"]["campplus"]


def test_dims_default_to_the_release_and_read_the_campplus_section():
    assert CAMPPlusDims.from_config(OmegaConf.create({"version": 2.0})) == CAMPPlusDims(feat_dim=80, embedding_size=192)
    section = OmegaConf.create({"campplus": {"growth_rate": 4, "bn_size": 2, "init_channels": 8, "embedding_size": 12}})
    assert CAMPPlusDims.from_config(section) == SMALL


def test_fbank_pinned_values():
    """Values computed once with torchaudio 2.9.1 ``kaldi.fbank(y, num_mel_bins=80, dither=0,
    sample_frequency=16000)`` for this two-tone signal, pinned on purpose (frames 0 and 7, bins 0, 14, 25, 52)."""
    t = torch.arange(1600, dtype=torch.float64) / 16000
    audio = (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.1 * torch.sin(2 * math.pi * 3000 * t)).float()
    fbank = kaldi_fbank(audio)
    assert fbank.shape == (8, 80)
    pinned = torch.tensor([[-12.57514, 3.38577, -12.84521, 5.23042], [-11.62316, 3.38581, -13.14605, 5.23042]])
    torch.testing.assert_close(fbank[[0, 7]][:, [0, 14, 25, 52]], pinned, atol=1e-4, rtol=0)


def test_features_are_mean_normalised_and_short_audio_is_refused():
    audio = torch.randn(16000, generator=torch.Generator().manual_seed(0)) * 0.1
    features = campplus_features(audio)
    assert features.shape == (98, 80)  # 1 + (16000 - 400) // 160 frames
    torch.testing.assert_close(features.mean(dim=0), torch.zeros(80), atol=1e-5, rtol=0)
    with pytest.raises(AudioError, match="shorter than one 400-sample"):
        campplus_features(audio[:399])


def test_strict_round_trip_and_refusals(tmp_path):
    torch.manual_seed(0)
    model = CAMPPlus(SMALL).eval()
    torch.save(model.state_dict(), tmp_path / "campplus_cn_common.bin")
    loaded = load_campplus(tmp_path / "campplus_cn_common.bin", SMALL)
    features = torch.randn(2, 130, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(features), model(features))
    with pytest.raises(CheckpointError, match="tensors with another shape"):
        load_campplus(tmp_path / "campplus_cn_common.bin")
    with pytest.raises(CheckpointError, match="funasr/campplus.*indextts download 2"):
        load_campplus(tmp_path / "hf_cache" / "campplus_cn_common.bin")


def test_masking_gate_uses_utterance_and_100_frame_segment_means():
    """Over several segments (the last one partial) the gate equals its definition written frame by frame."""
    torch.manual_seed(2)
    layer = CAMPPlus(SMALL).xvector.block1.tdnnd1.cam_layer.eval()
    x = torch.randn(1, SMALL.bn_size * SMALL.growth_rate, 250)
    segment_means = torch.stack([x[..., (t // 100) * 100:min((t // 100 + 1) * 100, 250)].mean(-1)
                                 for t in range(250)], dim=-1)
    context = x.mean(-1, keepdim=True) + segment_means
    gate = torch.sigmoid(layer.linear2(torch.relu(layer.linear1(context))))
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer.linear_local(x) * gate)


@pytest.mark.parametrize("folder", GOLDENS, ids=[p.name for p in GOLDENS])
def test_golden_fbank_and_style(folder):
    config = OmegaConf.load(folder / "config.yaml")
    expected = load_file(folder / "expected.safetensors")
    model = load_campplus(folder / "hf_cache" / "campplus_cn_common.bin", CAMPPlusDims.from_config(config))
    index = 0
    while f"audio16k_{index}" in expected:
        features = campplus_features(expected[f"audio16k_{index}"])
        torch.testing.assert_close(features, expected[f"fbank_{index}"], **FLOAT_TOLERANCE)
        with torch.no_grad():
            style = model(expected[f"fbank_{index}"][None])[0]
        torch.testing.assert_close(style, expected[f"style_{index}"], **FLOAT_TOLERANCE)
        index += 1
    assert index > 0
