"""The IndexTTS-2 / 2.5 GPT (indextts.v2.gpt): structure, strict loading, conditioning layout, training
loss against greedy decoding, and the golden tensors of conformance/indextts2 (README there)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from indextts.checkpoints import expected_shapes
from indextts.errors import CheckpointError, ConfigError, DataError, InferenceError
from indextts.gpt.generation import GenerationConfig
from indextts.v2.gpt.dims import GPTV2Dims
from indextts.v2.gpt.loading import load_gpt_v2
from indextts.v2.gpt.model import UnifiedVoiceV2

from helpers import V2_CONFORMANCE, V2_MANIFEST_FILE, v2_golden_folders, v2_manifest

FLOAT_TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}
GREEDY_MAX_CODES = 30
EMOTION_ALPHA = 0.6

# The `gpt` section of the IndexTTS-2 release config.yaml (index-tts v2.0.0, checkpoints/config.yaml).
RELEASE_GPT = {
    "model_dim": 1280, "max_mel_tokens": 1815, "max_text_tokens": 600, "heads": 20, "use_mel_codes_as_input": True,
    "mel_length_compression": 1024, "layers": 24, "number_text_tokens": 12000, "number_mel_codes": 8194,
    "start_mel_token": 8192, "stop_mel_token": 8193, "start_text_token": 0, "stop_text_token": 1,
    "train_solo_embeddings": False, "condition_type": "conformer_perceiver",
    "condition_module": {"output_size": 512, "linear_units": 2048, "attention_heads": 8, "num_blocks": 6,
                         "input_layer": "conv2d2", "perceiver_mult": 2},
    "emo_condition_module": {"output_size": 512, "linear_units": 1024, "attention_heads": 4, "num_blocks": 4,
                             "input_layer": "conv2d2", "perceiver_mult": 2},
}
TINY_CONDITION = {"output_size": 16, "linear_units": 24, "attention_heads": 2, "num_blocks": 1,
                  "input_layer": "conv2d2", "perceiver_mult": 2}
TINY_GPT = {**RELEASE_GPT, "model_dim": 32, "max_mel_tokens": 48, "max_text_tokens": 24, "heads": 2, "layers": 2,
            "number_text_tokens": 40, "number_mel_codes": 52, "start_mel_token": 50, "stop_mel_token": 51,
            "condition_module": TINY_CONDITION, "emo_condition_module": TINY_CONDITION,
            "condition_input_dim": 20, "emotion_latent_dim": 12, "campplus_dim": 10, "num_languages": 5}


def tiny_model(mode: str, seed: int = 0) -> UnifiedVoiceV2:
    """A random tiny GPT; every parameter perturbed (the reference initialises speed_emb with zeros)."""
    torch.manual_seed(seed)
    model = UnifiedVoiceV2(GPTV2Dims.from_section({**TINY_GPT, "spk_cond_mode": mode}))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def release_dims(version: float) -> GPTV2Dims:
    return GPTV2Dims.from_config({"gpt": RELEASE_GPT, "version": version})


# ---- structure ---------------------------------------------------------------------------------------------

def test_release_gpt_shapes_match_the_manifest():
    manifest = v2_manifest()
    releases = [name for name, entry in manifest.items() if isinstance(entry, dict) and "gpt.pth" in entry]
    assert releases, f"no release in {V2_MANIFEST_FILE} lists gpt.pth"
    for name in releases:
        dims = GPTV2Dims.from_config(manifest[name]["config"])
        shapes = {key: list(shape) for key, shape in expected_shapes(dims).items()}
        assert shapes == manifest[name]["gpt.pth"], name


def test_release_gpt_structure_of_both_speaker_modes():
    # Counts and shapes computed once from the reference UnifiedVoice on the meta device (index-tts v2.0.0,
    # and v2.5.0 with spk_cond_mode="campplus") for the release config, reviewed, and pinned here.
    v2, v25 = expected_shapes(release_dims(2.0)), expected_shapes(release_dims(2.5))
    assert (len(v2), len(v25)) == (665, 456)
    assert v2["conditioning_encoder.embed.out.0.weight"] == (512, 512 * 511)  # 1024-wide features, conv2d2
    assert v2["emo_perceiver_encoder.latents"] == (1, 1024) and v2["emovec_layer.weight"] == (1280, 1024)
    assert v2["speed_emb.weight"] == (2, 1280) and v2["mel_pos_embedding.emb.weight"] == (1818, 1280)
    assert v25["spk_emb_proj.weight"] == (1280, 192) and v25["lang_embedding.weight"] == (107, 1280)
    assert not any(name.startswith(("speed_emb", "conditioning_encoder", "perceiver_encoder")) for name in v25)


def test_speaker_mode_follows_version_unless_set():
    assert release_dims(2.0).spk_cond_mode == "conformer"
    assert release_dims(2.5).spk_cond_mode == "campplus"
    explicit = {"gpt": {**RELEASE_GPT, "spk_cond_mode": "conformer"}, "version": 2.5}
    assert GPTV2Dims.from_config(OmegaConf.create(explicit)).spk_cond_mode == "conformer"
    with pytest.raises(ConfigError, match="gpt.spk_cond_mode is 'ecapa'"):
        GPTV2Dims.from_section({**RELEASE_GPT, "spk_cond_mode": "ecapa"})


# ---- loading -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["conformer", "campplus"])
def test_gpt_pth_loads_strictly_and_round_trips(tmp_path, mode):
    model = tiny_model(mode)
    path = tmp_path / "gpt.pth"
    torch.save({"model": model.state_dict()}, path)
    loaded = load_gpt_v2(path, GPTV2Dims.from_section({**TINY_GPT, "spk_cond_mode": mode}))
    assert not loaded.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_gpt_pth_of_the_other_mode_is_refused(tmp_path):
    path = tmp_path / "gpt.pth"
    torch.save({"model": tiny_model("campplus").state_dict()}, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="tensors missing .*speed_emb|unexpected tensors .*spk_emb_proj"):
        load_gpt_v2(path, GPTV2Dims.from_section({**TINY_GPT, "spk_cond_mode": "conformer"}))
    assert path.read_bytes() == before


@pytest.mark.parametrize("version,mode,repository", [("2", "conformer", "IndexTeam/IndexTTS-2"),
                                                      ("2.5", "campplus", "IndexTeam/IndexTTS-2.5")])
def test_missing_gpt_pth_names_the_repository_and_the_command(tmp_path, version, mode, repository):
    with pytest.raises(CheckpointError) as error:
        load_gpt_v2(tmp_path / "gpt.pth", GPTV2Dims.from_section({**TINY_GPT, "spk_cond_mode": mode}))
    message = str(error.value)
    assert str(tmp_path / "gpt.pth") in message and repository in message
    assert f"indextts download {version} --dir {tmp_path}" in message
    assert list(tmp_path.iterdir()) == []


# ---- conditioning --------------------------------------------------------------------------------------------

def test_prefix_is_speaker_plus_emotion_then_the_two_duration_rows():
    model = tiny_model("conformer")
    speaker, emotion = torch.randn(2, 32, 32), torch.randn(2, 32)
    prefix = model.conditioning_prefix(speaker, emotion)
    assert prefix.shape == (2, 34, 32)
    torch.testing.assert_close(prefix[:, :32], speaker + emotion[:, None])
    torch.testing.assert_close(prefix[:, 32], model.speed_emb.weight[1].expand(2, -1))
    torch.testing.assert_close(prefix[:, 33], model.speed_emb.weight[0].expand(2, -1))
    campplus = tiny_model("campplus")
    row = campplus.campplus_conditioning(torch.randn(2, 10))
    prefix = campplus.conditioning_prefix(row, emotion)
    assert prefix.shape == (2, 3, 32) and not prefix[:, 1:].any()
    torch.testing.assert_close(prefix[:, 0], row[:, 0] + emotion)


def test_emotion_merge_moves_from_the_speaker_to_the_emotion_reference():
    model = tiny_model("conformer")
    speaker, emotion = torch.randn(1, 30, 20), torch.randn(1, 22, 20)
    with torch.no_grad():
        own, other = model.emotion_vector(speaker), model.emotion_vector(emotion)
        torch.testing.assert_close(model.merge_emotion(speaker, emotion, alpha=0.0), own)
        torch.testing.assert_close(model.merge_emotion(speaker, emotion, alpha=1.0), other)
        torch.testing.assert_close(model.merge_emotion(speaker, emotion, alpha=0.25), own + 0.25 * (other - own))


def test_padded_batch_rows_equal_their_single_results():
    model = tiny_model("conformer")
    features = torch.randn(2, 31, 20)
    lengths = torch.tensor([31, 18])
    with torch.no_grad():
        latents, emotions = model.get_conditioning(features, lengths), model.emotion_vector(features, lengths)
        for row, length in enumerate(lengths.tolist()):
            single = features[row:row + 1, :length]
            torch.testing.assert_close(latents[row], model.get_conditioning(single)[0], **FLOAT_TOLERANCE)
            torch.testing.assert_close(emotions[row], model.emotion_vector(single)[0], **FLOAT_TOLERANCE)


def test_language_embedding_is_added_to_every_text_row_but_padding():
    model = tiny_model("campplus")
    text_ids, lengths, languages = torch.randint(2, 40, (2, 6)), torch.tensor([6, 3]), torch.tensor([1, 4])
    with torch.no_grad():
        plain, with_language = model.text_inputs(text_ids, lengths), model.text_inputs(text_ids, lengths, languages)
        added = model.lang_embedding(languages)
    torch.testing.assert_close(with_language[0] - plain[0], added[0].expand(8, -1))
    torch.testing.assert_close(with_language[1, :5] - plain[1, :5], added[1].expand(5, -1))
    assert not with_language[1, 5:].any()


def test_speaker_inputs_of_the_other_mode_are_refused():
    with pytest.raises(InferenceError, match="CAMPPlus"):
        tiny_model("campplus").get_conditioning(torch.randn(1, 9, 20))
    with pytest.raises(InferenceError, match="w2v-BERT"):
        tiny_model("conformer").campplus_conditioning(torch.randn(1, 10))
    with pytest.raises(InferenceError, match="no language embedding"):
        tiny_model("conformer").text_inputs(torch.ones(1, 3, dtype=torch.long), torch.tensor([3]), torch.tensor([0]))


def test_too_many_codes_are_refused_in_semantic_codes():
    model = tiny_model("conformer")
    prefix = model.conditioning_prefix(torch.randn(1, 32, 32), torch.randn(1, 32))
    codes = torch.zeros(1, 49, dtype=torch.long)  # start, 49 codes, stop at generation positions: 52 > 51 rows
    with pytest.raises(DataError, match="49 semantic codes but the GPT accepts at most 48") as error:
        model.forward_train(prefix, torch.ones(1, 3, dtype=torch.long), torch.tensor([3]), codes, torch.tensor([49]),
                            generation_positions=True)
    assert "s of audio" not in str(error.value)


# ---- training loss and decoding ------------------------------------------------------------------------------

def test_training_mel_states_are_the_latents_of_each_row():
    """The loss runs the layout of the reference's ``forward`` (GPT latents): same states, padded or not."""
    model = tiny_model("campplus")
    prefix = model.conditioning_prefix(model.campplus_conditioning(torch.randn(2, 10)), torch.randn(2, 32))
    text_ids, text_lengths = torch.randint(2, 40, (2, 6)), torch.tensor([6, 2])
    codes, code_lengths = torch.randint(0, 50, (2, 9)), torch.tensor([9, 5])
    languages = torch.tensor([3, 1])
    with torch.no_grad():
        output = model.forward_train(prefix, text_ids, text_lengths, codes, code_lengths, languages)
        for row in range(2):
            length, text_length = int(code_lengths[row]), int(text_lengths[row])
            latents = model.forward_latents(prefix[row:row + 1], text_ids[row:row + 1, :text_length],
                                            text_lengths[row:row + 1], codes[row:row + 1, :length],
                                            code_lengths[row:row + 1], languages[row:row + 1])
            expected = model.mel_head(latents[0]).T  # (V, N_row)
            torch.testing.assert_close(output.mel_logits[row, :, :length], expected, **FLOAT_TOLERANCE)


