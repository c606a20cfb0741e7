"""Voices as first-class: adapter identity, many runs on one base, switching in place, exported folders."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import write_lora_run

from indextts.inference.adapters import load_trained_run
from indextts.inference.export import export_merged
from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoint_folder import CheckpointFolder
from indextts.cli.infer import main
from indextts.errors import CheckpointError, InferenceError, VoiceNotFoundError
from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.tiny import write_tiny_checkpoints

GREEDY = SynthesisOptions(GenerationConfig(max_new_tokens=8, num_beams=1, do_sample=False), pause_seconds=0.05)
TEXT = "今天天气很好，我们去公园散步吧。"


def _codes(result) -> list[list[int]]:
    return [c.tolist() for c in result.codes]


@pytest.fixture(scope="module")
def reference_mel(tiny_model_dir) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    audio = 0.3 * torch.sin(torch.arange(48000) * 2 * torch.pi * 150 / 24000) + 0.01 * torch.randn(48000, generator=generator)
    return MelSpectrogramFeatures.from_config(CheckpointFolder(tiny_model_dir).cfg.dataset.mel)(audio)[0]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, reference_mel, tmp_path_factory) -> dict:
    """Two runs on the tiny base (other adapters and speakers), both recording the base identity."""
    root = tmp_path_factory.mktemp("voice_runs")
    identity = CheckpointFolder(tiny_model_dir).identity()
    return {name: write_lora_run(root / name, CheckpointFolder(tiny_model_dir).load_gpt(), reference_mel, seed=seed,
                                 identity=identity, model_dir=tiny_model_dir)
            for name, seed in (("first", 0), ("second", 1))}


@pytest.fixture(scope="module")
def other_base(tmp_path_factory):
    """A base of the same shapes as the tiny one but other weights (another seed)."""
    return write_tiny_checkpoints(tmp_path_factory.mktemp("other_base"), seed=1)


@pytest.fixture(scope="module")
def both(tiny_model_dir, runs) -> IndexTTS:
    return IndexTTS.from_pretrained(tiny_model_dir, adapters=runs, device="cpu")


@pytest.fixture(scope="module")
def first_only(tiny_model_dir, runs) -> IndexTTS:
    return IndexTTS.from_pretrained(tiny_model_dir, adapter=runs["first"], device="cpu")


# ---- identity ------------------------------------------------------------------------------------

def test_a_run_on_other_base_weights_is_refused_naming_both_fingerprints(other_base, runs):
    with pytest.raises(CheckpointError) as error:
        IndexTTS.from_pretrained(other_base, adapter=runs["first"], device="cpu")
    message = str(error.value)
    assert "GPT weights" in message and CheckpointFolder(other_base).gpt_fingerprint in message
    assert "--allow_base_mismatch" in message and "tokenizer" not in message


def test_a_run_with_another_tokenizer_is_refused(tiny_model_dir, reference_mel, tmp_path):
    identity = {**CheckpointFolder(tiny_model_dir).identity(), "bpe_sha256": "0" * 64}
    run = write_lora_run(tmp_path / "run", CheckpointFolder(tiny_model_dir).load_gpt(), reference_mel, identity=identity)
    with pytest.raises(CheckpointError, match=r"tokenizer \(bpe.model\): run trained on 0{64}"):
        IndexTTS.from_pretrained(tiny_model_dir, adapter=run, device="cpu")


def test_the_override_loads_a_mismatched_run_with_a_warning(other_base, runs, caplog, capsys, tmp_path):
    with caplog.at_level(logging.WARNING, logger="indextts.inference.adapters"):
        tts = IndexTTS.from_pretrained(other_base, adapter=runs["first"], device="cpu", allow_base_mismatch=True)
    assert "allow_base_mismatch" in caplog.text and "may sound wrong" in caplog.text
    assert [v.id for v in tts.voices] == ["first:alice", "first:bob"]
    output = tmp_path / "o.wav"
    flags = ["--model_dir", str(other_base), "--adapter", str(runs["first"]), "--speaker", "alice", "--text", TEXT,
             "--output", str(output), "--device", "cpu", "--max_mel_tokens", "8", "--num_beams", "1"]
    assert main(flags) == 2 and "--allow_base_mismatch" in capsys.readouterr().err and not output.exists()
    assert main([*flags, "--allow_base_mismatch"]) == 0 and output.is_file()


def test_a_run_without_a_fingerprint_loads_with_a_notice(tiny_model_dir, reference_mel, tmp_path, caplog):
    run = write_lora_run(tmp_path / "old_run", CheckpointFolder(tiny_model_dir).load_gpt(), reference_mel)
    with caplog.at_level(logging.INFO, logger="indextts.inference.adapters"):
        tts = IndexTTS.from_pretrained(tiny_model_dir, adapter=run, device="cpu")
    notices = [r for r in caplog.records if "predates base fingerprints" in r.getMessage()]
    assert len(notices) == 1 and len(tts.voices) == 2


# ---- many voices on one base ---------------------------------------------------------------------

def test_voice_ids_and_names(both, runs):
    assert [(v.id, v.run, v.speaker) for v in both.voices] == [
        ("first:alice", "first", "alice"), ("first:bob", "first", "bob"),
        ("second:alice", "second", "alice"), ("second:bob", "second", "bob")]
    with pytest.raises(VoiceNotFoundError, match="ambiguous: first:alice, second:alice"):
        both.synthesize(TEXT, voice="alice", options=GREEDY)
    with pytest.raises(VoiceNotFoundError, match="first:alice, first:bob, second:alice, second:bob"):
        both.synthesize(TEXT, voice="carol", options=GREEDY)


def test_switching_voices_never_reloads_the_base_and_restores_it_exactly(tiny_model_dir, runs, first_only,
                                                                         monkeypatch, reference_mel, tmp_path):
    third_base = CheckpointFolder(tiny_model_dir).load_gpt()  # loaded before the loads are counted
    loads = []
    for loader in ("load_gpt", "load_speech_models"):  # every way the base GPT can be loaded is counted
        original = getattr(CheckpointFolder, loader)
        monkeypatch.setattr(CheckpointFolder, loader,
                            lambda self, *a, _original=original, **k: loads.append(1) or _original(self, *a, **k))
    tts = IndexTTS.from_pretrained(tiny_model_dir, adapters=runs, device="cpu")
    base = {k: v.clone() for k, v in tts.models.gpt.state_dict().items()}
    sequence = ["first:alice", "second:bob", "first:alice", "second:alice", "first:bob"]
    results = [tts.synthesize(TEXT, voice=voice, options=GREEDY) for voice in sequence]
    assert loads == [1] and tts.weights.switches >= len(sequence)
    assert _codes(results[0]) == _codes(results[2]) == _codes(first_only.synthesize(TEXT, voice="alice", options=GREEDY))
    assert _codes(results[0]) != _codes(results[1])
    tts.add_voice("third", write_lora_run(tmp_path / "third", third_base, reference_mel, seed=2))
    tts.synthesize(TEXT, voice="third:bob", options=GREEDY)
    assert loads == [1]
    tts.weights.restore()
    assert all(torch.equal(value, base[key]) for key, value in tts.models.gpt.state_dict().items())


def test_the_patch_on_the_base_equals_peft_merge_and_costs_only_the_lora_weights(tiny_model_dir, runs, first_only):
    merged = load_trained_run(runs["first"], CheckpointFolder(tiny_model_dir).load_gpt(), merge=True).gpt.state_dict()
    source = first_only.library.sources["first"]
    first_only.weights.activate("first", source.patch)
    patched = first_only.models.gpt.state_dict()
    assert all(torch.equal(patched[key], merged[key]) for key in merged)
    lora_bytes = sum(v.numel() * v.element_size() for v in load_trained_run(
        runs["first"], CheckpointFolder(tiny_model_dir).load_gpt(), merge=False).gpt.state_dict().values()) - sum(
        v.numel() * v.element_size() for v in merged.values())
    assert source.patch.nbytes == lora_bytes


# ---- exported folders ----------------------------------------------------------------------------

def test_an_exported_folder_speaks_by_speaker_name_with_the_runs_codes(tiny_model_dir, runs, first_only, tmp_path,
                                                                       capsys):
    out = export_merged(runs["first"], tiny_model_dir, tmp_path / "exported")
    exported = IndexTTS.from_pretrained(out, device="cpu")
    assert [v.speaker for v in exported.voices] == ["alice", "bob"]
    for speaker in ("alice", "bob"):
        options = replace(GREEDY, max_text_tokens_per_sentence=12)
        mine = exported.synthesize(TEXT, voice=speaker, options=options)
        theirs = first_only.synthesize(TEXT, voice=speaker, options=options)
        assert _codes(mine) == _codes(theirs)
        np.testing.assert_allclose(mine.waveform, theirs.waveform, atol=1e-3)
    output = tmp_path / "cli.wav"
    assert main(["--model_dir", str(out), "--speaker", "bob", "--text", TEXT, "--output", str(output),
                 "--device", "cpu", "--max_mel_tokens", "8", "--num_beams", "1"]) == 0, capsys.readouterr().err
    assert output.is_file()


def test_export_refuses_a_mismatched_base(other_base, runs, tmp_path):
    with pytest.raises(CheckpointError, match="allow_base_mismatch"):
        export_merged(runs["first"], other_base, tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


def test_from_run_reads_the_base_from_the_run_config(runs, first_only, tmp_path, capsys):
    tts = IndexTTS.from_run(runs["first"], device="cpu")
    assert [v.id for v in tts.voices] == ["first:alice", "first:bob"]
    assert _codes(tts.synthesize(TEXT, voice="bob", options=GREEDY)) == _codes(
        first_only.synthesize(TEXT, voice="bob", options=GREEDY))
    output = tmp_path / "no_model_dir.wav"
    assert main(["--adapter", str(runs["first"]), "--speaker", "first:bob", "--text", TEXT, "--output", str(output),
                 "--device", "cpu", "--max_mel_tokens", "8", "--num_beams", "1"]) == 0, capsys.readouterr().err
    assert output.is_file()


def test_export_command_writes_a_complete_folder(runs, tmp_path, capsys):
    from indextts.cli.export import main as export_main

    assert export_main([str(tmp_path / "missing_run"), str(tmp_path / "out")]) == 2
    assert "missing_run" in capsys.readouterr().err
    assert export_main([str(runs["second"]), str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "gpt.pth", "config.yaml", "bpe.model", "dvae.pth", "bigvgan_generator.pth", "speakers.safetensors",
        "speakers.json", "export.json"}


def test_a_broken_adapter_or_a_taken_name_leaves_the_loaded_voices_untouched(first_only, runs, tmp_path):
    from safetensors.torch import load_file, save_file

    before = _codes(first_only.synthesize(TEXT, voice="alice", options=GREEDY))
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in runs["second"].iterdir():
        (broken / item.name).symlink_to(item)
    (broken / "adapter").unlink()
    (broken / "adapter").mkdir()
    adapter = runs["second"] / "adapter"
    (broken / "adapter" / "adapter_config.json").write_bytes((adapter / "adapter_config.json").read_bytes())
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    save_file(dict(list(tensors.items())[1:]), str(broken / "adapter" / "adapter_model.safetensors"))
    with pytest.raises(CheckpointError, match="missing tensors"):
        first_only.add_voice("broken", broken)
    with pytest.raises(InferenceError, match="already loaded"):
        first_only.add_voice("first", runs["second"])
    assert not any("lora_" in name for name, _ in first_only.models.gpt.named_parameters())
    assert [v.run for v in first_only.voices] == ["first", "first"]
    assert _codes(first_only.synthesize(TEXT, voice="alice", options=GREEDY)) == before
