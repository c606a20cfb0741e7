"""IndexTTS-2 S2Mel: release structure, strict s2mel.pth loading, CFM sampling, the 22.05 kHz mel, goldens."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from indextts.errors import CheckpointError, ConfigError
from indextts.v2.s2mel import S2Mel, S2MelDims, expected_shapes, frames_for_codes, load_s2mel, stored_state_dict
from indextts.v2.s2mel.mel import S2MelSpectrogram, reference_fmax, slaney_mel_filterbank

from helpers import v2_golden_folders, v2_golden_version, v2_manifest

GOLDENS = v2_golden_folders()
FLOAT_TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}
TINY_S2MEL = {
    "preprocess_params": {"sr": 22050, "spect_params": {"n_fft": 1024, "win_length": 1024, "hop_length": 256,
                                                        "n_mels": 8, "fmin": 0, "fmax": "None"}},
    "style_encoder": {"dim": 6},
    "gpt_layer_input_dim": 20,
    "length_regulator": {"channels": 16, "in_channels": 12, "content_codebook_size": 4, "sampling_ratios": [1, 1]},
    "DiT": {"hidden_dim": 16, "num_heads": 2, "depth": 3, "in_channels": 8, "content_dim": 16,
            "content_codebook_size": 4},
    "wavenet": {"hidden_dim": 16, "num_layers": 2, "kernel_size": 5, "dilation_rate": 1, "p_dropout": 0.2},
}


def tiny_dims(**dit_changes) -> S2MelDims:
    section = OmegaConf.create(TINY_S2MEL)
    section.DiT.update(dit_changes)
    return S2MelDims.from_section(section)


def write_tiny_s2mel(path, seed: int = 0, with_gpt_layer: bool = True, prefix: str = "") -> S2Mel:
    torch.manual_seed(seed)
    model = S2Mel(tiny_dims(), with_gpt_layer).eval()
    parts = {part: {prefix + name: t for name, t in state.items()} for part, state in stored_state_dict(model).items()}
    torch.save({"net": parts, "epoch": 1}, path)
    return model


@pytest.mark.parametrize("release", ["IndexTTS-2", "IndexTTS-2.5"])
def test_meta_build_matches_release_manifest(release):
    """The release config builds exactly the names and shapes the reference stores in s2mel.pth (2.5: no gpt_layer)."""
    section = v2_manifest()[release]
    dims = S2MelDims.from_config(section["config"])
    wanted = {f"{part}.{name}": tuple(shape) for part, state in section["s2mel.pth"].items()
              for name, shape in state.items()}
    assert expected_shapes(dims, with_gpt_layer=release == "IndexTTS-2") == wanted


def test_release_dims_defaults():
    without_key = {k: v for k, v in TINY_S2MEL.items() if k != "gpt_layer_input_dim"}
    release = S2MelDims.from_section(OmegaConf.create(without_key))
    assert release.gpt_layer_input_dim == 1280 and release.style_encoder.dim == 6


def test_strict_round_trip_with_and_without_gpt_layer(tmp_path):
    for with_gpt_layer, prefix in [(True, ""), (False, "module.")]:
        path = tmp_path / f"s2mel_{with_gpt_layer}.pth"
        written = write_tiny_s2mel(path, with_gpt_layer=with_gpt_layer, prefix=prefix)
        loaded = load_s2mel(path, tiny_dims(), with_gpt_layer=with_gpt_layer)
        assert hasattr(loaded, "gpt_layer") == with_gpt_layer
        for name, tensor in written.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[name], tensor)


def test_loading_refuses_a_file_that_does_not_fit(tmp_path):
    path = tmp_path / "s2mel.pth"
    write_tiny_s2mel(path, with_gpt_layer=False)
    with pytest.raises(CheckpointError, match=r"1 of 3|missing .*gpt_layer\.0\.weight|gpt_layer"):
        load_s2mel(path, tiny_dims(), with_gpt_layer=True)
    with pytest.raises(CheckpointError, match="IndexTeam/IndexTTS-2.*indextts download 2"):
        load_s2mel(tmp_path / "absent.pth", tiny_dims())
    with pytest.raises(CheckpointError, match=r"IndexTeam/IndexTTS-2\.5 .*indextts download 2\.5 "):
        load_s2mel(tmp_path / "absent.pth", tiny_dims(), with_gpt_layer=False)  # 2.5: no gpt_layer
    torch.save({"model": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="'net'"):
        load_s2mel(tmp_path / "other.pth", tiny_dims())


def test_unsupported_variant_is_refused():
    with pytest.raises(ConfigError, match="DiT.time_as_token is True"):
        S2Mel(tiny_dims(time_as_token=True))


def test_batched_sampling_equals_one_by_one_and_keeps_prompt_frames_zero():
    torch.manual_seed(1)
    model = S2Mel(tiny_dims()).eval()
    generator = torch.Generator().manual_seed(2)
    content, noise = torch.randn(2, 11, 16, generator=generator), torch.randn(2, 8, 11, generator=generator)
    prompt, style = torch.randn(2, 8, 4, generator=generator), torch.randn(2, 6, generator=generator)
    batched = model.cfm.generate(content, prompt, style, noise, steps=3)
    for row in range(2):
        single = model.cfm.generate(content[row:row + 1], prompt[row:row + 1], style[row:row + 1],
                                    noise[row:row + 1], steps=3)
        torch.testing.assert_close(batched[row:row + 1], single, **FLOAT_TOLERANCE)
    assert batched[..., :4].abs().max() == 0 and batched[..., 4:].abs().min() > 0


def test_target_frames_follow_infer_v2():
    """floor(N * 1.72) mel frames for N codes (values worked out by hand: 15.48, 43.0, 172.0)."""
    assert frames_for_codes(torch.tensor([9, 25, 100])).tolist() == [15, 43, 172]


def test_slaney_filters_equal_librosa():
    librosa = pytest.importorskip("librosa")
    for sr, n_fft, n_mels, fmax in [(22050, 1024, 80, None), (22050, 1024, 80, 8000.0), (16000, 400, 20, 7000.0)]:
        expected = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=0, fmax=fmax)
        computed = slaney_mel_filterbank(sr, n_fft, n_mels, 0.0, sr / 2 if fmax is None else fmax)
        torch.testing.assert_close(computed, torch.from_numpy(expected), atol=1e-7, rtol=1e-5)


def test_fmax_rule_of_infer_v2():
    assert reference_fmax("None", 22050) == 11025 and reference_fmax(None, 22050) == 11025
    assert reference_fmax(8000, 22050) == 8000
    with pytest.raises(ConfigError, match="fmax is 11000"):
        reference_fmax(11000, 22050)


def test_mel_frame_count_and_batch():
    mel = S2MelSpectrogram(n_mels=8)
    audio = torch.randn(2, 256 * 7 + 100, generator=torch.Generator().manual_seed(0)) * 0.1
    batched = mel(audio)
    assert batched.shape == (2, 8, 7)
    torch.testing.assert_close(batched[1], mel(audio[1])[0])


def _golden(folder):
    config = OmegaConf.load(folder / "config.yaml")
    return config, load_file(folder / "expected.safetensors")


@pytest.mark.parametrize("folder", GOLDENS, ids=[p.name for p in GOLDENS])
def test_golden_mel(folder):
    config, expected = _golden(folder)
    mel = S2MelSpectrogram.from_config(config.s2mel, folder / "config.yaml")
    index = 0
    while f"audio22k_{index}" in expected:
        computed = mel(expected[f"audio22k_{index}"])[0]
        torch.testing.assert_close(computed, expected[f"mel22k_{index}"], **FLOAT_TOLERANCE)
        index += 1
    assert index > 0


@pytest.mark.parametrize("folder", GOLDENS, ids=[p.name for p in GOLDENS])
def test_golden_s2mel(folder):
    """Prompt and target conditions from their stored inputs, then the 25-step CFG mel from the stored conditions."""
    config, e = _golden(folder)
    is_v2 = v2_golden_version(folder) == "2"
    model = load_s2mel(folder / config.s2mel_checkpoint, S2MelDims.from_config(config), with_gpt_layer=is_v2)
    prompt_frames = e["mel22k_0"].shape[-1]
    with torch.inference_mode():
        prompt_features = e["sem_quant_0"] if is_v2 else e["sem_feat_0"]
        prompt_cond = model.length_regulator(prompt_features[None], torch.tensor([prompt_frames]))[0]
        torch.testing.assert_close(prompt_cond, e["s2mel_prompt_cond"], **FLOAT_TOLERANCE)
        if is_v2:  # 2.5's target features come from the semantic codec's decoder (indextts.v2.semantic)
            codes = e["codes_0"]
            assert torch.equal(codes, e["sem_codes_0"][:len(codes)]), "codes_0 must be a prefix of sem_codes_0"
            features = model.content_features(e["sem_embed_0"][:len(codes)][None], e["s2mel_latent"][None])
            target_frames = frames_for_codes(torch.tensor([len(codes)]))
            cond = model.length_regulator(features, target_frames)[0]
            torch.testing.assert_close(cond, e["s2mel_cond"], **FLOAT_TOLERANCE)
            end_to_end = model.infer_mel(prompt_features[None], e["mel22k_0"][None], e["style_0"][None], features,
                                         int(target_frames), e["s2mel_noise"][None])
            torch.testing.assert_close(end_to_end[0], e["s2mel_mel"], **FLOAT_TOLERANCE)
        content = torch.cat([e["s2mel_prompt_cond"], e["s2mel_cond"]])[None]
        mel = model.cfm.generate(content, e["mel22k_0"][None], e["style_0"][None], e["s2mel_noise"][None])
    torch.testing.assert_close(mel[0, :, prompt_frames:], e["s2mel_mel"], **FLOAT_TOLERANCE)
