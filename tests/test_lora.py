"""LoRA wrapping, the run folder contract (load_trained_run), merging and the merged export."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
import torch
from helpers import file_digests, tiny_overrides, write_extracted_data
from peft import PeftModel

from indextts.inference.adapters import load_trained_run
from indextts.inference.export import export_merged
from indextts.checkpoint_folder import CheckpointFolder
from indextts.cli.export import main as export_main
from indextts.config import load_config
from indextts.errors import CheckpointError
from indextts.lora import LearnedConditions, add_lora, make_lora_config
from indextts.training import DEFAULT_CONFIG, load_train_config, run_training


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, tiny_model_dir):
    """Two short runs: a plain one, and one that adds two special tokens (text vocabulary grows)."""
    root = tmp_path_factory.mktemp("lora_runs")
    info = write_extracted_data(root / "data", int(load_config(tiny_model_dir).gpt.model_dim))
    runs = {}
    for name, extra in (("plain", []), ("tokens", ["train.special_tokens=[<laugh>,<breath>]"])):
        runs[name] = root / name
        run_training(load_train_config(DEFAULT_CONFIG, tiny_overrides(
            tiny_model_dir, info, runs[name], "train.max_steps=3", *extra)))
    return runs


def _latents(gpt, condition: torch.Tensor) -> torch.Tensor:
    text = torch.tensor([[5, 9, 17, 3]])
    codes = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        return gpt.forward_latents(condition.unsqueeze(0), text, torch.tensor([4]), codes, torch.tensor([6]))


def test_lora_targets_only_gpt2_blocks(tiny_model_dir):
    model = add_lora(CheckpointFolder(tiny_model_dir).load_gpt(), make_lora_config(4, 8, 0.0))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".gpt.h." in name and "lora_" in name for name in trainable)
    wrapped = {name.rsplit(".lora_", 1)[0].split(".gpt.h.")[1].split(".", 1)[1] for name in trainable}
    assert wrapped == {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"}


def test_speaker_conditions_pick_rows():
    initial = torch.randn(3, 32, 8)
    speakers = LearnedConditions(["a", "b", "c"], initial)
    assert torch.equal(speakers(torch.tensor([2, 0])), initial[[2, 0]])
    assert set(speakers.as_dict()) == {"a", "b", "c"}


def test_adapter_loads_with_peft_from_pretrained(trained_runs, tiny_model_dir):
    run = trained_runs["plain"]
    base = CheckpointFolder(tiny_model_dir).load_gpt()
    model = PeftModel.from_pretrained(base, str(run / "adapter"))
    assert any("lora_A" in name for name, _ in model.named_parameters())
    config = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == load_train_config(DEFAULT_CONFIG).train.lora.r and config["fan_in_fan_out"] is True


def test_run_folder_matches_the_contract(trained_runs):
    run = trained_runs["tokens"]
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "speakers.safetensors",
                 "speakers.json", "tokenizer/bpe.model", "config.yaml", "train.log"):
        assert (run / name).is_file(), name
    assert not (trained_runs["plain"] / "tokenizer").exists()


@pytest.mark.parametrize("name", ["plain", "tokens"])
def test_merged_and_unmerged_latents_match(trained_runs, tiny_model_dir, name):
    merged = load_trained_run(trained_runs[name], CheckpointFolder(tiny_model_dir).load_gpt(), merge=True)
    unmerged = load_trained_run(trained_runs[name], CheckpointFolder(tiny_model_dir).load_gpt(), merge=False)
    assert set(merged.speakers) == {"alice", "bob"}
    speaker = merged.speakers["alice"]
    assert speaker.condition.shape == (32, 64) and speaker.reference_mel.shape[0] == 100
    want = _latents(unmerged.gpt, speaker.condition)
    torch.testing.assert_close(_latents(merged.gpt, speaker.condition), want, atol=1e-5, rtol=1e-5)
    base = _latents(CheckpointFolder(tiny_model_dir).load_gpt(), speaker.condition)
    assert not torch.allclose(base, want, atol=1e-4)
    assert (merged.tokenizer_path is not None) == (name == "tokens")
    if name == "tokens":
        assert merged.gpt.text_vocab_size == 402


def test_export_merged_loads_strictly(trained_runs, tiny_model_dir, tmp_path):
    out = export_merged(trained_runs["tokens"], tiny_model_dir, tmp_path / "merged")
    exported = CheckpointFolder(out).load_gpt()
    assert exported.text_vocab_size == 402
    merged = load_trained_run(trained_runs["tokens"], CheckpointFolder(tiny_model_dir).load_gpt(), merge=True)
    condition = merged.speakers["bob"].condition
    torch.testing.assert_close(_latents(exported, condition), _latents(merged.gpt, condition), atol=1e-5, rtol=1e-5)
    for name in ("speakers.safetensors", "speakers.json", "bpe.model", "dvae.pth", "bigvgan_generator.pth"):
        assert (out / name).is_file(), name
    stored = torch.load(out / "gpt.pth", weights_only=True)
    assert set(stored) == {"model"}


def assert_export_refused(capsys, run, base, out, protected, *phrases):
    """Run indextts-export and assert the three bad-input promises: status 2, the message, nothing changed."""
    before = file_digests(protected)
    status = export_main([str(run), str(out), "--model_dir", str(base)])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    assert file_digests(protected) == before


def test_export_onto_the_base_folder_is_refused(trained_runs, tiny_model_dir, tmp_path, capsys):
    base = shutil.copytree(tiny_model_dir, tmp_path / "base")  # a copy: a failure must not spoil the shared one
    assert_export_refused(capsys, trained_runs["plain"], base, base, base, f"{base} is the base checkpoint folder",
                    "Name a new folder")
    assert_export_refused(capsys, trained_runs["plain"], base, base / "merged", base, "is inside the base checkpoint")
    assert not (base / "merged").exists()


def test_export_onto_the_run_folder_is_refused(trained_runs, tiny_model_dir, tmp_path, capsys):
    run = shutil.copytree(trained_runs["plain"], tmp_path / "run")
    assert_export_refused(capsys, run, tiny_model_dir, run, run, "is the training run folder")
    assert_export_refused(capsys, run, tiny_model_dir, tmp_path, run, "contains the training run folder")


def test_export_onto_a_folder_with_model_files_is_refused(trained_runs, tiny_model_dir, tmp_path, capsys):
    other = tmp_path / "other_model"
    other.mkdir()
    (other / "gpt.pth").write_bytes(b"user weights")
    (other / "config.yaml").write_text("user: config\n")
    assert_export_refused(capsys, trained_runs["plain"], tiny_model_dir, other, other,
                    "already holds model files (config.yaml, gpt.pth)", "does not exist yet")


def test_an_interrupted_export_leaves_no_folder(trained_runs, tiny_model_dir, tmp_path, monkeypatch):
    copies, copyfile = [], shutil.copyfile

    def interrupted_copy(source, target):  # Ctrl-C while the DVAE and BigVGAN files are copied
        copies.append(target)
        if len(copies) == 2:
            raise KeyboardInterrupt
        return copyfile(source, target)

    monkeypatch.setattr("indextts.inference.export.shutil.copyfile", interrupted_copy)
    with pytest.raises(KeyboardInterrupt):
        export_merged(trained_runs["plain"], tiny_model_dir, tmp_path / "merged")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_adapter_on_a_different_base_is_rejected(trained_runs, tiny_model_dir):
    from indextts.gpt.model import UnifiedVoice

    dims = CheckpointFolder(tiny_model_dir).dims.gpt
    other = UnifiedVoice(replace(dims, number_mel_codes=dims.number_mel_codes + 2))
    with pytest.raises(CheckpointError, match="different base GPT"):
        load_trained_run(trained_runs["plain"], other)


def test_the_voices_patch_equals_the_merged_run_with_added_tokens(trained_runs, tiny_model_dir):
    """IndexTTS keeps a run as LoRA factors + replaced token rows; put on the base they equal PEFT's merge."""
    from indextts.inference import IndexTTS

    tts = IndexTTS.from_pretrained(tiny_model_dir, adapter=trained_runs["tokens"], device="cpu")
    source = tts.library.sources[trained_runs["tokens"].name]
    assert set(source.patch.replaced_rows) == {"text_embedding.weight"}
    assert source.tokenizer.vocab_size == 402
    tts.weights.activate(source.name, source.patch)
    merged = load_trained_run(trained_runs["tokens"], CheckpointFolder(tiny_model_dir).load_gpt(), merge=True).gpt.state_dict()
    patched = tts.models.gpt.state_dict()
    assert all(torch.equal(patched[key], merged[key]) for key in merged)
    assert tts.synthesize("<laugh> hello there.", voice="alice").sentences


def test_loading_a_run_gives_no_peft_vocabulary_warning(trained_runs, tiny_model_dir, caplog):
    """PEFT's "Could not find a config file in <base> - will assume that the vocabulary was not modified"
    appeared on every load (get_peft_model_state_dict probing the base folder for a config.json)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("plain", "tokens"):
            load_trained_run(trained_runs[name], CheckpointFolder(tiny_model_dir).load_gpt(), merge=True)
    messages = [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "Could not find a config file" in m], messages
