"""indextts-prepare end to end: real VAD and pocketsphinx on long recordings of eSpeak speech.

The pocketsphinx WER measures how well a small 2015 English model hears eSpeak, not IndexTTS; it
proves the transcription step runs a real model on every clip.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import english_demo_list, write_tiny_whisper

from demo_data import SAMPLE_RATE, make_demo_dataset
from indextts.errors import PrepareError
from indextts.cli.prepare import main
from indextts.prepare.demo_recording import build_long_recording
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
        english = english_demo_list(list_path, root / f"{list_path.stem}_en.lst")
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


def test_cli_reports_bad_input_and_exit_code(tmp_path, capsys):
    assert main(["--input", str(tmp_path / "absent.wav"), "--output_dir", str(tmp_path / "out")]) == 2
    assert "Input not found" in capsys.readouterr().err
    with pytest.raises(PrepareError, match="--speaker"):
        run_prepare(PrepareOptions(inputs=[tmp_path, tmp_path], output_dir=tmp_path / "o", progress=False))
