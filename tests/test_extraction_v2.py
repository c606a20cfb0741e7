"""Extraction from IndexTTS-2 / 2.5 folders: semantic codes, speaker conditions, emotion vectors, rates.

Runs ``run_extraction`` in-process on the tiny generation-2 folders (two speakers each); the 1.5 path
is covered by test_extraction.py, whose helpers (tones, file snapshots) are reused here.
"""

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

from indextts.audio import load_audio
from indextts.checkpoint_folder import CheckpointFolder
from indextts.contracts.audio_list import SkipReason
from indextts.contracts.manifests import read_manifest
from indextts.contracts.speaker_info import read_speaker_info
from indextts.extraction import ExtractionOptions, find_medoid, run_extraction
from indextts.extraction.semantic_features import SemanticFeatureModels
from indextts.v2.campplus import campplus_features
from indextts.v2.text25 import detect_language, language_id

from helpers import (EXTRACT_CLI, REPO_ROOT, all_files, jsonl, kill_extraction_after, run_extract_cli,
                     run_process_group, tone)

VERSIONS = ("2", "2.5")
CLIPS = [  # file name, seconds, sample rate, transcript
    ("a_24k.wav", 1.1, 24000, "hello world, the first sentence."),
    ("b_44k.wav", 0.8, 44100, "你好世界，第二句。"),
    ("c_16k.flac", 1.5, 16000, "a third and longer sentence here."),
]
FLOAT_ARRAYS = ("/conditions/", "/emotions/", "/medoid_condition.npy", "/medoid_emotion.npy")
BAD = {"corrupt.wav": SkipReason.UNREADABLE_AUDIO, "silent.wav": SkipReason.SILENT_AUDIO,
       "short.wav": SkipReason.TOO_SHORT, "unspeakable.wav": SkipReason.UNSPEAKABLE_TRANSCRIPT}
UNSPEAKABLE = "!!!"
"""Nothing speakable after normalisation, for the IndexTTS-2 tokenizer and the 2.5 preparation alike."""


def write_speaker(folder: Path, name: str, seed: int) -> Path:
    """Three good clips (two at other rates than 16 kHz) plus a bad line of each kind in ``BAD``; the list path."""
    folder.mkdir(parents=True)
    lines = []
    for index, (file_name, seconds, rate, text) in enumerate(CLIPS):
        sf.write(folder / file_name, tone(seconds, rate, 110 + 40 * index + seed, seed=seed + index), rate)
        lines.append(f"{file_name}\t{text}")
    sf.write(folder / "silent.wav", np.zeros(16000, dtype=np.float32), 16000)
    sf.write(folder / "short.wav", tone(0.2, 22050, 150), 22050)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    sf.write(folder / "unspeakable.wav", tone(1.0, 16000, 150), 16000)
    lines += [f"{bad}\t{UNSPEAKABLE if bad == 'unspeakable.wav' else 'bad line'}" for bad in BAD]
    list_path = folder / f"{name}.lst"
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_path


def extract(lists: list[Path], model_dir: Path, output: Path, **options):
    settings = dict(extract_condition=True, device="cpu", batch_size=2, num_workers=0, progress=False)
    return run_extraction(ExtractionOptions(audio_lists=lists, model_dir=model_dir, output_dir=output,
                                            **{**settings, **options}))


@pytest.fixture(scope="module", params=VERSIONS)
def extracted(request, tiny_v2_dirs, tmp_path_factory):
    """One clean extraction of speakers alice and bob with conditions, per family."""
    work = tmp_path_factory.mktemp(f"extract_v{request.param}")
    lists = [write_speaker(work / "audio" / name, name, seed) for seed, name in enumerate(("alice", "bob"))]
    model_dir = tiny_v2_dirs[request.param]
    summary = extract(lists, model_dir, work / "out")
    return {"version": request.param, "model_dir": model_dir, "lists": lists, "work": work,
            "output": work / "out", "summary": summary}


