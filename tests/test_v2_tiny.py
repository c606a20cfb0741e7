"""The tiny IndexTTS-2 / 2.5 folder writer: official layout, strict loading, a smoke pass, determinism, refusal."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import soxr
import torch
from helpers import all_files

from indextts.checkpoint_folder import CheckpointFolder
from indextts.cli.tiny import main as tiny_main
from indextts.errors import ConfigError
from indextts.gpt.generation import GenerationConfig
from indextts.tiny import synthetic_speechlike_audio
from indextts.v2.campplus import campplus_features
from indextts.v2.emotion import mix_emotion
from indextts.v2.gpt.dims import GPTV2Dims
from indextts.v2.s2mel import frames_for_codes
from indextts.v2.s2mel.mel import S2MelSpectrogram
from indextts.v2.semantic.features import frame_counts
from indextts.v2.text25 import language_id
from indextts.v2.tiny import write_tiny_v2_folder
from indextts.v2.vocoder import BigVGANv2Dims

VERSIONS = ("2", "2.5")
SMOKE_STEPS = 3
MAX_CODES = 40
AUDIO_RATE, VOCODER_RATE = 16000, 22050
AUDIO_16K = 2 * AUDIO_RATE
TEXT = "hello world, 今天天气很好"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_v2")
    return {version: write_tiny_v2_folder(root / version, version) for version in VERSIONS}


def test_folder_opens_as_its_family_with_the_official_layout(folders):
    layout = {"2": {"bpe.model", "hf_cache/semantic_codec_model.safetensors"},
              "2.5": {"multilingual_zh_ja_yue_char_del.tiktoken", "codec.pth"}}
    common = {"config.yaml", "gpt.pth", "s2mel.pth", "wav2vec2bert_stats.pt", "feat1.pt", "feat2.pt",
              "hf_cache/campplus_cn_common.bin", "hf_cache/bigvgan/config.json", "hf_cache/bigvgan/bigvgan_generator.pt",
              *(f"hf_cache/w2v-bert-2.0/{n}" for n in ("config.json", "preprocessor_config.json", "model.safetensors"))}
    for version, root in folders.items():
        folder = CheckpointFolder(root)
        assert folder.family.version == version and folder.family.generation == 2
        assert set(all_files(root)) == common | layout[version]
        assert sum(len(data) for data in all_files(root).values()) < 5_000_000
        assert folder.paths.semantic_codec.is_file() and folder.paths.w2v_bert.is_dir()
        assert list(torch.load(folder.paths.gpt, weights_only=True)) == ["model"]
        assert "conv_pre.weight_g" in torch.load(folder.paths.bigvgan / "bigvgan_generator.pt", weights_only=True)["generator"]
        parts = torch.load(folder.paths.s2mel, weights_only=True)["net"]
        assert ("gpt_layer" in parts) == (version == "2")


def _text_ids(folder: CheckpointFolder, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1, L) ids of ``text`` and, for 2.5, its (1,) language id."""
    tokenizer = folder.v2.tokenizer()
    if not folder.family.multilingual:
        return torch.tensor([tokenizer.encode(text)]), None
    ids = tokenizer.encode("<|en|> " + text.lower())
    assert max(ids) < folder.cfg.gpt.number_text_tokens
    assert len(tokenizer.encode(text.lower())) < len(text.lower().encode("utf-8"))  # merges were learned
    return torch.tensor([ids]), torch.tensor([language_id("en")])


@pytest.fixture(scope="module")
def parts(folders):
    """Every part of each folder, loaded strictly through the folder's loaders (``CheckpointFolder.v2``)."""
    loaded = {}
    for version, root in folders.items():
        folder = CheckpointFolder(root)
        models = folder.v2
        loaded[version] = SimpleNamespace(
            folder=folder, front=models.load_semantic_front(), codec=models.load_semantic_codec(),
            campplus=models.load_campplus(), gpt=folder.load_gpt(), matrices=models.load_emotion(),
            s2mel=models.load_s2mel(), vocoder=models.load_vocoder())
    return loaded


def _speech_codes(parts: SimpleNamespace, text: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """16 kHz speaker audio -> w2v-BERT features, codec codes, CAMPPlus style, GPT prefix, greedy codes."""
    folder, gpt = parts.folder, parts.gpt
    audio = synthetic_speechlike_audio(2.0, torch.Generator().manual_seed(seed))[:AUDIO_16K]  # read as 16 kHz
    features, lengths = parts.front.embed_waveforms([audio])
    prompt_codes, quantized, _ = parts.codec.quantize(features, lengths)
    weights = torch.tensor([[0.5, 0, 0, 0, 0, 0, 0, 0.2]])
    with torch.no_grad():
        style = parts.campplus(campplus_features(audio)[None])
        matrices = parts.matrices
        emotion = mix_emotion(matrices.weighted_rows(weights, matrices.most_similar_rows(style)), weights,
                              gpt.emotion_vector(features, lengths))
        speaker = gpt.campplus_conditioning(style) if gpt.uses_campplus else gpt.get_conditioning(features, lengths)
        prefix = gpt.conditioning_prefix(speaker, emotion)
    text_ids, languages = _text_ids(folder, text)
    text_lengths = torch.tensor([text_ids.shape[1]])
    config = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, max_new_tokens=MAX_CODES)
    codes = gpt.generate(prefix, text_ids, text_lengths, config, languages)[0]
    codes = codes[codes != folder.cfg.gpt.stop_mel_token]
    with torch.no_grad():
        latents = gpt.forward_latents(prefix, text_ids, text_lengths, codes[None], torch.tensor([len(codes)]), languages)
    return {"features": features, "prompt_codes": prompt_codes, "quantized": quantized, "style": style,
            "speaker": speaker, "codes": codes, "latents": latents, "audio": audio}


