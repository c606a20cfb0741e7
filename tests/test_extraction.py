"""Tests for indextts.extraction and tools/extract_codec.py (run as a real subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from indextts.audio import MelSpectrogramFeatures, load_audio
from indextts.config import load_config
from indextts.contracts.manifests import read_manifest
from indextts.errors import DataError
from indextts.contracts.audio_list import SkipReason, parse_audio_list, parse_audio_lists
from indextts.contracts.speaker_info import merge_speaker_info, read_speaker_info
from indextts.extraction import find_medoid, split_train_valid
from indextts.extraction.speaker_stats import pairwise_distances

from helpers import (EXTRACT_CLI, REPO_ROOT, all_files, jsonl, kill_extraction_after, run_extract_cli as run_cli,
                     run_process_group, tone)

CLI = EXTRACT_CLI
ROW_KEYS = {"uid", "speaker", "audio", "text", "codes", "condition", "duration", "num_codes", "num_text_tokens",
            "special_tokens"}
INFO_KEYS = {"speaker", "avg_duration", "sample_num", "total_duration_in_seconds", "total_duration_in_minutes",
             "total_duration_in_hours", "train_jsonl", "valid_jsonl", "medoid_condition", "base", "special_tokens",
             "codes_precision", "half_precision_fallback_batches"}


GOOD_AUDIO = [  # file name, seconds, sample rate, channels
    ("a_mono24k.wav", 1.3, 24000, 1),
    ("b_stereo16k.flac", 0.9, 16000, 2),
    ("c_mono44k.ogg", 1.7, 44100, 1),
    ("d_stereo22k.wav", 2.1, 22050, 2),
    ("e_mono48k.flac", 1.1, 48000, 1),
    ("f_mono24k.wav", 0.7, 24000, 1),
]


def write_speaker(folder: Path, model_dir: Path, name: str = "spk", seed: int = 0) -> tuple[Path, dict]:
    """Generate audio plus an audio list with good lines and one bad line of every kind.

    Returns the list path and {line content fragment: expected skip reason}.
    """
    cfg = load_config(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (file_name, seconds, rate, channels) in enumerate(GOOD_AUDIO):
        sf.write(folder / file_name, tone(seconds, rate, 110 + 37 * index + seed, channels, seed + index), rate)
        separator = "|" if index % 2 else "\t"
        lines.append(f"{file_name}{separator}hello world, sentence number {index} for {name}.")
    sample_rate = int(cfg.dataset.sample_rate)
    too_long_seconds = (int(cfg.gpt.max_mel_tokens) + 2) * 4 * int(cfg.dataset.mel.hop_length) / sample_rate
    sf.write(folder / "long.wav", tone(too_long_seconds, sample_rate, 150), sample_rate)
    sf.write(folder / "short.wav", tone(0.2, sample_rate, 150), sample_rate)
    sf.write(folder / "silent.wav", np.zeros(sample_rate, dtype=np.float32), sample_rate)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    sf.write(folder / "wordy.wav", tone(1.0, sample_rate, 150), sample_rate)
    sf.write(folder / "no_text.wav", tone(1.0, sample_rate, 150), sample_rate)
    wordy = " ".join(["hello world"] * (int(cfg.gpt.max_text_tokens) + 10))
    bad = {
        "a line without any separator": SkipReason.MALFORMED_LINE,
        "\tan empty audio path": SkipReason.MALFORMED_LINE,
        "missing.wav\tthis file does not exist": SkipReason.MISSING_FILE,
        f"{GOOD_AUDIO[0][0]}\tthe same file again": SkipReason.DUPLICATE_AUDIO,
        "no_text.wav\t   ": SkipReason.EMPTY_TRANSCRIPT,
        "corrupt.wav\tbroken file": SkipReason.UNREADABLE_AUDIO,
        "silent.wav\tnothing to hear": SkipReason.SILENT_AUDIO,
        "short.wav\ttoo short": SkipReason.TOO_SHORT,
        "long.wav\tfar too long for the model": SkipReason.TOO_MANY_CODES,
        f"wordy.wav\t{wordy}": SkipReason.TOO_MANY_TEXT_TOKENS,
    }
    lines[3:3] = list(bad)
    lines.insert(1, "# a comment line")
    lines.insert(2, "")
    list_path = folder / f"{name}.lst"
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_path, bad


def copy_output(extracted: dict, name: str) -> Path:
    """A copy of the clean run's output beside it (same depth, so relative audio paths still match)."""
    copy = extracted["work"] / name
    shutil.copytree(extracted["output"], copy)
    return copy


