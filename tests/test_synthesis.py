"""Model-free synthesis steps: batching, stop/silence trimming, joining and WAV writing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from indextts.errors import InferenceError
from indextts.inference.synthesis import (
    SILENCE_TRIM_MIN_TOTAL,
    SynthesisOptions,
    check_writable,
    join_waveforms,
    length_batches,
    plan_batches,
    silence_min_total,
    strip_stop_code,
    to_pcm16,
    trim_silence_runs,
    write_wav,
)


def test_length_batches_cover_every_index_once_and_respect_the_limits():
    lengths = [5, 10, 3, 40, 41, 6, 7, 8, 90, 1]
    batches = length_batches(lengths, max_batch_size=3, max_ratio=1.5)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        shortest = min(lengths[i] for i in batch)
        assert max(lengths[i] for i in batch) <= 1.5 * max(shortest, 1)


def test_length_batches_of_one_keep_every_item_alone():
    assert sorted(length_batches([3, 1, 2], max_batch_size=1)) == [[0], [1], [2]]
    with pytest.raises(ValueError):
        length_batches([1], max_batch_size=0)


def test_strip_stop_code_cuts_at_the_first_stop():
    assert strip_stop_code(torch.tensor([4, 5, 9, 6, 9]), stop_code=9).tolist() == [4, 5]
    assert strip_stop_code(torch.tensor([4, 5]), stop_code=9).tolist() == [4, 5]
    assert strip_stop_code(torch.tensor([9]), stop_code=9).tolist() == []


def test_trim_silence_runs_shortens_only_long_runs_of_the_silence_code():
    silence = 52
    codes = torch.tensor([1] + [silence] * 7 + [3, silence, silence, 4] + [silence] * 3 + [7] * 5)
    trimmed = trim_silence_runs(codes, silence, max_run=2)
    assert trimmed.tolist() == [1, silence, silence, 3, silence, silence, 4, silence, silence] + [7] * 5
    assert trim_silence_runs(codes, silence, max_run=-1).tolist() == codes.tolist()
    assert trim_silence_runs(codes, silence, max_run=0).tolist() == [1, 3, 4] + [7] * 5
    assert trim_silence_runs(torch.zeros(0, dtype=torch.long), silence, 2).numel() == 0


def test_join_waveforms_inserts_the_pause_between_neighbours_only():
    joined = join_waveforms([np.ones(3, np.float32), np.ones(0, np.float32), np.ones(2, np.float32)], 4)
    assert len(joined) == 3 + 4 + 0 + 4 + 2
    assert joined.dtype == np.float32
    assert len(join_waveforms([], 4)) == 0


def test_to_pcm16_clips_instead_of_wrapping():
    pcm = to_pcm16(np.array([0.0, 1.0, 1.7, -1.0, -3.0, np.nan], dtype=np.float32))
    assert pcm.tolist() == [0, 32767, 32767, -32767, -32767, 0]


def test_write_wav_writes_pcm16_creates_folders_and_replaces_atomically(tmp_path):
    path = tmp_path / "a" / "b" / "out.wav"
    write_wav(path, np.full(100, 0.5, np.float32), 24000)
    write_wav(path, np.full(50, 2.0, np.float32), 24000)
    info = sf.info(str(path))
    assert (info.samplerate, info.frames, info.subtype, info.channels) == (24000, 50, "PCM_16", 1)
    data, _ = sf.read(str(path), dtype="int16")
    assert (data == 32767).all()
    assert os.listdir(path.parent) == ["out.wav"]


def test_unwritable_outputs_give_a_clear_error(tmp_path):
    with pytest.raises(InferenceError, match="is a folder"):
        write_wav(tmp_path, np.zeros(1, np.float32), 24000)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InferenceError, match="Cannot write the output wav"):
        check_writable(blocker / "out.wav")


SILENCE = 52
SPEECH = 7


def _sentence(*runs: tuple[int, int]) -> torch.Tensor:
    """A hand-built code sequence from (code, repeat) runs."""
    return torch.tensor([code for code, count in runs for _ in range(count)])


def _reference_trim(codes: torch.Tensor) -> torch.Tensor:
    return trim_silence_runs(codes, SILENCE, 10, silence_min_total("reference"))


def test_reference_trimming_keeps_ordinary_pauses_whole():
    """One 20-code pause (0.85 s): the reference keeps all 60 codes; the strict mode cuts it to 50."""
    codes = _sentence((SPEECH, 20), (SILENCE, 20), (SPEECH + 1, 20))
    assert _reference_trim(codes).tolist() == codes.tolist()
    strict = trim_silence_runs(codes, SILENCE, 10, silence_min_total("strict"))
    assert strict.tolist() == _sentence((SPEECH, 20), (SILENCE, 10), (SPEECH + 1, 20)).tolist()
    assert len(strict) == 50


def test_reference_trimming_caps_every_run_once_the_sentence_holds_more_than_30_silence_codes():
    exactly = _sentence((SILENCE, 15), (SPEECH, 3), (SILENCE, 15))  # 30 in total: kept
    assert SILENCE_TRIM_MIN_TOTAL == 30
    assert _reference_trim(exactly).tolist() == exactly.tolist()
    over = _sentence((SILENCE, 16), (SPEECH, 3), (SILENCE, 15), (SPEECH, 2), (SILENCE, 4))  # 35: capped
    expected = _sentence((SILENCE, 10), (SPEECH, 3), (SILENCE, 10), (SPEECH, 2), (SILENCE, 4))
    assert _reference_trim(over).tolist() == expected.tolist()
    off = trim_silence_runs(over, SILENCE, 10, silence_min_total("off"))
    assert off.tolist() == over.tolist()
    with pytest.raises(InferenceError, match="silence trimming"):
        silence_min_total("sometimes")


def test_synthesis_options_default_to_the_reference_trimming_and_check_the_mode():
    assert SynthesisOptions().silence_trimming == "reference"
    with pytest.raises(InferenceError, match="silence_trimming"):
        SynthesisOptions(silence_trimming="never").validate()


def test_plan_batches_groups_by_key_then_by_length():
    keys = ["a", "b", "a", "a", "b", "a"]
    lengths = [10, 10, 11, 40, 12, 42]
    plan = plan_batches(keys, lengths, [2] * len(keys))
    assert sorted(i for _, batch in plan for i in batch) == list(range(len(keys)))
    for _, batch in plan:
        assert len({keys[i] for i in batch}) == 1 and len(batch) <= 2
        assert max(lengths[i] for i in batch) <= 1.5 * min(lengths[i] for i in batch)
    numbers = [(keys[batch[0]], number) for number, batch in plan]
    assert numbers == [("a", 0), ("a", 1), ("b", 0)]


def test_write_wav_follows_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        path = write_wav(tmp_path / "shared.wav", np.zeros(10, np.float32), 24000)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o640


def test_emotion_options_are_checked_with_clear_messages():
    from indextts.inference.synthesis import parse_emotion_vector

    SynthesisOptions(emotion_vector=(0.0,) * 8, emotion_alpha=0.5, duration_factor=1.5).validate()
    cases = [({"emotion_vector": (0.1,) * 7}, "needs 8 values"), ({"emotion_vector": (1.5,) + (0,) * 7}, "happy=1.5"),
             ({"emotion_alpha": 1.5}, "emotion_alpha"), ({"duration_factor": 0.1}, "duration_factor"),
             ({"emotion_audio": "a.wav", "emotion_vector": (0,) * 8}, "one emotion source")]
    for settings, expected in cases:
        with pytest.raises(InferenceError, match=expected):
            SynthesisOptions(**settings).validate()
    assert parse_emotion_vector("0, 0.5,0,0 0,0,0,0.25") == (0, 0.5, 0, 0, 0, 0, 0, 0.25)
    with pytest.raises(InferenceError, match="separated by commas"):
        parse_emotion_vector("happy,0,0,0,0,0,0,0")
