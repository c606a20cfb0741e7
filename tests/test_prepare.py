"""indextts-prepare end to end: real VAD and pocketsphinx on long recordings of eSpeak speech.

The pocketsphinx WER measures how well a small 2015 English model hears eSpeak, not IndexTTS; it
proves the transcription step runs a real model on every clip.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO_ROOT, all_files, demo_list_in, write_tiny_whisper

from demo_data import SAMPLE_RATE, make_demo_dataset
from indextts.errors import PrepareError
from indextts.cli.prepare import main
from indextts.prepare import pipeline
from indextts.prepare.demo_recording import build_long_recording
from indextts.prepare.loudness import normalise_loudness
from indextts.prepare.pipeline import (
    STATE_FILE,
    PrepareOptions,
    model_limits,
    run_prepare,
)
from indextts.prepare.review import REVIEW_COLUMNS


@pytest.fixture(scope="module")
def raw_speakers(tmp_path_factory):
    """raw/<speaker>/english.wav per demo speaker (English utterances, 0.6-1.4 s pauses), plus a
    corrupt raw/demo_speaker_b/broken.wav; returns (raw folder, {speaker: segments})."""
    root = tmp_path_factory.mktemp("prepare")
    lists = make_demo_dataset(root / "demo", sentences_per_speaker=12, seed=0)
    truth = {}
    for index, list_path in enumerate(lists):
        english = demo_list_in(list_path, root / f"{list_path.stem}_en.lst")
        count = len(english.read_text(encoding="utf-8").splitlines())
        pauses = list(np.random.default_rng(index).uniform(0.6, 1.4, count - 1))
        truth[list_path.stem] = build_long_recording(
            english, root / "raw" / list_path.stem / "english.wav", pauses, SAMPLE_RATE)
    (root / "raw" / "demo_speaker_b" / "broken.wav").write_bytes(b"RIFF\x00\x01not really a wave file")
    return root / "raw", truth


@pytest.fixture(scope="module")
def prepared(raw_speakers, tmp_path_factory):
    raw, _ = raw_speakers
    output = tmp_path_factory.mktemp("out")
    options = PrepareOptions(inputs=[raw], output_dir=output, asr="pocketsphinx", language="en", progress=False)
    return output, run_prepare(options), options


def overlapping_text(record: dict, segments) -> str:
    start, end = float(record["source_start"]), float(record["source_end"])
    return " ".join(s.text for s in segments if s.start < end and s.end > start)


def test_one_speaker_per_subfolder_with_lists_and_review(prepared, raw_speakers):
    output, summary, options = prepared
    assert sorted(summary.lists) == ["demo_speaker_a", "demo_speaker_b"]
    for speaker, list_path in summary.lists.items():
        lines = list_path.read_text(encoding="utf-8").splitlines()
        assert lines and all(line.startswith(f"{speaker}/english_") for line in lines)
        for line in lines:
            clip, text = line.split("\t")
            assert (list_path.parent / clip).is_file() and text
    with open(output / "review.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == REVIEW_COLUMNS and len(rows) == summary.clips
    assert all(2.0 <= float(r["duration"]) <= 12.0 for r in rows)
    target = options.loudness.target_lufs
    for row in rows:
        limited = "peak_limited" in row["flags"]
        assert abs(float(row["lufs"]) - target) <= 1.0 or (limited and float(row["lufs"]) < target)


def test_pocketsphinx_transcripts_and_their_wer(prepared, raw_speakers, record_property):
    import jiwer

    output, _, _ = prepared
    _, truth = raw_speakers
    with open(output / "review.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    references = [overlapping_text(r, truth[r["speaker"]]).lower().replace(".", "") for r in rows]
    hypotheses = [r["text"] for r in rows]
    assert all(hypotheses) and all(0.0 <= float(r["asr_confidence"]) <= 1.0 for r in rows)
    wer = jiwer.wer(references, hypotheses)
    record_property("prepare_pocketsphinx_wer", wer)
    print(f"indextts-prepare with pocketsphinx: WER {wer:.3f} over {len(rows)} clips")
    assert np.isfinite(wer) and wer < 1.0


def test_corrupt_recording_is_skipped_with_a_reason(prepared):
    _, summary, _ = prepared
    assert list(summary.skipped) and all(path.endswith("broken.wav") for path in summary.skipped)
    assert "Cannot read the audio file" in next(iter(summary.skipped.values()))
    assert summary.processed == 3 and summary.listed == summary.clips


def test_running_again_is_a_no_op(prepared):
    output, first, options = prepared
    clips = sorted(output.glob("*/*.wav"))
    before = {path: path.stat().st_mtime_ns for path in clips + sorted(output.glob("*/" + STATE_FILE))}
    lists = {name: path.read_bytes() for name, path in first.lists.items()}
    again = run_prepare(options)
    assert again.processed == 0 and again.reused == 3 and again.clips == first.clips
    assert {path: path.stat().st_mtime_ns for path in before} == before
    assert {name: path.read_bytes() for name, path in again.lists.items()} == lists
    assert sorted(output.glob("*/*.wav")) == clips


def test_tiny_whisper_plumbing_and_doubtful_clips(raw_speakers, tmp_path):
    """A tiny random Whisper transcribes every clip; a confidence bar above its scores empties the
    list unless doubtful clips are kept, without transcribing again."""
    raw, _ = raw_speakers
    whisper = write_tiny_whisper(tmp_path / "whisper")
    options = PrepareOptions(inputs=[raw / "demo_speaker_a"], output_dir=tmp_path / "out", speaker="alice",
                             asr=f"whisper:{whisper}", min_confidence=0.99, progress=False)
    strict = run_prepare(options)
    state = json.loads((tmp_path / "out" / "alice" / STATE_FILE).read_text())
    records = next(iter(state["recordings"].values()))["clips"]
    assert len(records) == strict.clips > 0
    assert all(0.0 < r["confidence"] < 0.99 and r["language"] in ("en", "zh") for r in records)
    assert strict.listed == 0
    options.keep_doubtful = True
    kept = run_prepare(options)
    assert kept.processed == 0 and kept.listed == sum(1 for r in records if r["text"])


def test_model_limits_cap_clip_length(tiny_model_dir):
    from indextts.config import load_config

    cfg = load_config(tiny_model_dir)
    limits = model_limits(tiny_model_dir)
    samples = limits.max_seconds * limits.sample_rate
    assert samples // int(cfg.gpt.mel_length_compression) + 1 <= int(cfg.gpt.max_mel_tokens)
    assert limits.bpe_model is not None and limits.bpe_model.is_file()
    assert model_limits(None).max_seconds > 30.0


class _HeardText:
    """An ASR backend (and its choice) that hears ``text`` in any clip."""

    name, languages, low_confidence, specs, reason = "heard", None, None, ("heard",), "the test's"

    def __init__(self, text: str):
        self.text = text

    def load(self, device: str):
        return self

    def transcribe(self, audio, sample_rate, language=None):
        from indextts.asr.backends import Transcript

        return Transcript(self.text, None, "en")


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_transcripts_are_counted_with_the_indextts2_tokenizer_of_the_base(version, tiny_v2_dirs, monkeypatch):
    """IndexTTS-2.5's vocabulary is tiktoken, not SentencePiece: prepare counts a transcript with the base
    family's tokenizer (as extraction will) and flags one over the limit."""
    from indextts.prepare import transcription

    limits = model_limits(tiny_v2_dirs[version])
    short = "Hello there, how are you today?"
    at_the_limit = transcription.TextLimits(limits.text_counter, limits.text_counter.count(short).num_tokens)
    for text, flags in ((short, ()), (short + " Fine, thanks.", (transcription.Flag.TOO_MANY_TEXT_TOKENS,))):
        monkeypatch.setattr(transcription, "choose_asr", lambda spec, language, text=text: _HeardText(text))
        checked = transcription.Transcriber("heard", "cpu", "en", at_the_limit).transcribe(np.zeros(1600), 16000)
        assert checked.flags == flags, text