# ----------------------------------------------------------------------------- parsing


def test_parse_audio_list_resolves_paths_and_reports_bad_lines(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("x.wav", "sub/x.wav", "y.wav"):
        (tmp_path / name).write_bytes(b"")
    absolute = tmp_path / "y.wav"
    list_path = tmp_path / "reader.lst"
    list_path.write_text(
        "\ufeffx.wav\tfirst | with a bar\n\n# comment\nsub/x.wav|second\n"
        f"{absolute}\tthird\nnothing\nx.wav\tagain\nmissing.wav\tgone\ny.wav\t \n",
        encoding="utf-8")
    parsed = parse_audio_list(list_path)
    assert parsed.speaker == "reader"
    assert [(u.uid, u.audio, u.text, u.line_number) for u in parsed.utterances] == [
        ("x", tmp_path / "x.wav", "first | with a bar", 1),
        ("x_L4", tmp_path / "sub" / "x.wav", "second", 4),
        ("y", absolute, "third", 5),
    ]
    assert [(s.line_number, s.reason) for s in parsed.skipped] == [
        (6, SkipReason.MALFORMED_LINE), (7, SkipReason.DUPLICATE_AUDIO),
        (8, SkipReason.MISSING_FILE), (9, SkipReason.EMPTY_TRANSCRIPT),
    ]
    assert parse_audio_list(list_path, speaker="narrator").speaker == "narrator"


def test_parse_rejects_non_utf8_and_unusable_lists(tmp_path):
    latin = tmp_path / "latin.lst"
    latin.write_bytes("a.wav\tok\nb.wav\tcaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8.*line 2"):
        parse_audio_list(latin)
    useless = tmp_path / "useless.lst"
    useless.write_text("missing.wav\thi\nno separator\n", encoding="utf-8")
    with pytest.raises(DataError, match="No usable line"):
        parse_audio_lists([useless])
    with pytest.raises(DataError, match="same speaker"):
        parse_audio_lists([useless, useless])
    with pytest.raises(DataError, match="speaker name"):
        parse_audio_list(useless, speaker="a/b")


def test_cli_rejects_bad_list_before_loading_models(tmp_path):
    latin = tmp_path / "latin.lst"
    latin.write_bytes("a.wav\tcaf\u00e9\n".encode("latin-1"))
    result = run_cli("--audio_list", latin, "--model_dir", tmp_path / "no_models", check_rc=2)
    assert "not UTF-8" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / "x.wav").write_bytes(b"")
    empty = tmp_path / "empty.lst"
    empty.write_text("x.wav\t\n", encoding="utf-8")
    result = run_cli("--audio_list", empty, "--model_dir", tmp_path / "no_models", check_rc=2)
    assert "No usable line" in result.stderr


# ----------------------------------------------------------------------------- split, medoid, speaker_info


@pytest.mark.parametrize("count", [1, 2, 7, 40])
def test_split_is_seeded_disjoint_and_keeps_one_valid_row(count):
    train, valid = split_train_valid(count, 0.1, seed=3)
    assert (train, valid) == split_train_valid(count, 0.1, seed=3)
    assert len(valid) >= 1 and train == sorted(train) and valid == sorted(valid)
    if count == 1:
        assert train == valid == [0]
    else:
        assert sorted(train + valid) == list(range(count))
        assert len(valid) == max(1, round(count * 0.1))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_medoid_matches_brute_force(metric):
    conditions = np.random.default_rng(0).standard_normal((9, 32, 6)).astype(np.float32)
    flat = torch.from_numpy(conditions).reshape(9, -1)
    sums = [sum(float(pairwise_distances(flat[i:i + 1], flat[j:j + 1], metric)) for j in range(9)) for i in range(9)]
    medoid = find_medoid(conditions, metric)
    assert medoid.index == int(np.argmin(sums))
    np.testing.assert_allclose(medoid.summed_distances, sums, rtol=1e-9, atol=1e-9)
    assert medoid.stats()["medoid_mean_distance"] == pytest.approx(min(sums) / 8)


