"""Extraction on awkward input (issue 13 items 1-5, 7) and its compute paths (issue 12).

Each bad-input test checks the message a user sees, the exit status and that nothing written
before changed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from helpers import REPO_ROOT, all_files, conformance_folders, jsonl, run_extract_cli, tone
from indextts.audio import load_audio
from indextts.checkpoint_folder import CheckpointFolder
from indextts.cli.extract import build_parser, main
from indextts.errors import AudioError, DataError
from indextts.contracts.audio_list import SkipReason, parse_audio_list
from indextts.extraction.features import FeatureModels, pad_mels

MODEL_GOLDENS = conformance_folders("expected.safetensors")
UNSPEAKABLE = ["???!!!", "😀🎉", "。。。", "Привет"]
LAUGH = "hello <laugh> world, how are you?"


def _sample_rate(model_dir: Path) -> int:
    return CheckpointFolder(model_dir).sample_rate


def _write_list(folder: Path, name: str, transcripts: list[str], model_dir: Path, seed: int = 0) -> Path:
    """One audio file per transcript (distinct tones) and the list naming them."""
    rate = _sample_rate(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, text in enumerate(transcripts):
        sf.write(folder / f"{name}{index}.wav", tone(1.0 + 0.1 * index, rate, 120 + 20 * index + seed, seed=index), rate)
        lines.append(f"{name}{index}.wav\t{text}")
    list_path = folder / f"{name}.lst"
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_path


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, tiny_model_dir):
    """One extraction (2 decoding workers) over good, unspeakable, special-token and corrupt lines."""
    work = tmp_path_factory.mktemp("inputs")
    transcripts = ["hello world, this line is fine.", *UNSPEAKABLE, LAUGH, "这句话也没有问题。"]
    list_path = _write_list(work / "audio", "spk", transcripts, tiny_model_dir)
    (work / "audio" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    with list_path.open("a", encoding="utf-8") as handle:
        handle.write("corrupt.wav\tbroken file\n")
    output = work / "out"
    result = run_extract_cli("--audio_list", list_path, "--model_dir", tiny_model_dir, "--output_dir", output,
                             "--extract_condition", "--device", "cpu", "--num_workers", "2", "--no_progress")
    return {"work": work, "list": list_path, "output": output, "result": result}


@pytest.mark.slow
def test_unspeakable_transcripts_are_skipped_not_fatal(mixed_run):
    result, speaker = mixed_run["result"], mixed_run["output"] / "spk"
    assert "Traceback" not in result.stderr
    skipped = {s["line"]: s for s in jsonl(speaker / "skipped.jsonl")}
    for line, text in enumerate(UNSPEAKABLE, start=2):
        assert skipped[line]["reason"] == SkipReason.UNSPEAKABLE_TRANSCRIPT and skipped[line]["text"] == text
        assert "nothing speakable" in skipped[line]["detail"]
    assert [row["uid"] for row in jsonl(speaker / "metadata.jsonl")] == ["spk0", "spk5", "spk6"]
    assert "unspeakable_transcript 4" in result.stdout


@pytest.mark.slow
def test_special_tokens_are_kept_and_listed(mixed_run, tiny_model_dir):
    speaker = mixed_run["output"] / "spk"
    rows = {row["uid"]: row for row in jsonl(speaker / "metadata.jsonl")}
    assert rows["spk5"]["text"] == LAUGH and rows["spk5"]["special_tokens"] == ["<laugh>"]
    assert rows["spk0"]["special_tokens"] == [] and rows["spk6"]["special_tokens"] == []
    grown = CheckpointFolder(tiny_model_dir).tokenizer().with_special_tokens(["<laugh>"])
    assert rows["spk5"]["num_text_tokens"] == len(grown.encode(LAUGH))
    (entry,) = json.loads((mixed_run["output"] / "speaker_info.json").read_text(encoding="utf-8"))
    assert entry["special_tokens"] == ["<laugh>"]


@pytest.mark.slow
def test_speaker_info_records_the_base_fingerprint(mixed_run, tiny_model_dir):
    (entry,) = json.loads((mixed_run["output"] / "speaker_info.json").read_text(encoding="utf-8"))
    assert entry["base"] == CheckpointFolder(tiny_model_dir).identity()
    assert set(entry["base"]) == {"gpt_sha256", "bpe_sha256"} and all(len(v) == 64 for v in entry["base"].values())
    assert entry["codes_precision"] == {"fp32": 3} and entry["half_precision_fallback_batches"] == 0


@pytest.mark.slow
def test_unreadable_audio_detail_has_one_full_stop(mixed_run):
    (corrupt,) = [s for s in jsonl(mixed_run["output"] / "spk" / "skipped.jsonl") if s["reason"] == "unreadable_audio"]
    assert ".." not in corrupt["detail"] and "Convert it to WAV or FLAC" in corrupt["detail"]


@pytest.mark.slow
def test_failed_reextraction_keeps_previous_entry_and_files(mixed_run, tiny_model_dir, tmp_path):
    output = mixed_run["work"] / "failed_rerun"
    shutil.copytree(mixed_run["output"], output)
    previous_entries = json.loads((output / "speaker_info.json").read_text(encoding="utf-8"))
    before = {k: v for k, v in all_files(output).items() if "/.extraction/" not in k and k != "speaker_info.json"}
    # The same speaker's list again, now with every recording silent, together with a good new speaker.
    audio = tmp_path / "audio"
    shutil.copytree(mixed_run["list"].parent, audio)
    rate = _sample_rate(tiny_model_dir)
    for wav in audio.glob("spk*.wav"):
        sf.write(wav, np.zeros(rate, dtype=np.float32), rate)
    other = _write_list(tmp_path / "other", "other", ["a good sentence.", "another good one."], tiny_model_dir)
    result = run_extract_cli("--audio_list", audio / "spk.lst", "--audio_list", other, "--model_dir", tiny_model_dir,
                             "--output_dir", output, "--extract_condition", "--device", "cpu", "--num_workers", "0",
                             "--no_progress", check_rc=2)
    assert "speaker 'spk'" in result.stderr and "has no usable utterance" in result.stderr
    assert "silent_audio 3" in result.stderr and "kept unchanged" in result.stderr
    assert "Traceback" not in result.stderr
    after = all_files(output)
    assert {k: after[k] for k in before} == before, "a file of the failed speaker changed"
    entries = json.loads((output / "speaker_info.json").read_text(encoding="utf-8"))
    assert [e["speaker"] for e in entries] == ["spk", "other"]
    assert entries[0] == previous_entries[0] and entries[1]["sample_num"] == 2


def test_uid_clash_is_refused_naming_both_lines(tmp_path, tiny_model_dir, capsys):
    for name in ("x/a.wav", "y/a.wav", "a_L2.wav"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    list_path = tmp_path / "clash.lst"
    list_path.write_text("x/a.wav\tone\ny/a.wav\ttwo\na_L2.wav\tthree\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"Lines 2 .* and 3 .* both get the utterance id 'a_L2'.*Rename one"):
        parse_audio_list(list_path)
    output = tmp_path / "out"
    assert main(["--audio_list", str(list_path), "--model_dir", str(tiny_model_dir), "--output_dir", str(output),
                 "--device", "cpu", "--no_progress"]) == 2
    assert "both get the utterance id 'a_L2'" in capsys.readouterr().err
    assert not output.exists()


def test_distinct_stems_keep_their_names_and_repeats_get_the_line(tmp_path):
    for name in ("x/a.wav", "y/a.wav", "b.wav"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    list_path = tmp_path / "ok.lst"
    list_path.write_text("x/a.wav\tone\nb.wav\ttwo\ny/a.wav\tthree\n", encoding="utf-8")
    assert [u.uid for u in parse_audio_list(list_path).utterances] == ["a", "b", "a_L3"]


def test_audio_list_that_is_a_folder(tmp_path, capsys):
    assert main(["--audio_list", str(tmp_path), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"The audio list {tmp_path} is a folder" in err and "does not exist" not in err
    assert "--audio_list" in err and "Traceback" not in err


def test_folder_named_on_a_list_line_is_called_a_folder(tmp_path, tiny_model_dir, capsys):
    """Issue 25 item 12: a line naming a folder was reported as 'missing_file ... does not exist'."""
    list_path = _write_list(tmp_path / "audio", "spk", ["fine text."], tiny_model_dir)
    (tmp_path / "audio" / "recordings").mkdir()
    with list_path.open("a", encoding="utf-8") as handle:
        handle.write("recordings\ta folder, not a clip\n")
    skipped = parse_audio_list(list_path).skipped
    assert [(s.line_number, s.reason) for s in skipped] == [(2, SkipReason.NOT_A_FILE)]
    assert f"{tmp_path / 'audio' / 'recordings'} is a folder, not an audio file" in skipped[0].detail
    assert "does not exist" not in skipped[0].detail and "indextts-prepare" in skipped[0].detail

    only_folders = tmp_path / "audio" / "folders.lst"
    only_folders.write_text("recordings\ta folder\n", encoding="utf-8")
    before = all_files(tmp_path)
    code = main(["--audio_list", str(only_folders), "--model_dir", str(tiny_model_dir),
                 "--output_dir", str(tmp_path / "out"), "--device", "cpu", "--no_progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"No usable line in {only_folders}" in err and "not_a_file" in err
    assert "Traceback" not in err and all_files(tmp_path) == before and not (tmp_path / "out").exists()


def test_output_dir_under_a_file(tmp_path, tiny_model_dir, capsys):
    list_path = _write_list(tmp_path / "audio", "spk", ["fine text."], tiny_model_dir)
    blocker = tmp_path / "taken"
    blocker.write_text("keep me", encoding="utf-8")
    code = main(["--audio_list", str(list_path), "--model_dir", str(tiny_model_dir),
                 "--output_dir", str(blocker / "out"), "--device", "cpu", "--no_progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"{blocker} is a file, not a folder" in err and "--output_dir" in err
    assert "File exists" not in err and blocker.read_text(encoding="utf-8") == "keep me"


def test_audio_error_has_one_full_stop(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnope")
    with pytest.raises(AudioError) as error:
        load_audio(bad)
    assert ".." not in str(error.value) and ". Convert it" in str(error.value)


def test_parser_uses_the_shared_precision_words():
    args = build_parser().parse_args(["--audio_list", "a.lst"])
    assert (args.precision, args.device, args.condition_batching) == ("auto", "auto", "auto")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--audio_list", "a.lst", "--precision", "half"])


# ----------------------------------------------------------------------------- compute paths (issue 12)


class _FlakyHalfDVAE:
    """Codes = argmax over mel bins per 4 frames; under autocast, batches marked by a 9.0 in their
    first frame get one code changed (as a half-precision rounding flip would)."""

    def code_lengths(self, mel_lengths):
        return (mel_lengths + 3) // 4

    def get_codebook_indices(self, mel, lengths):
        codes = mel[:, :, ::4].argmax(dim=1)
        if torch.is_autocast_enabled("cpu") and bool((mel[:, 0, 0] == 9.0).any()):
            codes = codes.clone()
            codes[0, 0] += 1
        return codes


class _CountingDVAE(_FlakyHalfDVAE):
    """The flaky DVAE that counts its passes."""

    passes = 0

    def get_codebook_indices(self, mel, lengths):
        self.passes += 1
        return super().get_codebook_indices(mel, lengths)


def test_sampled_half_precision_check_runs_the_dvae_once_per_later_batch():
    generator = torch.Generator().manual_seed(0)
    clean = [torch.rand(5, 12, generator=generator), torch.rand(5, 8, generator=generator)]
    flaky = [m.clone() for m in clean]
    flaky[0][0, 0] = 9.0
    trusted = FeatureModels(_CountingDVAE(), None, torch.device("cpu"), precision="bf16", check_batches=2)
    kinds = [trusted(mels).codes_precision for mels in (clean, clean, clean, clean)]
    assert kinds == ["bf16"] * 4 and trusted.dvae.passes == 2 * 2 + 2 and trusted.unchecked_batches == 2
    doubted = FeatureModels(_CountingDVAE(), None, torch.device("cpu"), precision="bf16", check_batches=2)
    kinds = [doubted(mels).codes_precision for mels in (clean, flaky, clean, flaky)]
    assert kinds == ["bf16", "fp32", "fp32", "fp32"] and doubted.dvae.passes == 2 * 2 + 2
    assert (doubted.fallback_batches, doubted.unchecked_batches) == (1, 0)
    reference = [m[:, ::4].argmax(dim=0).numpy().astype(np.int32) for m in flaky]
    assert all(np.array_equal(a, b) for a, b in zip(doubted(flaky).codes, reference))  # fp32 after a disagreement


def test_half_precision_falls_back_per_batch_and_counts():
    models = FeatureModels(_FlakyHalfDVAE(), None, torch.device("cpu"), precision="bf16")
    generator = torch.Generator().manual_seed(0)
    clean = [torch.rand(5, 12, generator=generator), torch.rand(5, 8, generator=generator)]
    flaky = [m.clone() for m in clean]
    flaky[0][0, 0] = 9.0
    first, second, third = models(clean), models(flaky), models(clean)
    assert (first.codes_precision, second.codes_precision, third.codes_precision) == ("bf16", "fp32", "bf16")
    assert (models.batches, models.fallback_batches) == (3, 1)
    reference = [m[:, ::4].argmax(dim=0).numpy().astype(np.int32) for m in flaky]
    for got, expected in zip(second.codes, reference):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("folder", MODEL_GOLDENS, ids=[p.name for p in MODEL_GOLDENS])
def test_batched_conditions_equal_each_clip_alone(folder):
    """cond_batch rows must equal cond_i (the reference leaks padding into the shorter row; we do not)."""
    expected = load_file(folder / "expected.safetensors")
    checkpoint = CheckpointFolder(folder)
    gpt = checkpoint.load_gpt("cpu")
    mels = [expected["mel_0"], expected["mel_1"]]
    assert mels[0].shape[-1] != mels[1].shape[-1], "the golden mels must differ in length to test padding"
    batched = FeatureModels(checkpoint.load_dvae("cpu"), gpt, torch.device("cpu"), batch_conditions=True)(mels)
    single = FeatureModels(checkpoint.load_dvae("cpu"), gpt, torch.device("cpu"), batch_conditions=False)(mels)
    for index in range(2):
        torch.testing.assert_close(torch.from_numpy(batched.conditions[index]), expected[f"cond_{index}"],
                                   atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(batched.conditions[index], single.conditions[index], atol=1e-5, rtol=1e-5)
        assert batched.conditions[index].shape == (checkpoint.condition_latents, int(checkpoint.cfg.gpt.model_dim))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_half_precision_extraction_check_on_cuda(tiny_model_dir):
    """fp16 codes are checked against fp32 on every batch: what is kept always equals fp32 codes."""
    checkpoint = CheckpointFolder(tiny_model_dir)
    device = torch.device("cuda")
    dvae, gpt = checkpoint.load_dvae(device), checkpoint.load_gpt(device)
    generator = torch.Generator().manual_seed(0)
    n_mels = int(checkpoint.cfg.dataset.mel.n_mels)
    half = FeatureModels(dvae, gpt, device, precision="fp16", batch_conditions=True)
    full = FeatureModels(dvae, gpt, device, precision="fp32", batch_conditions=False)
    for _ in range(4):
        mels = [torch.randn(n_mels, int(length), generator=generator) - 4
                for length in torch.randint(40, 400, (8,), generator=generator)]
        got, reference = half(mels), full(mels)
        for a, b in zip(got.codes, reference.codes):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(got.conditions, reference.conditions):
            np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    assert half.batches == 4 and 0 <= half.fallback_batches <= 4
    batch, lengths = pad_mels(mels)
    assert batch.shape[0] == len(lengths) == 8


@pytest.mark.parametrize("command", [["-m", "indextts.cli.extract"], ["tools/extract_codec.py"]])
def test_entry_points_show_help(command):
    result = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0 and "--condition_batching" in result.stdout and "indextts-extract" in result.stdout


def test_speaker_entry_counts_fallback_batches(tmp_path):
    from indextts.contracts.audio_list import SpeakerList, Utterance
    from indextts.extraction.speaker_files import SpeakerAssembler, SpeakerSettings

    utterances = [Utterance("spk", f"u{i}", tmp_path / f"u{i}.wav", "text", tmp_path / "spk.lst", i + 1, "")
                  for i in range(5)]
    batches = ["u0", "u0", "u2", "u2", "u4"]
    precisions = ["fp16", "fp16", "fp32", "fp32", "fp32"]
    records = [{"status": "done", "duration": 1.0, "num_codes": 4, "num_text_tokens": 2, "special_tokens": [],
                "codes_precision": p, "codes_batch": b} for p, b in zip(precisions, batches)]
    settings = SpeakerSettings(tmp_path / "out", 0.2, 0, "euclidean", False, {"gpt_sha256": "g", "bpe_sha256": "b"},
                               "fp16")
    summary, entry = SpeakerAssembler(settings, set()).assemble(SpeakerList("spk", tmp_path / "spk.lst", utterances),
                                                                records)
    assert summary.kept == 5 and entry["codes_precision"] == {"fp16": 2, "fp32": 3}
    assert entry["half_precision_fallback_batches"] == 2 and entry["base"] == {"gpt_sha256": "g", "bpe_sha256": "b"}