def test_cli_reports_bad_input_and_exit_code(tmp_path, capsys):
    assert main(["--input", str(tmp_path / "absent.wav"), "--output_dir", str(tmp_path / "out")]) == 2
    assert "Input not found" in capsys.readouterr().err
    with pytest.raises(PrepareError, match="--speaker"):
        run_prepare(PrepareOptions(inputs=[tmp_path, tmp_path], output_dir=tmp_path / "o", progress=False))


def _copy_of(prepared_output, tmp_path):
    """A copy of the prepared output folder (its state names the same recordings)."""
    copy = tmp_path / "out"
    shutil.copytree(prepared_output, copy)
    return copy


def _edit_list(list_path):
    """Fix the first transcript and delete the second line, as docs/preparation.md invites; returns the text."""
    lines = list_path.read_text(encoding="utf-8").splitlines(keepends=True)
    clip, _ = lines[0].split("\t")
    edited = [f"{clip}\tA transcript corrected by hand.\n", *lines[2:]]
    list_path.write_text("".join(edited), encoding="utf-8")
    return "".join(edited), lines[1].split("\t")[0]


def test_hand_edits_of_the_list_survive_and_only_new_clips_are_added(prepared, raw_speakers, tmp_path):
    """Issue 25 item 4: a re-run restored the ASR text and the deleted lines."""
    output, _, options = prepared
    raw, _ = raw_speakers
    copy = _copy_of(output, tmp_path)
    list_path = copy / "demo_speaker_a.lst"
    edited, deleted_clip = _edit_list(list_path)
    audio, rate = sf.read(raw / "demo_speaker_a" / "english.wav", dtype="float32")
    sf.write(tmp_path / "second.wav", audio[: 15 * rate], rate)  # a recording added since
    again = run_prepare(PrepareOptions(inputs=[raw / "demo_speaker_a", tmp_path / "second.wav"], output_dir=copy,
                                       speaker="demo_speaker_a", asr="pocketsphinx", language="en", progress=False))
    text = list_path.read_text(encoding="utf-8")
    assert text.startswith(edited) and deleted_clip not in text
    added = text[len(edited):].splitlines()
    assert added and all(line.startswith("demo_speaker_a/second_") for line in added)
    assert again.reused == 1 and again.processed == 1 and again.listed == len(text.splitlines())
    before = list_path.read_bytes()
    run_prepare(PrepareOptions(inputs=[raw / "demo_speaker_a", tmp_path / "second.wav"], output_dir=copy,
                               speaker="demo_speaker_a", asr="pocketsphinx", language="en", progress=False))
    assert list_path.read_bytes() == before