def test_outputs_are_the_models_outputs_with_rates_family_and_base(extracted):
    folder = CheckpointFolder(extracted["model_dir"])
    models, multilingual = folder.v2, extracted["version"] == "2.5"
    front, codec, gpt = models.load_semantic_front(), models.load_semantic_codec(), models.load_gpt()
    campplus = models.load_campplus() if multilingual else None
    infos = read_speaker_info(extracted["output"] / "speaker_info.json")
    assert [info.speaker for info in infos] == ["alice", "bob"]
    for info in infos:
        assert (info.family, info.code_kind, info.base) == (extracted["version"], "semantic", folder.identity())
        assert info.audio_rates == ({"w2v_bert": 16000, "campplus_fbank": 16000} if multilingual
                                    else {"w2v_bert": 16000})
        speaker = info.train_jsonl.parent
        rows = read_manifest(speaker / "metadata.jsonl")
        assert [row.uid for row in rows] == [Path(name).stem for name, *_ in CLIPS]
        for row, raw, (_, _, _, text) in zip(rows, jsonl(speaker / "metadata.jsonl"), CLIPS):
            audio = load_audio(row.audio, 16000)  # resampled once, from the file's rate
            with torch.inference_mode():
                features, lengths = front.embed(audio[None], torch.tensor([audio.shape[-1]]))
                codes = codec.quantize(features, lengths)[0][0, 0]
                speaker_rows = (gpt.campplus_conditioning(campplus(campplus_features(audio)[None]))[0]
                                if multilingual else gpt.get_conditioning(features, lengths)[0])
                emotion = gpt.emotion_vector(features, lengths)[0]
            np.testing.assert_array_equal(np.load(row.codes), codes.numpy().astype(np.int32))
            assert row.code_kind == "semantic" and row.num_codes == codes.shape[0]
            np.testing.assert_allclose(np.load(row.condition), speaker_rows.numpy(), atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(np.load(row.emotion), emotion.numpy(), atol=1e-5, rtol=1e-5)
            language = ("zh" if "你" in text else "en") if multilingual else None
            assert raw.get("language") == language
            assert row.language_id == (None if language is None else language_id(language))
        skipped = {Path(s["audio"]).name: s["reason"] for s in jsonl(speaker / "skipped.jsonl")}
        assert skipped == BAD
        emotions = np.stack([np.load(row.emotion) for row in rows])
        np.testing.assert_array_equal(np.load(info.medoid_emotion), emotions[find_medoid(emotions).index])
        conditions = np.stack([np.load(row.condition) for row in rows])
        np.testing.assert_array_equal(np.load(info.medoid_condition), conditions[find_medoid(conditions).index])


def test_a_rerun_is_byte_identical_and_computes_nothing(extracted):
    before = all_files(extracted["output"])
    summary = extract(extracted["lists"], extracted["model_dir"], extracted["output"])
    assert (summary.computed, summary.reused) == (0, extracted["summary"].computed + extracted["summary"].reused)
    assert all_files(extracted["output"]) == before


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(extracted):
    output = extracted["work"] / "resumed"
    shutil.copytree(extracted["output"], output)
    speaker = output / "alice"
    # What a kill -9 can leave: arrays without their record, a record without its emotion vector, a
    # truncated array, a temp file, and no speaker-level files yet.
    (speaker / ".extraction" / "a_24k.json").unlink()
    (speaker / "emotions" / "b_44k.npy").unlink()
    (speaker / "codes" / "c_16k.npy").write_bytes(b"\x93NUMPY truncated")
    (speaker / "codes" / ".a_24k.npy.tmp.12345").write_bytes(b"partial")
    for name in ("metadata.jsonl", "medoid_emotion.npy", "medoid_emotion.json", "skipped.jsonl"):
        (speaker / name).unlink()
    (output / "speaker_info.json").unlink()
    summary = extract(extracted["lists"], extracted["model_dir"], output)
    assert summary.computed > 0 and summary.reused > 0
    assert all_files(output) == all_files(extracted["output"])


def cli_args(extracted, output: Path, batch_size: int, model_dir: Path | None = None) -> list[str]:
    """indextts-extract's arguments for the fixture's two lists (its model folder unless ``model_dir``)."""
    lists = [arg for path in extracted["lists"] for arg in ("--audio_list", str(path))]
    return [*lists, "--model_dir", str(model_dir or extracted["model_dir"]), "--output_dir", str(output),
            "--extract_condition", "--device", "cpu", "--batch_size", str(batch_size), "--num_workers", "0",
            "--no_progress"]


def test_data_of_another_family_in_the_output_folder_is_refused(extracted, tiny_v2_dirs):
    other = tiny_v2_dirs["2.5" if extracted["version"] == "2" else "2"]
    before = all_files(extracted["output"])
    result = run_extract_cli(*cli_args(extracted, extracted["output"], batch_size=2, model_dir=other), check_rc=2)
    assert "another model family" in result.stderr and "--output_dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert all_files(extracted["output"]) == before


@pytest.mark.parametrize("text, language", [("hello there", "en"), ("你好", "zh"), ("こんにちは世界", "ja"),
                                            ("안녕하세요", "ko"), ("Mixed 中文 text", "zh")])
def test_the_language_of_a_transcript_is_read_from_its_script(text, language):
    assert detect_language(text) == language


def feature_parts(model_dir: Path) -> tuple:
    """(front, codec, GPT, CAMPPlus or None) of a tiny folder, as ``SemanticFeatureModels`` takes them."""
    models = CheckpointFolder(model_dir).v2
    campplus = models.load_campplus() if models.family.multilingual else None
    return models.load_semantic_front(), models.load_semantic_codec(), models.load_gpt(), campplus


def waves_16k(seconds=(1.2, 0.7, 0.9)) -> list[torch.Tensor]:
    return [torch.from_numpy(tone(length, 16000, 130, seed=index)) for index, length in enumerate(seconds)]


@pytest.mark.parametrize("version", VERSIONS)
def test_batched_conditions_equal_those_of_each_clip_alone(tiny_v2_dirs, version):
    parts, waves = feature_parts(tiny_v2_dirs[version]), waves_16k()
    batched = SemanticFeatureModels(*parts, torch.device("cpu"), batch_conditions=True)(waves)
    single = SemanticFeatureModels(*parts, torch.device("cpu"), batch_conditions=False)(waves)
    for left, right in zip(batched.conditions + batched.emotions, single.conditions + single.emotions):
        np.testing.assert_allclose(left, right, atol=1e-5, rtol=1e-5)
    assert all(np.array_equal(left, right) for left, right in zip(batched.codes, single.codes))


def test_half_precision_codes_equal_fp32_codes_and_conditions_stay_fp32(tiny_v2_dirs):
    parts, waves = feature_parts(tiny_v2_dirs["2.5"]), waves_16k()
    full = SemanticFeatureModels(*parts, torch.device("cpu"), precision="fp32")(waves)
    checked = SemanticFeatureModels(*parts, torch.device("cpu"), precision="bf16")
    half = checked(waves)
    assert checked.batches == 1 and half.codes_precision == ("fp32" if checked.fallback_batches else "bf16")
    for left, right in zip(half.codes + half.conditions + half.emotions, full.codes + full.conditions + full.emotions):
        np.testing.assert_array_equal(left, right)


# The resume and sharding machinery is the same for both generation-2 families (and is checked for
# 1.5 in test_extraction.py): the slow process tests run on IndexTTS-2 only, to keep `make test` short.
@pytest.mark.slow
@pytest.mark.parametrize("extracted", ["2"], indirect=True)
def test_a_killed_run_resumes_to_the_uninterrupted_result(extracted):
    output = extracted["work"] / "killed"
    args = cli_args(extracted, output, batch_size=1)
    kill_extraction_after(args, output / "alice" / ".extraction")
    assert not (output / "speaker_info.json").exists(), "the run finished before it could be killed"
    run_extract_cli(*args)
    assert_same_outputs(output, extracted["output"])


@pytest.mark.slow
@pytest.mark.parametrize("extracted", ["2"], indirect=True)
def test_torchrun_two_cpu_ranks_equal_one_process(extracted):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    output = extracted["work"] / "torchrun"
    result = run_process_group([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                str(EXTRACT_CLI), *cli_args(extracted, output, batch_size=2)],
                               timeout=600, env=env, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert_same_outputs(output, extracted["output"])


def assert_same_outputs(output: Path, expected: Path) -> None:
    """The same files; codes, manifests and records byte for byte. Float arrays, and the medoid distances
    computed from them, may differ in the last bits: the runs batch the clips differently (batch size 1,
    another process), and a padded batch equals each clip alone to float rounding, not bit for bit."""
    got, want = all_files(output), all_files(expected)
    assert got.keys() == want.keys()
    floats = [key for key in want if any(part in key for part in FLOAT_ARRAYS)]
    medoids = [key for key in want if key.endswith(".json") and "/medoid_" in f"/{key}"]
    exact = set(want) - set(floats) - set(medoids)
    assert {k: got[k] for k in exact} == {k: want[k] for k in exact}
    for key in floats:
        np.testing.assert_allclose(np.load(output / key), np.load(expected / key), atol=1e-5, rtol=1e-5)
    for key in medoids:
        got_fields, want_fields = json.loads(got[key]), json.loads(want[key])
        numbers = {name for name, value in want_fields.items() if isinstance(value, float)}
        assert {k: v for k, v in got_fields.items() if k not in numbers} == \
            {k: v for k, v in want_fields.items() if k not in numbers}, key
        for name in numbers:
            assert got_fields[name] == pytest.approx(want_fields[name], rel=1e-5, abs=1e-6), (key, name)
