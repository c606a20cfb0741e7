"""BigVGAN generator with ECAPA-TDNN: release structure, weight-norm layout, golden waveforms."""

from __future__ import annotations

import sys

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from indextts.bigvgan import BigVGAN, fold_weight_norm
from indextts.bigvgan.activations import ACTIVATIONS, Activation1d, kaiser_sinc_filter, polyphase_activation
from indextts.checkpoint_folder import CheckpointFolder
from indextts.config import load_config
from indextts.dims import BigVGANDims
from indextts.errors import ConfigError
from indextts.tiny import TINY_MODEL_CONFIG

from helpers import RELEASES, REPO_ROOT, conformance_folders

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_vocoder  # noqa: E402  (a script module beside the benchmarks, not a package)

MODEL_GOLDENS = conformance_folders("expected.safetensors")


@pytest.mark.parametrize("release", RELEASES)
def test_meta_model_matches_release_manifest(release, release_manifest):
    """Names and shapes as stored, i.e. with weight_g / weight_v before folding."""
    manifest = release_manifest[release]
    with torch.device("meta"):
        model = BigVGAN(BigVGANDims.from_config(manifest["config"]))
    stored = {k: list(v.shape) for k, v in model.stored_state_dict().items()}
    assert stored == manifest["bigvgan_generator.pth"]


@pytest.mark.parametrize("folder", MODEL_GOLDENS, ids=[p.name for p in MODEL_GOLDENS])
def test_waveform_matches_golden(folder):
    expected = load_file(folder / "expected.safetensors")
    vocoder = CheckpointFolder(folder).load_bigvgan()
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
    vocoder = CheckpointFolder(tiny_model_dir).load_bigvgan()
    stored = vocoder.stored_state_dict()
    assert "conv_pre.weight_g" in stored and "conv_pre.weight" not in stored
    folded = fold_weight_norm(stored, vocoder.weight_norm_modules())
    for name, tensor in vocoder.state_dict().items():
        torch.testing.assert_close(folded[name], tensor)


def test_precomputed_speaker_embedding_and_batch(tiny_model_dir):
    vocoder = CheckpointFolder(tiny_model_dir).load_bigvgan()
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


def _tiny_cfg():
    return OmegaConf.create(TINY_MODEL_CONFIG)


def _random_activations(vocoder: BigVGAN, seed: int) -> BigVGAN:
    """Random log alpha / log beta per activation (a fresh model has them all zero, hiding their order)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in vocoder.named_parameters():
            if name.endswith(("alpha", "beta")):
                tensor.copy_(0.3 * torch.randn(tensor.shape, generator=generator))
    return vocoder.eval()


@pytest.mark.skipif(not bench_vocoder.reference_available(),
                    reason=f"the reference BigVGAN is not under {bench_vocoder.REFERENCE_ROOT} (INDEXTTS_REFERENCE)")
def test_exact_mode_equals_reference_bit_for_bit():
    """Random weights, random activation parameters: ours in exact mode is the reference, bit for bit."""
    reference, ours = bench_vocoder.matched_vocoders(_tiny_cfg())
    generator = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 9, 64, generator=generator)
    mel = torch.randn(2, 80, 100, generator=generator) - 4
    with torch.inference_mode():
        assert torch.equal(ours(latents, mel), reference(latents, mel)[0])


@pytest.mark.parametrize("activation", ["snake", "snakebeta"])
def test_polyphase_activation_matches_exact_activation(activation):
    """The uncompiled polyphase form computes the reference's filters: >= 100 dB, edges included."""
    module = Activation1d(ACTIVATIONS[activation](8))
    with torch.no_grad():
        for parameter in module.act.parameters():
            parameter.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(4))
    x = torch.randn(2, 8, 37, generator=torch.Generator().manual_seed(5))
    alpha, gain = module.act.frequency_and_gain()
    with torch.no_grad():
        fused = polyphase_activation(x, module.upsample.filter.view(-1), module.downsample.lowpass.filter.view(-1),
                                     alpha, gain)
        exact = module(x)
    assert bench_vocoder.snr_db(exact, fused) >= 100


def test_fused_mode_snr_is_at_least_60_db_and_modes_switch_back():
    """The compiled fused mode against exact on random weights; exact again afterwards is bit for bit."""
    torch.manual_seed(6)
    vocoder = _random_activations(BigVGAN(BigVGANDims.from_config(_tiny_cfg())), seed=7)
    generator = torch.Generator().manual_seed(8)
    latents, mel = torch.randn(1, 12, 64, generator=generator), torch.randn(1, 60, 100, generator=generator) - 4
    with torch.inference_mode():
        exact = vocoder(latents, mel)
        vocoder.set_activation_mode("fused")
        fused = vocoder(latents, mel)
        vocoder.set_activation_mode("exact")
        again = vocoder(latents, mel)
    assert not torch.equal(fused, exact)  # the fused path really ran
    assert bench_vocoder.snr_db(exact, fused) >= 60
    assert torch.equal(again, exact)


def test_unknown_activation_mode_is_a_config_error():
    with torch.device("meta"):
        vocoder = BigVGAN(BigVGANDims.from_config(_tiny_cfg()))
    with pytest.raises(ConfigError, match="activation mode 'fast'"):
        vocoder.set_activation_mode("fast")