def test_edited_list_whose_clips_would_be_cut_again_is_refused_with_a_backup(prepared, raw_speakers, tmp_path,
                                                                            capsys):
    output, _, _ = prepared
    raw, _ = raw_speakers
    copy = _copy_of(output, tmp_path)
    edited, _ = _edit_list(copy / "demo_speaker_a.lst")
    before = all_files(copy)
    code = main(["--input", str(raw), "--output_dir", str(copy), "--asr", "pocketsphinx", "--language", "en",
                 "--target_lufs", "-20", "--no_progress"])
    err = capsys.readouterr().err
    backups = sorted(copy.glob("demo_speaker_a.lst.backup-*"))
    assert code == 2 and "Traceback" not in err and len(backups) == 1
    assert f"{copy / 'demo_speaker_a.lst'} was edited by hand" in err and "demo_speaker_a/english_0000.wav" in err
    assert f"a copy of your list is in {backups[0]}" in err and "move" in err and "previous recordings and settings" in err
    assert backups[0].read_text(encoding="utf-8") == edited
    assert {k: v for k, v in all_files(copy).items() if "backup" not in k} == before


def test_output_dir_that_is_a_file_is_refused(raw_speakers, tmp_path, capsys):
    """Issue 25 item 8: a file as --output_dir gave a traceback."""
    raw, _ = raw_speakers
    taken = tmp_path / "taken"
    taken.write_text("keep me", encoding="utf-8")
    code = main(["--input", str(raw / "demo_speaker_a"), "--output_dir", str(taken), "--no_progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"{taken} is a file, not a folder" in err and "--output_dir" in err
    assert "Traceback" not in err and taken.read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_interrupted_recording_resumes_at_its_next_clip_with_identical_clips(prepared, raw_speakers, tmp_path,
                                                                            monkeypatch, capsys):
    """Issue 25 item 13: an interrupt used to start the recording over. The run stops after two
    clips; the next one cuts the rest from the saved plan (no VAD) and every clip equals the
    uninterrupted run's, byte for byte. Progress shows seconds of audio within the recording."""
    output, _, options = prepared
    raw, _ = raw_speakers
    calls = []

    def interrupted_after_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return normalise_loudness(*args, **kwargs)

    resume_options = PrepareOptions(inputs=[raw / "demo_speaker_a"], output_dir=tmp_path / "out", asr="pocketsphinx",
                                    language="en", progress=False)
    monkeypatch.setattr(pipeline, "normalise_loudness", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_prepare(resume_options)
    state = json.loads((tmp_path / "out" / "demo_speaker_a" / STATE_FILE).read_text())
    entry = next(iter(state["recordings"].values()))
    assert not entry["complete"] and len(entry["clips"]) == 2 and len(entry["plan"]) > 2
    first_two = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "demo_speaker_a").glob("*.wav")}
    assert len(first_two) == 2

    monkeypatch.setattr(pipeline, "normalise_loudness", normalise_loudness)
    monkeypatch.setattr(pipeline, "slice_recording", lambda *a: pytest.fail("the VAD ran again on a resumed recording"))
    resume_options.progress = True
    summary = run_prepare(resume_options)
    assert summary.resumed == 1 and summary.processed == 1
    done = [(float(n), float(t)) for n, t in re.findall(r"english\.wav: (\d+)/(\d+) s of audio", capsys.readouterr().err)]
    assert done[0][0] > 0 and len({n for n, _ in done}) > 2 and done[-1][0] == done[-1][1]
    resumed_clips = {p.name: p.read_bytes() for p in (tmp_path / "out" / "demo_speaker_a").glob("*.wav")}
    assert resumed_clips == {p.name: p.read_bytes() for p in (output / "demo_speaker_a").glob("*.wav")}
    assert {name: (tmp_path / "out" / "demo_speaker_a" / name).stat().st_mtime_ns for name in first_two} == first_two
    assert (tmp_path / "out" / "demo_speaker_a.lst").read_bytes() == (output / "demo_speaker_a.lst").read_bytes()


@pytest.mark.slow
def test_kill_9_inside_a_recording_then_rerun_gives_the_uninterrupted_clips(prepared, raw_speakers, tmp_path):
    """The real interrupt: indextts-prepare killed with SIGKILL once a recording has some clips
    but is not finished; the re-run resumes it and every clip equals the uninterrupted run's."""
    output, _, _ = prepared
    raw, _ = raw_speakers
    out = tmp_path / "out"
    state_path = out / "demo_speaker_a" / STATE_FILE
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "indextts.cli.prepare", "--input", str(raw / "demo_speaker_a"),
               "--output_dir", str(out), "--asr", "pocketsphinx", "--language", "en", "--no_progress"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while process.poll() is None and time.monotonic() < deadline and not _partly_done(state_path):
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed inside the recording"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    summary = run_prepare(PrepareOptions(inputs=[raw / "demo_speaker_a"], output_dir=out, asr="pocketsphinx",
                                         language="en", progress=False))
    assert summary.resumed == 1
    assert all_files(out / "demo_speaker_a").keys() == all_files(output / "demo_speaker_a").keys()
    assert {n: b for n, b in all_files(out / "demo_speaker_a").items() if n.endswith(".wav")} == \
        {n: b for n, b in all_files(output / "demo_speaker_a").items() if n.endswith(".wav")}
    assert (out / "demo_speaker_a.lst").read_bytes() == (output / "demo_speaker_a.lst").read_bytes()


