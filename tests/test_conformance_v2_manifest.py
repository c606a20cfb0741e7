"""The IndexTTS-2 / 2.5 conformance data agrees with itself (conformance/indextts2/README.md).

Only the data's own consistency: every manifest shape follows from the config stored beside it,
every 2.5 value that is not the IndexTTS-2 release value is documented as derived, and each golden
folder holds the README's tensors in pickle-free files. Building the models from these configs and
reproducing the golden tensors are tested by the modules' own tests.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file

from helpers import v2_golden_folders, v2_manifest

GOLDEN_FOLDERS = v2_golden_folders()
PER_EXAMPLE = {"audio16k", "audio22k", "w2v_input", "w2v_mask", "w2v_feat", "mel22k", "fbank", "style", "sem_feat",
               "sem_codes", "feat", "emo_vec", "text", "codes", "greedy_codes"}
SHARED = {"emo_merge", "emo_weights", "emo_rows", "emo_vec_weighted", "train_loss_text", "train_loss_mel",
          "train_text_logits", "train_mel_logits", "s2mel_prompt_cond", "s2mel_cond", "s2mel_noise", "s2mel_mel",
          "vocoder_mel", "vocoder_wav"}
ONLY = {"2.0": ({"sem_quant", "sem_embed", "cond", "latent"}, {"s2mel_latent"}),
        "2.5": ({"sem_decode", "campplus_cond", "lang", "lang_emb"}, set())}
INTEGER_TENSORS = ("w2v_mask", "sem_codes", "text", "codes", "greedy_codes", "emo_rows", "lang")
SECTIONS = {"IndexTTS-2": "2.0", "IndexTTS-2.5": "2.5"}
W2V_FEATURE_WIDTH = 1024  # hard-coded by the reference: conformer input, emotion perceiver width
CAMPPLUS_WIDTH = 192
LANGUAGE_COUNT = 107  # len(LANGUAGE_DICT) + 1 in the v2.5.0 tokenizer module


@pytest.fixture(scope="module")
def manifest() -> dict:
    return v2_manifest()


def count_layers(names, prefix: str) -> int:
    """How many distinct ``prefix<N>.`` indices the names hold."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({match.group(1) for name in names if (match := pattern.match(name))})


def test_sections_name_their_version_and_reference(manifest):
    for section, version in SECTIONS.items():
        assert str(manifest[section]["config"]["version"]) == version
    for tag in ("v2.0.0", "v2.5.0"):
        assert re.fullmatch(r"[0-9a-f]{40}", manifest["reference"][tag])


def test_every_shape_is_a_list_of_sizes(manifest):
    def tables(node):
        for key, value in node.items():
            if key in ("config", "derived") or not isinstance(value, dict):
                continue
            if all(isinstance(v, list) for v in value.values()):
                yield key, value
            else:
                yield from tables(value)

    found = dict(tables({s: manifest[s] for s in SECTIONS}))
    assert {"gpt.pth", "cfm", "length_regulator", "gpt_layer", "codec.pth", "w2v_bert"} <= set(found)
    for name, table in found.items():
        assert table, name
        for key, shape in table.items():
            assert all(isinstance(size, int) and size >= 0 for size in shape), (name, key, shape)