def test_speaker_info_merge_replaces_and_resolves(tmp_path):
    path = tmp_path / "speaker_info.json"

    def entry(name, base=""):
        return {"speaker": name, "avg_duration": 1.0, "sample_num": 2, "total_duration_in_seconds": 2.0,
                "total_duration_in_minutes": 2 / 60, "total_duration_in_hours": 2 / 3600,
                "train_jsonl": f"{base}{name}/metadata_train.jsonl",
                "valid_jsonl": f"{base}{name}/metadata_valid.jsonl",
                "medoid_condition": f"{base}{name}/medoid_condition.npy"}

    merge_speaker_info(path, {"a": entry("a"), "b": entry("b")})
    merge_speaker_info(path, {"a": dict(entry("a"), sample_num=5), "c": entry("c", f"{tmp_path}/elsewhere/")})
    infos = read_speaker_info(path)
    assert [(i.speaker, i.sample_num) for i in infos] == [("a", 5), ("b", 2), ("c", 2)]
    assert infos[0].train_jsonl == tmp_path / "a" / "metadata_train.jsonl"
    assert infos[2].medoid_condition == tmp_path / "elsewhere" / "c" / "medoid_condition.npy"
    merge_speaker_info(path, {"b": None})
    assert [i.speaker for i in read_speaker_info(path)] == ["a", "c"]


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def extracted(tmp_path_factory, tiny_model_dir):
    """One clean extraction of speaker 'spk' with conditions (shared by the end-to-end tests)."""
    work = tmp_path_factory.mktemp("extraction")
    list_path, bad = write_speaker(work / "audio", tiny_model_dir)
    output = work / "out"
    result = run_cli("--audio_list", list_path, "--model_dir", tiny_model_dir, "--output_dir", output,
                     "--extract_condition", "--device", "cpu", "--batch_size", "4", "--num_workers", "2",
                     "--no_progress")
    return {"work": work, "list": list_path, "bad": bad, "output": output, "stdout": result.stdout}


