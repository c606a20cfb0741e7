"""BigVGAN v2 (22.05 kHz, 80 bands): release structure, strict loading from the hub folder, goldens."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from indextts.bigvgan.activations import Activation1d
from indextts.errors import CheckpointError, ConfigError
from indextts.v2.vocoder import BigVGANv2, BigVGANv2Dims, load_bigvgan_v2

from helpers import v2_golden_folders, v2_manifest

GOLDENS = v2_golden_folders()
TINY_CONFIG = {"resblock": "1", "upsample_rates": [4, 2], "upsample_kernel_sizes": [8, 4],
               "upsample_initial_channel": 16,
               "resblock_kernel_sizes": [3, 5], "resblock_dilation_sizes": [[1, 3], [1, 3]], "activation": "snakebeta",
               "snake_logscale": True, "num_mels": 8, "sampling_rate": 22050, "use_tanh_at_final": False,
               "use_bias_at_final": False, "lambda_melloss": 15}


def write_tiny_folder(folder, seed: int = 0) -> BigVGANv2:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY_CONFIG))
    torch.manual_seed(seed)
    model = BigVGANv2(BigVGANv2Dims.from_section(TINY_CONFIG)).eval()
    torch.save({"generator": model.stored_state_dict()}, folder / "bigvgan_generator.pt")
    return model


def test_meta_build_matches_release_manifest():
    manifest = v2_manifest()["IndexTTS-2"]
    with torch.device("meta"):
        model = BigVGANv2(BigVGANv2Dims.from_section(manifest["bigvgan_config"]))
    assert {k: list(v.shape) for k, v in model.stored_state_dict().items()} == manifest["bigvgan"]


def test_strict_round_trip_and_clamped_output(tmp_path):
    model = write_tiny_folder(tmp_path / "bigvgan")
    loaded = load_bigvgan_v2(tmp_path / "bigvgan")
    assert loaded.conv_post.bias is None
    mel = torch.randn(1, 8, 6, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), model(mel))
        loaded.conv_post.weight.mul_(3.0 / loaded(mel).abs().max())  # drive part of the output past [-1, 1]
        clamped = loaded(mel)
        loaded.use_tanh_at_final = True
        squashed = loaded(mel)
    assert clamped.shape == (1, 1, 6 * 8)
    inside, outside = clamped.abs() < 1, clamped.abs() == 1
    assert inside.any() and outside.any()  # the release (use_tanh_at_final: false) clamps instead of tanh
    torch.testing.assert_close(squashed[inside], torch.tanh(clamped[inside]))
    assert (squashed[outside].abs() > torch.tanh(torch.tensor(1.0))).all()


def test_refusals_name_the_file_and_where_it_comes_from(tmp_path):
    write_tiny_folder(tmp_path / "bigvgan")
    changed = dict(TINY_CONFIG, upsample_initial_channel=32)
    (tmp_path / "bigvgan" / "config.json").write_text(json.dumps(changed))
    with pytest.raises(CheckpointError, match="does not fit .*config.json: .*another shape"):
        load_bigvgan_v2(tmp_path / "bigvgan")
    with pytest.raises(CheckpointError, match="nvidia/bigvgan_v2_22khz_80band_256x.*indextts download 2"):
        load_bigvgan_v2(tmp_path / "absent")
    (tmp_path / "bigvgan" / "config.json").write_text(json.dumps({"resblock": "1"}))
    with pytest.raises(ConfigError, match="not a complete BigVGAN config.json"):
        load_bigvgan_v2(tmp_path / "bigvgan")


@pytest.mark.parametrize("folder", GOLDENS, ids=[p.name for p in GOLDENS])
def test_golden_waveform(folder):
    expected = load_file(folder / "expected.safetensors")
    vocoder = load_bigvgan_v2(folder / "hf_cache" / "bigvgan")
    with torch.no_grad():
        wav = vocoder(expected["vocoder_mel"][None])[0, 0]
    torch.testing.assert_close(wav, expected["vocoder_wav"], atol=1e-3, rtol=1e-4)


def test_activation_mode_switches_every_activation(tmp_path):
    """The fused CPU mode of the IndexTTS-1.5 vocoder applies here too (its numerics: tests/test_bigvgan.py)."""
    write_tiny_folder(tmp_path / "bigvgan")
    vocoder = load_bigvgan_v2(tmp_path / "bigvgan")
    vocoder.set_activation_mode("fused")
    modes = {module.mode for module in vocoder.modules() if isinstance(module, Activation1d)}
    assert modes == {"fused"}
    with pytest.raises(ConfigError, match="Unknown BigVGAN activation mode 'fast'"):
        vocoder.set_activation_mode("fast")