@pytest.mark.parametrize("section", SECTIONS)
def test_gpt_shapes_follow_the_config(manifest, section):
    gpt, cfg = manifest[section]["gpt.pth"], manifest[section]["config"]["gpt"]
    width = cfg["model_dim"]
    assert gpt["text_embedding.weight"] == gpt["text_head.weight"] == [cfg["number_text_tokens"] + 1, width]
    assert gpt["mel_embedding.weight"] == gpt["mel_head.weight"] == [cfg["number_mel_codes"], width]
    assert gpt["text_pos_embedding.emb.weight"] == [cfg["max_text_tokens"] + 2, width]
    assert gpt["mel_pos_embedding.emb.weight"] == [cfg["max_mel_tokens"] + 3, width]
    assert count_layers(gpt, "gpt.h.") == cfg["layers"]
    emotion = cfg["emo_condition_module"]
    assert gpt["emo_conditioning_encoder.embed.out.0.weight"] == [
        emotion["output_size"], emotion["output_size"] * ((W2V_FEATURE_WIDTH - 1) // 2)]
    assert count_layers(gpt, "emo_conditioning_encoder.encoders.") == emotion["num_blocks"]
    assert gpt["emo_perceiver_encoder.latents"] == [1, W2V_FEATURE_WIDTH]
    assert gpt["emovec_layer.weight"] == [width, W2V_FEATURE_WIDTH]
    assert gpt["emo_layer.weight"] == [width, width]


def test_gpt_speaker_conditioning_differs_between_2_and_25(manifest):
    gpt2, gpt25 = manifest["IndexTTS-2"]["gpt.pth"], manifest["IndexTTS-2.5"]["gpt.pth"]
    cfg2 = manifest["IndexTTS-2"]["config"]["gpt"]
    speaker = cfg2["condition_module"]
    assert gpt2["conditioning_encoder.embed.out.0.weight"] == [
        speaker["output_size"], speaker["output_size"] * ((W2V_FEATURE_WIDTH - 1) // 2)]
    assert gpt2["perceiver_encoder.latents"] == [32, cfg2["model_dim"]]
    assert gpt2["speed_emb.weight"] == [2, cfg2["model_dim"]]
    assert "spk_emb_proj.weight" not in gpt2 and "lang_embedding.weight" not in gpt2
    width25 = manifest["IndexTTS-2.5"]["config"]["gpt"]["model_dim"]
    assert gpt25["spk_emb_proj.weight"] == [width25, CAMPPLUS_WIDTH]
    assert gpt25["lang_embedding.weight"] == [LANGUAGE_COUNT, width25]
    assert not [name for name in gpt25 if name.startswith(("conditioning_encoder.", "perceiver_encoder.", "speed_emb."))]


@pytest.mark.parametrize("section", SECTIONS)
def test_s2mel_shapes_follow_the_config(manifest, section):
    s2mel, cfg = manifest[section]["s2mel.pth"], manifest[section]["config"]["s2mel"]
    expected_modules = {"cfm", "length_regulator"} | ({"gpt_layer"} if section == "IndexTTS-2" else set())
    assert set(s2mel) == expected_modules
    regulator = cfg["length_regulator"]
    assert s2mel["length_regulator"]["content_in_proj.weight"] == [regulator["channels"], regulator["in_channels"]]
    assert count_layers(s2mel["cfm"], "estimator.transformer.layers.") == cfg["DiT"]["depth"]
    assert count_layers(s2mel["cfm"], "estimator.wavenet.in_layers.") == cfg["wavenet"]["num_layers"]


def test_gpt_layer_keeps_the_hard_coded_widths(manifest):
    layer = manifest["IndexTTS-2"]["s2mel.pth"]["gpt_layer"]
    assert [layer[f"{i}.weight"] for i in range(3)] == [[256, 1280], [128, 256], [1024, 128]]
    assert manifest["IndexTTS-2"]["config"]["gpt"]["model_dim"] == 1280


@pytest.mark.parametrize("section, table", [("IndexTTS-2", "semantic_codec"), ("IndexTTS-2.5", "codec.pth")])
def test_semantic_codec_shapes_follow_the_config(manifest, section, table):
    codec, cfg = manifest[section][table], manifest[section]["config"]["semantic_codec"]
    assert codec["quantizer.quantizers.0.codebook.weight"] == [cfg["codebook_size"], cfg["codebook_dim"]]
    assert codec["encoder.0.embed.weight"] == [cfg["vocos_dim"], cfg["hidden_size"], 7]
    assert count_layers(codec, "encoder.0.convnext.") == cfg["vocos_num_layers"]
    downsampled = cfg.get("downsample_scale", 1) > 1
    assert ("down.weight" in codec) == downsampled
    if downsampled:
        assert codec["down.weight"] == codec["up.weight"] == [cfg["hidden_size"], cfg["hidden_size"], 3]


def test_auxiliary_models_follow_their_configs(manifest):
    section = manifest["IndexTTS-2"]
    assert section["campplus"]["xvector.dense.linear.weight"][0] == CAMPPLUS_WIDTH
    vocoder, vocoder_cfg = section["bigvgan"], section["bigvgan_config"]
    assert vocoder["conv_pre.weight_v"] == [vocoder_cfg["upsample_initial_channel"], vocoder_cfg["num_mels"], 7]
    assert count_layers(vocoder, "ups.") == len(vocoder_cfg["upsample_rates"])
    w2v, w2v_cfg = section["w2v_bert"], section["w2v_bert_config"]
    assert count_layers(w2v, "encoder.layers.") == w2v_cfg["num_hidden_layers"] > 17
    assert w2v["feature_projection.projection.weight"] == [w2v_cfg["hidden_size"],
                                                           w2v_cfg["feature_projection_input_dim"]]


def test_every_25_value_that_differs_from_the_release_is_documented(manifest):
    release, derived = manifest["IndexTTS-2"]["config"], manifest["IndexTTS-2.5"]["config"]
    notes = manifest["IndexTTS-2.5"]["derived"]

    def differences(a, b, prefix=""):
        for key in sorted(set(a) | set(b)):
            left, right = a.get(key), b.get(key)
            if isinstance(left, dict) and isinstance(right, dict):
                yield from differences(left, right, f"{prefix}{key}.")
            elif left != right:
                yield f"{prefix}{key}"

    undocumented = [key for key in differences(release, derived) if key != "version"
                    and not any(key == note or key.startswith(note + ".") for note in notes)]
    assert not undocumented
    assert all(isinstance(text, str) and text for text in notes.values())


def readme_names(version: str) -> set[str]:
    per_example, shared = ONLY[version]
    return {f"{name}_{i}" for name in PER_EXAMPLE | per_example for i in (0, 1)} | SHARED | shared


@pytest.mark.parametrize("folder", GOLDEN_FOLDERS, ids=lambda p: p.name)
def test_golden_folder_holds_the_readme_tensors(folder):
    version = str(yaml.safe_load((folder / "config.yaml").read_text())["version"])
    expected = load_file(folder / "expected.safetensors")
    assert set(expected) == readme_names(version)
    assert set(json.loads((folder / "expected_index.json").read_text())) == set(expected)
    for name, tensor in expected.items():
        integer = re.sub(r"_[01]$", "", name) in INTEGER_TENSORS
        assert tensor.dtype == (torch.int64 if integer else torch.float32), name
    reference = json.loads((folder / "reference.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{40}", reference["commit"]) and reference["version"] == version


@pytest.mark.parametrize("folder", GOLDEN_FOLDERS, ids=lambda p: p.name)
def test_golden_folder_files_load_without_pickle(folder):
    for path in sorted(folder.rglob("*")):
        if path.suffix in (".pth", ".pt", ".bin"):
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".safetensors":
            load_file(path)