def teacher_forced_codes(model, prefix, text_ids, text_lengths, greedy, languages=None) -> list[torch.Tensor]:
    """Argmax of the teacher-forced mel logits with the greedy codes (stop code dropped) as input, per row."""
    stop = model.stop_mel_token
    bodies = [codes[:-1] if codes[-1] == stop else codes for codes in greedy]
    lengths = torch.tensor([len(body) for body in bodies])
    padded = torch.nn.utils.rnn.pad_sequence(bodies, batch_first=True)
    with torch.no_grad():
        output = model.forward_train(prefix, text_ids, text_lengths, padded, lengths, languages,
                                     generation_positions=True)
    predicted = output.mel_logits.argmax(dim=1)  # (B, N+1)
    return [predicted[row, : len(codes)] for row, codes in enumerate(greedy)]


@pytest.mark.parametrize("mode", ["conformer", "campplus"])
def test_teacher_forced_argmax_gives_back_the_greedy_codes(mode):
    model = tiny_model(mode)
    speaker = (model.campplus_conditioning(torch.randn(2, 10)) if mode == "campplus"
               else model.get_conditioning(torch.randn(2, 25, 20)))
    prefix = model.conditioning_prefix(speaker, torch.randn(2, 32)).detach()
    text_ids, text_lengths = torch.randint(2, 40, (2, 7)), torch.tensor([7, 4])
    languages = torch.tensor([2, 0]) if mode == "campplus" else None
    config = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, max_new_tokens=20)
    greedy = model.generate(prefix, text_ids, text_lengths, config, languages)
    assert all(len(codes) > 1 for codes in greedy)
    for predicted, codes in zip(teacher_forced_codes(model, prefix, text_ids, text_lengths, greedy, languages),
                                greedy):
        assert torch.equal(predicted, codes)


