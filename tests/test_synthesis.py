"""Model-free synthesis steps: batching, stop/silence trimming, joining and WAV writing."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from indextts.errors import InferenceError
from indextts.synthesis import (
    check_writable,
    join_waveforms,
    length_batches,
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