@pytest.mark.parametrize("version", VERSIONS)
def test_smoke_pass_through_every_part(parts, version):
    loaded = parts[version]
    cfg, is_v2 = loaded.folder.cfg, version == "2"
    run = _speech_codes(loaded, TEXT)
    features, prompt_codes = run["features"], run["prompt_codes"]
    assert features.shape == (1, (frame_counts(torch.tensor(AUDIO_16K)) + 1) // 2, cfg.semantic_codec.hidden_size)
    assert torch.isfinite(features).all()
    assert prompt_codes.shape == (1, 1, -(-features.shape[1] // (1 if is_v2 else 2)))  # 50 Hz codes, 2.5: 25 Hz
    assert int(prompt_codes.max()) < cfg.semantic_codec.codebook_size and prompt_codes.unique().numel() > 1
    assert run["style"].shape == (1, cfg.campplus.embedding_size)
    assert run["speaker"].shape[1] == (GPTV2Dims.from_config(cfg).condition_num_latent if is_v2 else 1)
    assert 0 < len(run["codes"]) < MAX_CODES and int(run["codes"].max()) < cfg.gpt.start_mel_token
    codec, codes = loaded.codec, run["codes"][None, None]
    with torch.no_grad():
        if is_v2:
            prompt_features = run["quantized"]
            target = loaded.s2mel.content_features(codec.vq2emb(codes), run["latents"])
        else:
            prompt_features = codec.decode(prompt_codes)[0]
            target = codec.decode(codes)[0]
    audio_22k = torch.from_numpy(soxr.resample(run["audio"].numpy(), AUDIO_RATE, VOCODER_RATE))
    prompt_mel = S2MelSpectrogram.from_config(cfg.s2mel)(audio_22k)
    assert prompt_mel.shape == (1, 80, len(audio_22k) // 256)
    frames = int(frames_for_codes(torch.tensor([len(run["codes"])]))[0])
    noise = torch.randn(1, 80, prompt_mel.shape[-1] + frames, generator=torch.Generator().manual_seed(0))
    mel = loaded.s2mel.infer_mel(prompt_features, prompt_mel, run["style"], target, frames, noise, steps=SMOKE_STEPS)
    assert mel.shape == (1, 80, frames) and torch.isfinite(mel).all()
    with torch.no_grad():
        wave = loaded.vocoder(mel)
    assert BigVGANv2Dims.from_json(loaded.folder.paths.bigvgan / "config.json").sampling_rate == VOCODER_RATE
    assert wave.shape == (1, 1, frames * 256) and torch.isfinite(wave).all() and wave.abs().max() <= 1


def test_greedy_codes_depend_on_text_and_speaker(parts):
    first = _speech_codes(parts["2"], TEXT)["codes"]
    assert not torch.equal(first, _speech_codes(parts["2"], "the quick brown fox")["codes"])
    assert not torch.equal(first, _speech_codes(parts["2"], TEXT, seed=1)["codes"])


def test_same_seed_same_bytes_other_seed_other_weights(folders, tmp_path):
    for version, reference in folders.items():
        assert all_files(write_tiny_v2_folder(tmp_path / f"again{version}", version, seed=0)) == all_files(reference)
    other = all_files(write_tiny_v2_folder(tmp_path / "other", "2", seed=1))
    same = all_files(folders["2"])
    assert other["config.yaml"] == same["config.yaml"]
    assert all(other[name] != same[name] for name in ("gpt.pth", "s2mel.pth", "hf_cache/w2v-bert-2.0/model.safetensors"))


def test_non_empty_target_is_refused_and_left_unchanged(tmp_path, capsys):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    assert tiny_main([str(target), "--release", "2.5"]) == 2
    error = capsys.readouterr().err
    assert "not an empty folder" in error and "Traceback" not in error
    assert all_files(target) == {"keep.txt": b"mine"}
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    with pytest.raises(ConfigError, match="use one of"):
        write_tiny_v2_folder(tmp_path / "new", version="3")


def test_cli_writes_an_empty_target(tmp_path, capsys):
    target = tmp_path / "empty"
    target.mkdir()
    assert tiny_main([str(target), "--release", "2", "--seed", "3"]) == 0
    printed = capsys.readouterr()
    assert "IndexTTS-2" in printed.out and printed.err == ""  # no progress bar of transformers' save
    assert CheckpointFolder(target).family.version == "2"
