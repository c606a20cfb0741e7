"""The tiny checkpoint writer: complete folder, official formats, seeded determinism."""

from __future__ import annotations

import sentencepiece as spm
import torch

from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoint_folder import CheckpointFolder
from indextts.checkpoints import load_state_dict
from indextts.config import load_config
from indextts.tiny import prepare_bpe_text, write_tiny_checkpoints

FILES = ("config.yaml", "gpt.pth", "dvae.pth", "bigvgan_generator.pth", "bpe.model")


def test_folder_is_complete_and_loads(tiny_model_dir, tmp_path):
    # A fresh folder: the shared fixture also holds the GPT fingerprint cache other tests leave beside gpt.pth.
    assert sorted(p.name for p in write_tiny_checkpoints(tmp_path / "tiny", seed=0).iterdir()) == sorted(FILES)
    cfg = load_config(tiny_model_dir)
    assert cfg.gpt.max_mel_tokens >= 300 and cfg.gpt.max_text_tokens >= 200
    assert cfg.gpt.number_mel_codes == cfg.vqvae.num_tokens + 2
    folder = CheckpointFolder(tiny_model_dir)
    folder.load_gpt(), folder.load_dvae(), folder.load_bigvgan()


def test_official_file_formats(tiny_model_dir):
    paths = CheckpointFolder(tiny_model_dir).paths
    assert list(torch.load(paths.gpt, weights_only=True)) == ["model"]
    assert list(torch.load(paths.bigvgan, weights_only=True)) == ["generator"]
    assert "codebook.embed" in torch.load(paths.dvae, weights_only=True)
    assert "conv_pre.weight_g" in load_state_dict(paths.bigvgan, "bigvgan")


def test_tokenizer_like_the_release(tiny_model_dir):
    cfg = load_config(tiny_model_dir)
    processor = spm.SentencePieceProcessor(model_file=str(tiny_model_dir / "bpe.model"))
    assert [processor.id_to_piece(i) for i in range(3)] == ["<s>", "</s>", "<unk>"]
    assert processor.get_piece_size() == cfg.gpt.number_text_tokens
    ids = processor.encode(prepare_bpe_text("今天天气很好, hello world!"))
    assert ids and max(ids) < cfg.gpt.number_text_tokens
    assert prepare_bpe_text("你好world") == "你 好 WORLD"


def test_seeded_determinism(tmp_path, tiny_model_dir):
    again = write_tiny_checkpoints(tmp_path / "again", seed=0)
    other = write_tiny_checkpoints(tmp_path / "other", seed=1)
    for kind, name in (("gpt", "gpt.pth"), ("dvae", "dvae.pth"), ("bigvgan", "bigvgan_generator.pth")):
        reference = load_state_dict(tiny_model_dir / name, kind)
        same = load_state_dict(again / name, kind)
        different = load_state_dict(other / name, kind)
        assert all(torch.equal(reference[k], same[k]) for k in reference)
        assert any(not torch.equal(reference[k], different[k]) for k in reference if reference[k].is_floating_point())
    assert (again / "config.yaml").read_text() == (tiny_model_dir / "config.yaml").read_text()


def test_codes_vary_with_the_input(tiny_model_dir):
    """Speech-like input (a gliding harmonic tone) uses many codes, not a collapsed few."""
    dvae = CheckpointFolder(tiny_model_dir).load_dvae()
    time = torch.arange(3 * 24000) / 24000
    phase = 2 * torch.pi * torch.cumsum(150 + 60 * torch.sin(2 * torch.pi * time), 0) / 24000
    audio = 0.2 * sum(torch.sin(k * phase) / k for k in range(1, 6))
    mel = MelSpectrogramFeatures()(audio)
    assert dvae.get_codebook_indices(mel).unique().numel() > 5