# ---- golden tensors ------------------------------------------------------------------------------------------

FOLDERS = v2_golden_folders()
NO_FOLDER = pytest.param(None, id="no-golden-folder", marks=pytest.mark.skip(
    reason=f"no IndexTTS-2 golden folder under {V2_CONFORMANCE} or in INDEXTTS_CONFORMANCE_DIRS"))


class Golden:
    """One golden folder: expected tensors, the GPT loaded from gpt.pth, and the conditioning prefix per example."""

    def __init__(self, folder: Path):
        cfg = OmegaConf.load(folder / "config.yaml")
        self.expected = load_file(folder / "expected.safetensors")
        self.gpt = load_gpt_v2(folder / cfg.get("gpt_checkpoint", "gpt.pth"), GPTV2Dims.from_config(cfg))
        self.count = len([name for name in self.expected if name.startswith("codes_")])

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.expected[name]

    def speaker(self, i: int) -> torch.Tensor:
        return self[f"campplus_cond_{i}"][None] if self.gpt.uses_campplus else self[f"cond_{i}"][None]

    def prefix(self) -> torch.Tensor:
        rows = [self.gpt.conditioning_prefix(self.speaker(i), self[f"emo_vec_{i}"][None]) for i in range(self.count)]
        return torch.cat(rows)

    def padded(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        items = [self[f"{prefix}_{i}"] for i in range(self.count)]
        return torch.nn.utils.rnn.pad_sequence(items, batch_first=True), torch.tensor([len(t) for t in items])

    def languages(self) -> torch.Tensor | None:
        return torch.cat([self[f"lang_{i}"] for i in range(self.count)]) if self.gpt.uses_campplus else None


@pytest.fixture(scope="module", params=[pytest.param(folder, id=folder.name) for folder in FOLDERS] or [NO_FOLDER])
def golden(request) -> Golden:
    return Golden(request.param)


@torch.no_grad()
def test_golden_conditioning(golden):
    gpt = golden.gpt
    for i in range(golden.count):
        feat = golden[f"feat_{i}"][None]
        if gpt.uses_campplus:
            actual = gpt.campplus_conditioning(golden[f"style_{i}"][None])[0]
            torch.testing.assert_close(actual, golden[f"campplus_cond_{i}"], **FLOAT_TOLERANCE)
            torch.testing.assert_close(gpt.lang_embedding(golden[f"lang_{i}"])[0], golden[f"lang_emb_{i}"])
        else:
            torch.testing.assert_close(gpt.get_conditioning(feat)[0], golden[f"cond_{i}"], **FLOAT_TOLERANCE)
        torch.testing.assert_close(gpt.emotion_vector(feat)[0], golden[f"emo_vec_{i}"], **FLOAT_TOLERANCE)
    merged = gpt.merge_emotion(golden["feat_0"][None], golden["feat_1"][None], alpha=EMOTION_ALPHA)[0]
    torch.testing.assert_close(merged, golden["emo_merge"], **FLOAT_TOLERANCE)


@torch.no_grad()
def test_golden_latents(golden):
    if golden.gpt.uses_campplus:
        pytest.skip("IndexTTS-2.5 decodes codes with its codec; no GPT latents are stored")
    for i in range(golden.count):
        text, codes = golden[f"text_{i}"][None], golden[f"codes_{i}"][None]
        prefix = golden.gpt.conditioning_prefix(golden.speaker(i), golden[f"emo_vec_{i}"][None])
        latent = golden.gpt.forward_latents(prefix, text, torch.tensor([text.shape[1]]), codes,
                                            torch.tensor([codes.shape[1]]))
        torch.testing.assert_close(latent[0], golden[f"latent_{i}"], **FLOAT_TOLERANCE)


@torch.no_grad()
def test_golden_training_loss_and_logits(golden):
    (text, text_lengths), (codes, code_lengths) = golden.padded("text"), golden.padded("codes")
    output = golden.gpt.forward_train(golden.prefix(), text, text_lengths, codes, code_lengths, golden.languages())
    torch.testing.assert_close(output.text_loss.reshape(1), golden["train_loss_text"], **FLOAT_TOLERANCE)
    torch.testing.assert_close(output.mel_loss.reshape(1), golden["train_loss_mel"], **FLOAT_TOLERANCE)
    for i in range(golden.count):
        text_columns, mel_columns = int(text_lengths[i]) + 1, int(code_lengths[i]) + 1
        torch.testing.assert_close(output.text_logits[i, :, :text_columns],
                                   golden["train_text_logits"][i, :, :text_columns], **FLOAT_TOLERANCE)
        torch.testing.assert_close(output.mel_logits[i, :, :mel_columns],
                                   golden["train_mel_logits"][i, :, :mel_columns], **FLOAT_TOLERANCE)


def test_golden_greedy_codes_and_teacher_forcing(golden):
    text, text_lengths = golden.padded("text")
    config = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, max_new_tokens=GREEDY_MAX_CODES)
    prefix, languages = golden.prefix(), golden.languages()
    greedy = golden.gpt.generate(prefix, text, text_lengths, config, languages)
    for i, codes in enumerate(greedy):
        assert torch.equal(codes, golden[f"greedy_codes_{i}"]), f"example {i}"
    forced = teacher_forced_codes(golden.gpt, prefix, text, text_lengths, greedy, languages)
    for i, codes in enumerate(forced):
        assert torch.equal(codes, golden[f"greedy_codes_{i}"]), f"example {i}"

