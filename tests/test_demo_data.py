"""Tests for the embedded eSpeak NG demo speech set."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from demo_data import SAMPLE_RATE, SENTENCES, SPEAKERS, _ESpeak, make_demo_dataset
from indextts.errors import DataError

SENTENCES_PER_SPEAKER = 6
MIN_PITCH_HZ = 60
MAX_PITCH_HZ = 400
REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_PATH = REPO_ROOT / "tools" / "make_demo_data.py"


def read_list(list_path):
    """Parse an audio list into (absolute wav path, transcript) pairs."""
    rows = []
    for line in list_path.read_text(encoding="utf-8").splitlines():
        audio, transcript = line.split("\t")
        rows.append((list_path.parent / audio, transcript))
    return rows


def median_pitch(samples, sample_rate):
    """Median autocorrelation pitch (Hz) over loud, clearly periodic frames."""
    frame = 1024
    estimates = []
    for start in range(0, len(samples) - frame, frame // 2):
        window = samples[start:start + frame]
        window = window - window.mean()
        if np.sqrt(np.mean(window**2)) < 0.05:
            continue
        autocorrelation = np.correlate(window, window, "full")[frame - 1:]
        shortest, longest = sample_rate // MAX_PITCH_HZ, sample_rate // MIN_PITCH_HZ
        lag = shortest + int(np.argmax(autocorrelation[shortest:longest]))
        if autocorrelation[lag] > 0.3 * autocorrelation[0]:
            estimates.append(sample_rate / lag)
    return float(np.median(estimates))


def load_cli_main():
    """Import tools/make_demo_data.py by path (tools/ is a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location("make_demo_data", CLI_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def demo_lists(tmp_path_factory):
    return make_demo_dataset(
        tmp_path_factory.mktemp("demo"), sentences_per_speaker=SENTENCES_PER_SPEAKER, seed=0
    )


def test_one_list_per_speaker_with_relative_paths(demo_lists):
    assert [path.stem for path in demo_lists] == [speaker.name for speaker in SPEAKERS]
    known_texts = {sentence.text for sentence in SENTENCES}
    for list_path in demo_lists:
        assert list_path.suffix == ".lst"
        lines = list_path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == SENTENCES_PER_SPEAKER
        for line in lines:
            audio, transcript = line.split("\t")
            assert not audio.startswith("/")
            assert transcript in known_texts
            assert (list_path.parent / audio).is_file()


def test_lists_cover_english_chinese_and_mixed(demo_lists):
    languages = {sentence.text: sentence.language for sentence in SENTENCES}
    for list_path in demo_lists:
        assert {languages[text] for _, text in read_list(list_path)} == {"en", "zh", "mixed"}


def test_wavs_are_16_bit_audible_and_short(demo_lists):
    for list_path in demo_lists:
        for audio, _ in read_list(list_path):
            info = sf.info(audio)
            assert info.samplerate == SAMPLE_RATE
            assert info.channels == 1
            assert info.subtype == "PCM_16"
            assert 0.5 <= info.duration <= 12.0
            samples, _ = sf.read(audio)
            assert np.sqrt(np.mean(samples**2)) > 0.01


def test_speakers_differ_in_pitch(demo_lists):
    pitches = []
    for list_path in demo_lists:
        speaker_pitches = [median_pitch(*sf.read(audio)) for audio, _ in read_list(list_path)]
        pitches.append(np.median(speaker_pitches))
    low, high = pitches
    assert high > 1.5 * low


def test_same_seed_gives_identical_files(tmp_path):
    first = make_demo_dataset(tmp_path / "first", sentences_per_speaker=4, seed=3)
    second = make_demo_dataset(tmp_path / "second", sentences_per_speaker=4, seed=3)
    for list_a, list_b in zip(first, second):
        assert list_a.read_bytes() == list_b.read_bytes()
        for (audio_a, _), (audio_b, _) in zip(read_list(list_a), read_list(list_b)):
            assert audio_a.read_bytes() == audio_b.read_bytes()


def test_other_seed_picks_other_sentences(tmp_path):
    first = make_demo_dataset(tmp_path / "first", sentences_per_speaker=4, seed=0)
    second = make_demo_dataset(tmp_path / "second", sentences_per_speaker=4, seed=1)
    assert first[0].read_text(encoding="utf-8") != second[0].read_text(encoding="utf-8")


def test_engine_is_initialised_once():
    assert _ESpeak.get() is _ESpeak.get()


@pytest.mark.parametrize("count", [0, len(SENTENCES) + 1])
def test_sentence_count_out_of_range_is_a_clear_error(tmp_path, count):
    with pytest.raises(DataError, match="sentences_per_speaker"):
        make_demo_dataset(tmp_path, sentences_per_speaker=count)


def test_cli_writes_lists(tmp_path, capsys):
    main = load_cli_main()
    assert main([str(tmp_path), "--sentences", "2"]) == 0
    output = capsys.readouterr().out
    for speaker in SPEAKERS:
        assert str(tmp_path / f"{speaker.name}.lst") in output


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    main = load_cli_main()
    assert main([str(tmp_path), "--sentences", "0"]) == 2
    assert "sentences_per_speaker" in capsys.readouterr().err


def test_lists_parse_with_the_extraction_reader(demo_lists):
    from indextts.contracts.audio_list import parse_audio_list

    for list_path, speaker in zip(demo_lists, SPEAKERS):
        parsed = parse_audio_list(list_path)
        assert parsed.speaker == speaker.name
        assert not parsed.skipped
        assert [u.text for u in parsed.utterances] == [text for _, text in read_list(list_path)]


def test_example_list_matches_the_default_demo_set(tmp_path):
    example = REPO_ROOT / "finetune_data" / "example.lst"
    lines = [
        line for line in example.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    demo_dir = tmp_path / "demo"
    demo_lines = set()
    for list_path in make_demo_dataset(demo_dir):
        for line in list_path.read_text(encoding="utf-8").splitlines():
            demo_lines.add(f"{demo_dir.name}/{line}")
    assert lines
    assert set(lines) <= demo_lines
