"""The IndexTTS-2 semantic front: w2v-BERT features, the MaskGCT codec (2) and codec.pth (2.5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import V2_CONFORMANCE, v2_golden_folders
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch.nn.utils.rnn import pad_sequence

from indextts.bigvgan.models import unfold_weight_norm
from indextts.errors import AudioError, CheckpointError, ConfigError
from indextts.v2.semantic import (SemanticCodec, SemanticCodecDims, W2VBertDims, W2VBertFront,
                                  load_semantic_codec, save_tiny_w2v_bert)
from indextts.v2.semantic.files import stored_codec_shapes

TINY = dict(codebook_size=64, hidden_size=24, codebook_dim=8, vocos_dim=16, vocos_intermediate_dim=32,
            vocos_num_layers=2)
W2V_WIDTH = 16
GOLDENS = v2_golden_folders()
MANIFEST = V2_CONFORMANCE / "state_dict_manifest.json"


def _random_codec(downsample_scale: int) -> SemanticCodec:
    torch.manual_seed(downsample_scale)
    codec = SemanticCodec(SemanticCodecDims(**TINY, downsample_scale=downsample_scale)).eval()
    with torch.no_grad():
        for parameter in codec.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return codec


def _save_codec(codec: SemanticCodec, path: Path) -> Path:
    """Save in the release layout: safetensors (MaskGCT) or {"model": ...} (2.5), weight norm unfolded."""
    stored = unfold_weight_norm(codec.state_dict(), codec.weight_norm_modules())
    if path.suffix == ".safetensors":
        save_file(dict(stored), path)
    else:
        torch.save({"model": dict(stored)}, path)
    return path


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory) -> W2VBertFront:
    folder = save_tiny_w2v_bert(tmp_path_factory.mktemp("w2v") / "w2v-bert-2.0", hidden_size=W2V_WIDTH)
    stats = folder.parent / "wav2vec2bert_stats.pt"
    torch.save({"mean": torch.randn(W2V_WIDTH), "var": torch.rand(W2V_WIDTH) + 0.5}, stats)
    return W2VBertFront.from_files(folder, stats)


@pytest.mark.parametrize("name,downsample", [("semantic_codec_model.safetensors", 1), ("codec.pth", 2)])
def test_codec_loads_strictly_and_reproduces_the_saved_model(tmp_path, name, downsample):
    codec = _random_codec(downsample)
    loaded = load_semantic_codec(_save_codec(codec, tmp_path / name), codec.dims)
    features = torch.randn(1, 11, TINY["hidden_size"])
    with torch.no_grad():
        codes, embeddings, lengths = loaded.quantize(features)
        want_codes, want_embeddings, _ = codec.quantize(features)
    assert codes.shape == (1, 1, (11 + downsample - 1) // downsample) and lengths.tolist() == [codes.shape[2]]
    assert torch.equal(codes, want_codes)
    torch.testing.assert_close(embeddings, want_embeddings)
    torch.testing.assert_close(loaded.vq2emb(codes), embeddings)


@pytest.mark.parametrize("downsample", [1, 2])
def test_padded_batch_equals_each_row_alone(downsample):
    codec = _random_codec(downsample)
    rows = [torch.randn(13, TINY["hidden_size"]), torch.randn(6, TINY["hidden_size"])]
    with torch.no_grad():
        codes, embeddings, lengths = codec.quantize(pad_sequence(rows, batch_first=True), torch.tensor([13, 6]))
        decoded, decoded_lengths = codec.decode(codes, lengths)
        for i, row in enumerate(rows):
            alone_codes, alone_embeddings, (n,) = codec.quantize(row[None])
            assert lengths[i] == n and torch.equal(codes[i, :, :n], alone_codes[0])
            torch.testing.assert_close(embeddings[i, :n], alone_embeddings[0])
            alone_decoded, (m,) = codec.decode(alone_codes)
            assert decoded_lengths[i] == m == n * downsample
            torch.testing.assert_close(decoded[i, :m], alone_decoded[0])


def test_codec_with_other_names_is_rejected_with_the_names(tmp_path):
    codec = _random_codec(1)
    path = _save_codec(codec, tmp_path / "semantic_codec_model.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_semantic_codec(path, SemanticCodecDims(**TINY, downsample_scale=2))
    message = str(error.value)
    assert "4 tensors missing (down.weight, down.bias, up.weight, up.bias)" in message and str(path) in message
    assert "downsample_scale" in message and "\n" not in message


@pytest.mark.parametrize("name,repo,version", [("semantic_codec_model.safetensors", "amphion/MaskGCT", "2"),
                                               ("codec.pth", "IndexTeam/IndexTTS-2.5", "2.5")])
def test_missing_codec_names_file_repository_and_command(tmp_path, name, repo, version):
    path = tmp_path / "model" / "hf_cache" / name
    with pytest.raises(CheckpointError) as error:
        load_semantic_codec(path, SemanticCodecDims(**TINY))
    message = str(error.value)
    assert str(path) in message and repo in message
    assert f"`indextts download {version} --dir {tmp_path / 'model'}`" in message


def test_pickled_objects_in_a_codec_file_are_refused(tmp_path):
    path = tmp_path / "codec.pth"
    torch.save({"model": {"x": torch.zeros(1)}, "extra": object()}, path)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        load_semantic_codec(path, SemanticCodecDims(**TINY, downsample_scale=2))
    assert path.read_bytes() == before


def _manifest_codecs() -> list[tuple[str, dict, dict]]:
    """(release, config, names -> shapes) of every codec file the v2 manifest lists, found by its codebook."""
    if not MANIFEST.is_file():
        return []
    releases = {k: v for k, v in json.loads(MANIFEST.read_text()).items() if isinstance(v, dict) and "config" in v}
    return [(f"{release}/{file}", entry["config"], tensors) for release, entry in releases.items()
            for file, tensors in entry.items() if isinstance(tensors, dict) and CODEBOOK in tensors]


CODEBOOK = "quantizer.quantizers.0.codebook.weight"
MANIFEST_CODECS = _manifest_codecs()


@pytest.mark.parametrize("release,config,tensors", MANIFEST_CODECS, ids=[m[0] for m in MANIFEST_CODECS])
def test_release_codec_on_meta_device_matches_the_manifest(release, config, tensors):
    wanted = {name: tuple(shape) for name, shape in tensors.items()}
    assert stored_codec_shapes(SemanticCodecDims.from_config(OmegaConf.create(config))) == wanted


def _manifest_w2v() -> list[tuple[str, dict, dict]]:
    if not MANIFEST.is_file():
        return []
    return [(release, entry["w2v_bert_config"], entry["w2v_bert"]) for release, entry in
            json.loads(MANIFEST.read_text()).items() if isinstance(entry, dict) and "w2v_bert" in entry]


MANIFEST_W2V = _manifest_w2v()


@pytest.mark.parametrize("release,config,tensors", MANIFEST_W2V, ids=[m[0] for m in MANIFEST_W2V])
def test_release_w2v_bert_config_gives_the_manifest_names(release, config, tensors):
    """transformers' Wav2Vec2BertModel of the release config.json holds exactly the file's tensors."""
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    with torch.device("meta"):
        model = Wav2Vec2BertModel(Wav2Vec2BertConfig(**config))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v) for k, v in tensors.items()}


def test_dims_defaults_are_the_release_values_and_25_halves_the_frame_rate():
    release = OmegaConf.create({"semantic_codec": {"codebook_size": 8192}, "version": 2.0})
    assert SemanticCodecDims.from_config(release) == SemanticCodecDims()
    assert SemanticCodecDims().hidden_size == 1024 and SemanticCodecDims().downsample_scale == 1
    assert SemanticCodecDims.from_config(OmegaConf.create({"version": 2.5})).downsample_scale == 2
    assert W2VBertDims.from_config(OmegaConf.create({})).hidden_state == 17


def test_w2v_padded_batch_equals_each_row_alone(tiny_w2v):
    waveforms = [torch.randn(16000) * 0.1, torch.randn(11000) * 0.1]
    features, lengths = tiny_w2v.embed_waveforms(waveforms)
    assert features.shape[2] == W2V_WIDTH and lengths.tolist() == [49, 34]
    for i, waveform in enumerate(waveforms):
        alone, (n,) = tiny_w2v.embed_waveforms([waveform])
        assert alone.shape[1] == n == lengths[i]
        torch.testing.assert_close(features[i, :n], alone[0], atol=1e-4, rtol=1e-4)


def test_batched_features_equal_the_transformers_extractor_row_by_row(tiny_w2v, tmp_path):
    from transformers import SeamlessM4TFeatureExtractor

    extractor = SeamlessM4TFeatureExtractor()
    waveforms = [torch.randn(n) * 0.1 for n in (16000, 11000, 560, 16160)]
    features, mask, lengths = tiny_w2v.features(pad_sequence(waveforms, batch_first=True),
                                                torch.tensor([len(w) for w in waveforms]))
    for i, waveform in enumerate(waveforms):
        want = extractor(waveform[None].numpy(), sampling_rate=16000, return_tensors="pt")
        n = want["input_features"].shape[1]
        assert lengths[i] == n and torch.equal(mask[i, :n], want["attention_mask"][0].long())
        torch.testing.assert_close(features[i, :n], want["input_features"][0], atol=1e-4, rtol=1e-4)


def test_w2v_keeps_only_the_layers_up_to_the_hidden_state(tiny_w2v):
    assert len(tiny_w2v.model.encoder.layers) == 17


def test_w2v_rejects_a_hidden_state_past_the_last_layer(tmp_path):
    folder = save_tiny_w2v_bert(tmp_path / "w2v", hidden_size=W2V_WIDTH, num_layers=3)
    stats = tmp_path / "stats.pt"
    torch.save({"mean": torch.zeros(W2V_WIDTH), "var": torch.ones(W2V_WIDTH)}, stats)
    with pytest.raises(ConfigError, match="w2v_bert.hidden_state is 17, but the w2v-BERT model has 3 layers"):
        W2VBertFront.from_files(folder, stats)


def test_w2v_too_short_audio_is_an_audio_error(tiny_w2v):
    with pytest.raises(AudioError, match="399 samples is too short"):
        tiny_w2v.embed_waveforms([torch.zeros(399)])


def test_missing_w2v_files_name_the_repository(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "hf_cache" / "w2v-bert-2.0").mkdir(parents=True)
    torch.save({"mean": torch.zeros(2), "var": torch.ones(2)}, model_dir / "wav2vec2bert_stats.pt")
    with pytest.raises(CheckpointError) as error:
        W2VBertFront.from_model_dir(model_dir, OmegaConf.create({"w2v_stat": "wav2vec2bert_stats.pt", "version": 2}))
    message = str(error.value)
    assert "hf_cache/w2v-bert-2.0/config.json does not exist" in message and "facebook/w2v-bert-2.0" in message
    assert f"`indextts download 2 --dir {model_dir}`" in message


def test_missing_stats_file_names_the_release(tmp_path):
    with pytest.raises(CheckpointError, match=r"IndexTeam/IndexTTS-2 \(wav2vec2bert_stats.pt\);.*indextts download 2"):
        W2VBertFront.from_files(tmp_path, tmp_path / "wav2vec2bert_stats.pt")


def _golden(folder: Path, *names: str) -> dict[str, torch.Tensor]:
    expected = load_file(folder / "expected.safetensors")
    if not all(name in expected for name in names):
        pytest.skip(f"{folder.name} lacks some of {names}")
    return expected


def _golden_codec(folder: Path) -> SemanticCodec:
    cfg = OmegaConf.load(folder / "config.yaml")
    name = "codec.pth" if (folder / "codec.pth").is_file() else "hf_cache/semantic_codec_model.safetensors"
    return load_semantic_codec(folder / name, SemanticCodecDims.from_config(cfg))


def _w2v_names(index: int) -> tuple[str, ...]:
    return f"audio16k_{index}", f"w2v_input_{index}", f"w2v_mask_{index}", f"w2v_feat_{index}"


# Stage by stage, as the golden stores each stage's input: the batched torch features equal the
# extractor's to float32 rounding (~1e-5), which 17 random layers may grow past 1e-4.
@pytest.mark.parametrize("folder", GOLDENS, ids=[f.name for f in GOLDENS])
@pytest.mark.parametrize("index", [0, 1])
def test_golden_w2v_input_features(folder, index):
    expected = _golden(folder, *_w2v_names(index))
    front = W2VBertFront.from_model_dir(folder, OmegaConf.load(folder / "config.yaml"))
    audio = expected[f"audio16k_{index}"]
    inputs, mask, (n,) = front.input_features(audio[None], torch.tensor([len(audio)]))
    torch.testing.assert_close(inputs[0], expected[f"w2v_input_{index}"], atol=1e-4, rtol=1e-4)
    assert torch.equal(mask[0], expected[f"w2v_mask_{index}"].long())
    assert n == len(expected[f"w2v_feat_{index}"])


@pytest.mark.parametrize("folder", GOLDENS, ids=[f.name for f in GOLDENS])
def test_golden_w2v_hidden_state_alone_and_in_a_padded_batch(folder):
    expected = _golden(folder, *_w2v_names(0), *_w2v_names(1))
    front = W2VBertFront.from_model_dir(folder, OmegaConf.load(folder / "config.yaml"))
    inputs = [expected[f"w2v_input_{i}"] for i in range(2)]
    masks = [expected[f"w2v_mask_{i}"] for i in range(2)]
    batch = front(pad_sequence(inputs, batch_first=True), pad_sequence(masks, batch_first=True))
    for i in range(2):
        want = expected[f"w2v_feat_{i}"]
        torch.testing.assert_close(front(inputs[i][None], masks[i][None])[0], want, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(batch[i, :len(want)], want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("folder", GOLDENS, ids=[f.name for f in GOLDENS])
def test_golden_semantic_codes(folder):
    expected = _golden(folder, "sem_feat_0", "sem_feat_1", "sem_codes_0", "sem_codes_1")
    codec = _golden_codec(folder)
    rows = [expected["sem_feat_0"], expected["sem_feat_1"]]
    with torch.no_grad():
        codes, quantized, lengths = codec.quantize(pad_sequence(rows, batch_first=True),
                                                   torch.tensor([len(r) for r in rows]))
        for i in range(2):
            n, want = int(lengths[i]), expected[f"sem_codes_{i}"].long()
            assert torch.equal(codes[i, 0, :n], want)
            if f"sem_quant_{i}" in expected:  # IndexTTS-2: S_ref and vq2emb
                torch.testing.assert_close(quantized[i, :n], expected[f"sem_quant_{i}"], atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(codec.vq2emb(want[None, None])[0], expected[f"sem_embed_{i}"],
                                           atol=1e-4, rtol=1e-4)
            if f"sem_decode_{i}" in expected:  # IndexTTS-2.5: codes -> decoder -> upsampled features
                torch.testing.assert_close(codec.decode(want[None, None])[0][0], expected[f"sem_decode_{i}"],
                                           atol=1e-4, rtol=1e-4)


def test_w2v_weights_missing_a_tensor_are_refused(tmp_path):
    folder = save_tiny_w2v_bert(tmp_path / "w2v", hidden_size=W2V_WIDTH)
    weights = load_file(folder / "model.safetensors")
    removed = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != removed}, folder / "model.safetensors")
    stats = tmp_path / "stats.pt"
    torch.save({"mean": torch.zeros(W2V_WIDTH), "var": torch.ones(W2V_WIDTH)}, stats)
    with pytest.raises(CheckpointError, match=f"do not fit its config.json.*{removed}"):
        W2VBertFront.from_files(folder, stats)