@pytest.mark.slow
def test_outputs_match_the_spec(extracted, tiny_model_dir):
    output, speaker = extracted["output"], extracted["output"] / "spk"
    cfg = load_config(tiny_model_dir)
    rows = [json.loads(line) for line in (speaker / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["uid"] for row in rows] == [Path(name).stem for name, *_ in GOOD_AUDIO]
    for row in rows:
        assert set(row) == ROW_KEYS and row["speaker"] == "spk"
        assert not any(Path(row[key]).is_absolute() for key in ("audio", "codes", "condition"))
        assert (speaker / row["audio"]).resolve() == (extracted["list"].parent / f"{row['uid']}").with_suffix(
            Path((speaker / row["audio"]).name).suffix).resolve()
        codes = np.load(speaker / row["codes"], allow_pickle=False)
        condition = np.load(speaker / row["condition"], allow_pickle=False)
        assert codes.dtype == np.int32 and codes.shape == (row["num_codes"],)
        assert condition.dtype == np.float32 and condition.shape == (32, int(cfg.gpt.model_dim))
        assert row["duration"] == pytest.approx(sf.info(str(speaker / row["audio"])).duration, abs=1e-3)
    train = read_manifest(speaker / "metadata_train.jsonl")
    valid = read_manifest(speaker / "metadata_valid.jsonl")
    assert sorted(r.uid for r in train + valid) == sorted(r["uid"] for r in rows)
    assert len(valid) == max(1, round(len(rows) * 0.1)) and valid[0].codes.is_file()

    skipped = [json.loads(line) for line in (speaker / "skipped.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {s["content"]: s["reason"] for s in skipped} == extracted["bad"]
    assert all(s["detail"] for s in skipped)

    conditions = np.stack([np.load(speaker / row["condition"]) for row in rows])
    medoid = find_medoid(conditions, "euclidean")
    info = json.loads((speaker / "medoid_info.json").read_text(encoding="utf-8"))
    assert info["uid"] == rows[medoid.index]["uid"] and info["metric"] == "euclidean"
    assert info["condition"] == rows[medoid.index]["condition"]
    np.testing.assert_array_equal(np.load(speaker / "medoid_condition.npy"), conditions[medoid.index])

    (entry,) = json.loads((output / "speaker_info.json").read_text(encoding="utf-8"))
    assert set(entry) == INFO_KEYS and entry["sample_num"] == len(rows)
    assert entry["total_duration_in_seconds"] == pytest.approx(sum(r["duration"] for r in rows))
    assert entry["total_duration_in_hours"] == pytest.approx(entry["total_duration_in_seconds"] / 3600)
    (info_entry,) = read_speaker_info(output / "speaker_info.json")
    assert info_entry.train_jsonl == speaker / "metadata_train.jsonl" and info_entry.medoid_condition.is_file()
    assert "kept 6" in extracted["stdout"] and "too_many_codes 1" in extracted["stdout"]
    assert not list(output.rglob("*.tmp.*"))


@pytest.mark.slow
def test_codes_and_conditions_equal_the_models_outputs(extracted, tiny_model_dir):
    from indextts.checkpoint_folder import CheckpointFolder

    cfg = load_config(tiny_model_dir)
    folder = CheckpointFolder(tiny_model_dir)
    dvae, gpt = folder.load_dvae(), folder.load_gpt()
    mel_features = MelSpectrogramFeatures.from_config(cfg.dataset.mel)
    speaker = extracted["output"] / "spk"
    for row, raw in zip(read_manifest(speaker / "metadata.jsonl"), jsonl(speaker / "metadata.jsonl")):
        with torch.inference_mode():
            mel = mel_features(load_audio(speaker / raw["audio"], int(cfg.dataset.sample_rate)))
            codes = dvae.get_codebook_indices(mel)[0]
            condition = gpt.get_conditioning(mel, torch.tensor([mel.shape[-1]]))[0]
        np.testing.assert_array_equal(np.load(row.codes), codes.numpy())
        np.testing.assert_allclose(np.load(speaker / raw["condition"]), condition.numpy(), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_two_speakers_and_a_rerun_keep_one_entry_each(extracted, tiny_model_dir, tmp_path):
    output = copy_output(extracted, "two_speakers")
    other_list, _ = write_speaker(tmp_path / "other_audio", tiny_model_dir, name="other", seed=5)
    common = ["--model_dir", tiny_model_dir, "--output_dir", output, "--extract_condition", "--device", "cpu",
              "--batch_size", "4", "--num_workers", "0", "--no_progress"]
    run_cli("--audio_list", other_list, "--speaker", "second", *common)
    rerun = run_cli("--audio_list", extracted["list"], *common)
    assert "computed 0" in rerun.stdout
    infos = read_speaker_info(output / "speaker_info.json")
    assert [i.speaker for i in infos] == ["spk", "second"]
    assert all(i.sample_num == len(GOOD_AUDIO) for i in infos)
    assert all_files(output / "spk") == all_files(extracted["output"] / "spk")


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_uninterrupted_result(extracted, tiny_model_dir):
    output = copy_output(extracted, "resumed")
    speaker = output / "spk"
    # What a kill -9 can leave: arrays without their record, a record without a condition, a
    # stale temp file, and no speaker-level files yet.
    (speaker / ".extraction" / "a_mono24k.json").unlink()
    (speaker / "conditions" / "c_mono44k.npy").unlink()
    (speaker / ".extraction" / "silent.json").unlink()
    (speaker / "codes" / "f_mono24k.npy").write_bytes(b"\x93NUMPY truncated")
    (speaker / "codes" / ".b_stereo16k.npy.tmp.12345").write_bytes(b"partial")
    for name in ("metadata.jsonl", "metadata_train.jsonl", "metadata_valid.jsonl", "medoid_condition.npy",
                 "medoid_info.json", "skipped.jsonl"):
        (speaker / name).unlink()
    (output / "speaker_info.json").unlink()
    resumed = run_cli("--audio_list", extracted["list"], "--model_dir", tiny_model_dir, "--output_dir", output,
                      "--extract_condition", "--device", "cpu", "--batch_size", "4", "--num_workers", "1",
                      "--no_progress")
    assert "reused" in resumed.stdout and "computed 0" not in resumed.stdout
    assert all_files(output) == all_files(extracted["output"])


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(extracted, tiny_model_dir):
    output = extracted["work"] / "killed"
    args = ["--audio_list", extracted["list"], "--model_dir", tiny_model_dir, "--output_dir", output,
            "--extract_condition", "--device", "cpu", "--batch_size", "1", "--num_workers", "0", "--no_progress"]
    kill_extraction_after(args, output / "spk" / ".extraction")
    assert not (output / "speaker_info.json").exists(), "the run finished before it could be killed"
    run_cli(*args)
    assert all_files(output) == all_files(extracted["output"])


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_equal_one_process(extracted, tiny_model_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    output = extracted["work"] / "torchrun"
    result = run_process_group(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(CLI),
         "--audio_list", str(extracted["list"]), "--model_dir", str(tiny_model_dir), "--output_dir", str(output),
         "--extract_condition", "--device", "cpu", "--batch_size", "4", "--num_workers", "0", "--no_progress"],
        timeout=600, env=env, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    single, sharded = all_files(extracted["output"]), all_files(output)
    assert sharded.keys() == single.keys()
    # Conditions are computed per utterance in both runs; only the thread count differs.
    floats = [k for k in single if k.startswith(("spk/conditions/", "spk/medoid_condition"))]
    assert {k: v for k, v in sharded.items() if k not in floats} == {k: v for k, v in single.items() if k not in floats}
    for key in floats:
        np.testing.assert_allclose(np.load(output / key), np.load(extracted["output"] / key), atol=1e-5, rtol=1e-5)


def test_codes_only_run_without_conditions(tmp_path, tiny_model_dir):
    sample_rate = int(load_config(tiny_model_dir).dataset.sample_rate)
    for index in range(2):
        sf.write(tmp_path / f"u{index}.wav", tone(1.0 + index, sample_rate, 140 + 60 * index), sample_rate)
    list_path = tmp_path / "codes_only.lst"
    list_path.write_text("u0.wav\tfirst sentence\nu1.wav|second sentence\n", encoding="utf-8")
    output = tmp_path / "out"
    run_cli("--audio_list", list_path, "--model_dir", tiny_model_dir, "--output_dir", output, "--device", "cpu",
            "--num_workers", "0", "--no_progress")
    rows = jsonl(output / "codes_only" / "metadata.jsonl")
    assert [row.uid for row in read_manifest(output / "codes_only" / "metadata.jsonl")] == ["u0", "u1"]
    assert all(row["condition"] is None for row in rows)
    assert not (output / "codes_only" / "conditions").exists()
    (info,) = read_speaker_info(output / "speaker_info.json")
    assert info.medoid_condition is None and info.sample_num == 2
    train, valid = read_manifest(info.train_jsonl), read_manifest(info.valid_jsonl)
    assert len(train) == len(valid) == 1 and train[0].uid != valid[0].uid


def test_nothing_usable_exits_nonzero(tmp_path, tiny_model_dir):
    sample_rate = int(load_config(tiny_model_dir).dataset.sample_rate)
    sf.write(tmp_path / "silent.wav", np.zeros(sample_rate, dtype=np.float32), sample_rate)
    list_path = tmp_path / "quiet.lst"
    list_path.write_text("silent.wav\tnothing here\n", encoding="utf-8")
    result = run_cli("--audio_list", list_path, "--model_dir", tiny_model_dir, "--output_dir", tmp_path / "out",
                     "--device", "cpu", "--num_workers", "0", "--no_progress", check_rc=2)
    assert "No utterance could be kept" in result.stderr
    skipped = [json.loads(line) for line in (tmp_path / "out" / "quiet" / "skipped.jsonl").read_text().splitlines()]
    assert [s["reason"] for s in skipped] == [SkipReason.SILENT_AUDIO]
