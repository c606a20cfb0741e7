"""BigVGAN generator with ECAPA-TDNN: release structure, weight-norm layout, golden waveforms."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from indextts.bigvgan import BigVGAN, fold_weight_norm
from indextts.bigvgan.activations import kaiser_sinc_filter
from indextts.checkpoints import load_bigvgan
from indextts.config import load_config

from helpers import RELEASES, conformance_folders

MODEL_GOLDENS = conformance_folders("expected.safetensors")


@pytest.mark.parametrize("release", RELEASES)
def test_meta_model_matches_release_manifest(release, release_manifest):
    """Names and shapes as stored, i.e. with weight_g / weight_v before folding."""
    manifest = release_manifest[release]
    with torch.device("meta"):
        model = BigVGAN(manifest["config"]["bigvgan"])
    stored = {k: list(v.shape) for k, v in model.stored_state_dict().items()}
    assert stored == manifest["bigvgan_generator.pth"]


@pytest.mark.parametrize("folder", MODEL_GOLDENS, ids=[p.name for p in MODEL_GOLDENS])
def test_waveform_matches_golden(folder):
    expected = load_file(folder / "expected.safetensors")
    vocoder = load_bigvgan(folder)
    index = 0
    while f"latent_{index}" in expected:
        latent, mel = expected[f"latent_{index}"], expected[f"mel_{index}"]
        with torch.no_grad():
            wav = vocoder(latent.unsqueeze(0), mel.t().unsqueeze(0))
        assert wav.shape == (1, 1, expected[f"wav_{index}"].shape[0])
        torch.testing.assert_close(wav[0, 0], expected[f"wav_{index}"], atol=1e-3, rtol=1e-4)
        index += 1
    assert index > 0


@pytest.mark.parametrize("folder", MODEL_GOLDENS, ids=[p.name for p in MODEL_GOLDENS])
def test_stored_filters_equal_computed_ones(folder):
    """The anti-aliasing filters in the checkpoint are the Kaiser-sinc filters we compute."""
    stored = torch.load(folder / "bigvgan_generator.pth", weights_only=True)["generator"]
    computed = kaiser_sinc_filter(0.25, 0.3, 12)
    torch.testing.assert_close(stored["activation_post.upsample.filter"], computed)
    torch.testing.assert_close(stored["activation_post.downsample.lowpass.filter"], computed)


def test_weight_norm_round_trip(tiny_model_dir):
    vocoder = load_bigvgan(tiny_model_dir)
    stored = vocoder.stored_state_dict()
    assert "conv_pre.weight_g" in stored and "conv_pre.weight" not in stored
    folded = fold_weight_norm(stored, vocoder.weight_norm_modules())
    for name, tensor in vocoder.state_dict().items():
        torch.testing.assert_close(folded[name], tensor)


def test_precomputed_speaker_embedding_and_batch(tiny_model_dir):
    vocoder = load_bigvgan(tiny_model_dir)
    cfg = load_config(tiny_model_dir)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 5, cfg.gpt.model_dim, generator=generator)
    reference = torch.randn(1, 60, 100, generator=generator) - 4
    with torch.no_grad():
        wav = vocoder(latents, reference)
        embedding = vocoder.embed_speaker(reference)
        again = vocoder(latents[1:], speaker_embedding=embedding)
    assert wav.shape == (2, 1, 5 * 1024)
    assert wav.abs().max() <= 1.0
    torch.testing.assert_close(again[0], wav[1])
