"""Silero VAD slicing and loudness on long recordings made of the demo's eSpeak utterances."""

from __future__ import annotations

import itertools

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from demo_data import SAMPLE_RATE, make_demo_dataset
from indextts.prepare.demo_recording import build_long_recording
from indextts.prepare.loudness import LoudnessOptions, has_clipping, normalise_loudness
from indextts.prepare.slicing import (
    Clip,
    SileroVAD,
    SlicingOptions,
    frame_levels_db,
    plan_clips,
    slice_recording,
)

BOUNDARY_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def demo_lists(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), sentences_per_speaker=10, seed=0)


@pytest.fixture(scope="module")
def vad():
    return SileroVAD()


def long_recording(list_path, folder, pauses_seed: int, low: float, high: float):
    count = len(list_path.read_text(encoding="utf-8").splitlines())
    pauses = list(np.random.default_rng(pauses_seed).uniform(low, high, count - 1))
    path = folder / f"{list_path.stem}_{pauses_seed}.wav"
    segments = build_long_recording(list_path, path, pauses, SAMPLE_RATE)
    audio, rate = sf.read(path, dtype="float32")
    return audio, rate, segments


def boundary_errors(clips: list[Clip], segments) -> np.ndarray:
    starts = np.array([s.start for s in segments])
    ends = np.array([s.end for s in segments])
    return np.array([np.abs(starts - c.speech_start).min() for c in clips]
                    + [np.abs(ends - c.speech_end).min() for c in clips])


@pytest.mark.parametrize("speaker_index", [0, 1])
def test_vad_cuts_land_on_utterance_boundaries(demo_lists, vad, tmp_path, speaker_index):
    audio, rate, segments = long_recording(demo_lists[speaker_index], tmp_path, speaker_index, 0.5, 1.5)
    options = SlicingOptions()
    clips = slice_recording(audio, rate, vad, options)
    errors = boundary_errors(clips, segments)
    print(f"speaker {speaker_index}: {len(clips)} clips from {len(segments)} utterances, "
          f"{np.mean(errors <= BOUNDARY_TOLERANCE):.0%} of cuts within 150 ms, worst {errors.max() * 1000:.0f} ms")
    assert len(clips) >= len(segments) // 2
    assert np.mean(errors <= BOUNDARY_TOLERANCE) >= 0.9
    assert all(options.min_seconds <= c.duration <= options.max_seconds for c in clips)
    assert all(a.end <= b.start for a, b in itertools.pairwise(clips))


def test_long_speech_without_pauses_is_split_in_its_quietest_gaps(demo_lists, vad, tmp_path):
    """Pauses of 0.12 s are too short to cut at, so the recording is one run, split to fit 5 s."""
    audio, rate, segments = long_recording(demo_lists[0], tmp_path, 7, 0.12, 0.12)
    options = SlicingOptions(min_seconds=1.5, max_seconds=5.0)
    clips = slice_recording(audio, rate, vad, options)
    assert len(clips) >= 4 and all(1.5 <= c.duration <= 5.0 for c in clips)
    gaps = [(a.end, b.start) for a, b in itertools.pairwise(segments)]
    cuts = [b.speech_start for a, b in itertools.pairwise(clips) if b.speech_start == a.speech_end]
    assert cuts, "expected cuts inside the speech run"
    in_gap = [any(start - 0.05 <= cut <= end + 0.05 for start, end in gaps) for cut in cuts]
    assert np.mean(in_gap) >= 0.9


def test_short_runs_join_a_neighbour_and_padding_stops_halfway():
    levels = np.zeros(2000)
    runs = [(1.0, 3.5), (3.7, 4.2), (6.0, 8.5)]
    clips = plan_clips(runs, levels, 10.0, SlicingOptions(min_seconds=2.0, max_seconds=12.0, padding=0.15))
    assert [(c.speech_start, c.speech_end) for c in clips] == [(1.0, 4.2), (6.0, 8.5)]
    assert clips[0].start == pytest.approx(0.85) and clips[0].end == pytest.approx(4.35)
    touching = plan_clips([(1.0, 3.5), (3.6, 6.0)], levels, 10.0, SlicingOptions(min_pause=0.05))
    assert touching[0].end == pytest.approx(3.55) and touching[1].start == pytest.approx(3.55)


def test_frame_levels_find_the_quiet_frame():
    audio = np.ones(16000, np.float32) * 0.5
    audio[8000:8512] = 0.0
    levels = frame_levels_db(audio, 16000)
    assert int(np.argmin(levels)) == 8000 // 512 + 1


@pytest.mark.parametrize("target", [-16.0, -23.0, -30.0])
def test_loudness_lands_within_one_lu_of_the_target(demo_lists, target):
    meter_rate = SAMPLE_RATE
    meter = pyloudnorm.Meter(meter_rate)
    for line in demo_lists[1].read_text(encoding="utf-8").splitlines()[:4]:
        samples, rate = sf.read(demo_lists[1].parent / line.split("\t")[0], dtype="float32")
        normalised, levels = normalise_loudness(samples * 0.3, rate, LoudnessOptions(target_lufs=target))
        measured = meter.integrated_loudness(normalised.astype(np.float64))
        assert abs(measured - target) <= 1.0 or levels.peak_limited
        assert abs(levels.lufs - measured) < 0.05
        assert np.abs(normalised).max() <= 10 ** (-1.0 / 20) + 1e-6
        assert not levels.clipping


def test_peak_protection_clipping_and_noise_are_flagged():
    rate = 16000
    tone = 0.05 * np.sin(2 * np.pi * 220 * np.arange(2 * rate) / rate).astype(np.float32)
    tone[rate] = 0.9  # one loud click: reaching -10 LUFS would push it far past the ceiling
    limited, levels = normalise_loudness(tone, rate, LoudnessOptions(target_lufs=-10.0, peak_dbfs=-1.0))
    assert levels.peak_limited and np.abs(limited).max() == pytest.approx(10 ** (-1 / 20), rel=1e-4)
    assert has_clipping(np.clip(tone * 40, -1, 1)) and not has_clipping(tone)
    noise = np.random.default_rng(0).normal(0, 0.05, tone.size).astype(np.float32)
    _, noisy = normalise_loudness(tone + noise, rate, LoudnessOptions())
    _, clean = normalise_loudness(np.concatenate([np.zeros(rate // 2, np.float32), tone]), rate, LoudnessOptions())
    assert noisy.low_snr and not clean.low_snr


def test_vad_loads_and_scores_without_any_warning(demo_lists, tmp_path):
    """Issue 25 item 11: loading the wheel's TorchScript model warned on every run (torch.jit.load
    is deprecated). The VAD now loads the wheel's safetensors weights; no warning of any kind, and
    importing nothing from silero_vad leaves torch's thread count alone."""
    import warnings

    import torch

    threads = torch.get_num_threads()
    audio, rate, segments = long_recording(demo_lists[0], tmp_path, 3, 0.6, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probabilities = SileroVAD().speech_probabilities(audio, rate)
    assert torch.get_num_threads() == threads
    frames = np.arange(len(probabilities)) * 512 / 16000
    inside = np.array([any(s.start + 0.1 <= t <= s.end - 0.1 for s in segments) for t in frames])
    outside = np.array([all(t + 0.1 < s.start or t > s.end + 0.3 for s in segments) for t in frames])
    assert np.mean(probabilities[inside] > 0.5) > 0.9 and np.mean(probabilities[outside] < 0.5) > 0.9