def _partly_done(state_path) -> bool:
    """True when the state file shows a recording with some clips written but not complete."""
    try:
        entries = json.loads(state_path.read_text(encoding="utf-8"))["recordings"].values()
    except (OSError, ValueError):
        return False
    return any(entry["clips"] and not entry["complete"] for entry in entries)


def test_edited_list_that_is_not_utf8_is_refused_before_any_work(prepared, raw_speakers, tmp_path, capsys):
    output, _, _ = prepared
    raw, _ = raw_speakers
    copy = _copy_of(output, tmp_path)
    list_path = copy / "demo_speaker_a.lst"
    list_path.write_bytes(list_path.read_bytes().replace(b"\t", "\t校对 ".encode("gbk"), 1))
    before = all_files(copy)
    code = main(["--input", str(raw), "--output_dir", str(copy), "--asr", "pocketsphinx", "--language", "en",
                 "--no_progress"])
    err = capsys.readouterr().err
    assert code == 2 and f"{list_path} is not UTF-8 text" in err and "Re-save it as UTF-8" in err
    assert "Traceback" not in err and all_files(copy) == before


# ----------------------------------------------------------------------------- language and approvals

@pytest.fixture(scope="module")
def chinese_recording(raw_speakers):
    """One long recording of the demo's Mandarin sentences (speaker a), with 0.8 s pauses."""
    root = raw_speakers[0].parent
    chinese = demo_list_in(root / "demo" / "demo_speaker_a.lst", root / "zh.lst", "zh")
    count = len(chinese.read_text(encoding="utf-8").splitlines())
    build_long_recording(chinese, root / "chinese" / "long_zh.wav", [0.8] * (count - 1), SAMPLE_RATE)
    return root / "chinese" / "long_zh.wav"


@pytest.mark.parametrize("language_args, expected", [
    (["--language", "zh"], "No ASR backend for language 'zh'"),
    ([], "The language of the recordings is unknown"),
])
def test_chinese_recording_without_whisper_or_paraformer_is_refused_before_any_clip(
        chinese_recording, tmp_path, language_args, expected):
    """The default --asr auto, offline with an empty hub cache and no FunASR: refused, nothing written."""
    if importlib.util.find_spec("funasr") is not None:
        pytest.skip("FunASR is installed here, so Paraformer would transcribe the Chinese recording")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("the user's file")
    before = all_files(out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty_hub_cache")}
    result = subprocess.run([sys.executable, "-m", "indextts.cli.prepare", "--input", str(chinese_recording),
                             "--output_dir", str(out), "--speaker", "li", *language_args, "--no_progress"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Whisper" in result.stderr and "Traceback" not in result.stderr
    assert "Nothing was cut or written" in result.stderr
    assert all_files(out) == before


def test_pocketsphinx_on_chinese_speech_is_refused(chinese_recording, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["--input", str(chinese_recording), "--output_dir", str(out), "--asr", "pocketsphinx",
                 "--language", "zh", "--no_progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "PocketSphinx recognises English only" in err and "--asr paraformer" in err
    assert not out.exists() or all_files(out) == {}


def _review_rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _approve(path, clip: str) -> None:
    rows = _review_rows(path)
    for row in rows:
        row["approved"] = "yes" if row["clip"] == clip else row["approved"]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_low_confidence_clips_stay_out_until_approved_in_review_csv(raw_speakers, tmp_path):
    """A tiny random Whisper (plumbing, not a real model) scores below Whisper's 0.5 bar: its clips are
    flagged and left out; one approved in review.csv joins the list on the next run, which transcribes
    nothing again and keeps the approval, also after the user edited the list."""
    raw, _ = raw_speakers
    whisper = write_tiny_whisper(tmp_path / "whisper")
    options = PrepareOptions(inputs=[raw / "demo_speaker_a"], output_dir=tmp_path / "out", speaker="alice",
                             asr=f"whisper:{whisper}", language="en", progress=False)
    first = run_prepare(options)
    review = tmp_path / "out" / "review.csv"
    doubtful = [r for r in _review_rows(review) if "low_confidence" in r["flags"].split(";") and r["text"]]
    assert len(doubtful) >= 2 and all(float(r["asr_confidence"]) < 0.5 and r["in_list"] == "no" for r in doubtful)
    list_path = first.lists["alice"]
    _approve(review, doubtful[0]["clip"])
    again = run_prepare(options)
    assert again.processed == 0 and again.listed == first.listed + 1
    assert doubtful[0]["clip"] in list_path.read_text(encoding="utf-8")
    approved = {r["clip"]: (r["approved"], r["in_list"]) for r in _review_rows(review)}
    assert approved[doubtful[0]["clip"]] == ("yes", "yes") and approved[doubtful[1]["clip"]] == ("", "no")
    list_path.write_text(list_path.read_text(encoding="utf-8") + "# my note\n", encoding="utf-8")
    _approve(review, doubtful[1]["clip"])
    run_prepare(options)
    lines = list_path.read_text(encoding="utf-8").splitlines()
    assert "# my note" in lines and lines[-1].startswith(doubtful[1]["clip"] + "\t")


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_the_clip_cap_of_an_indextts2_base_follows_its_semantic_code_rate(tiny_v2_dirs, version):
    """IndexTTS-2 codes come at 50 Hz (2.5: 25 Hz), not at 1.5's 24000 / mel_length_compression: a clip
    of the cap's length gives as many codes as the GPT takes, within the start/stop rows."""
    import torch

    from indextts.checkpoint_folder.folder import CheckpointFolder
    from indextts.extraction.generations import extraction_family
    from indextts.prepare.pipeline import model_limits

    folder = CheckpointFolder(tiny_v2_dirs[version])
    limits = model_limits(folder.root)
    models = extraction_family(folder).load_models(torch.device("cpu"), False)
    codes = int(models.code_lengths(torch.tensor([int(limits.max_seconds * 16000)]))[0])
    assert int(folder.cfg.gpt.max_mel_tokens) - 4 <= codes <= int(folder.cfg.gpt.max_mel_tokens) - 1
