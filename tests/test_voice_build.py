"""``indextts voice build``: two speakers' long recordings to promoted voices and a report, resumable.

The base is the session's tiny random checkpoint and the recordings are the embedded eSpeak NG demo
speech (English sentences, joined into one long recording per speaker), transcribed offline with
PocketSphinx and scored with resemblyzer, so the whole build runs on CPU without a download.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from demo_data import SAMPLE_RATE, make_demo_dataset
from helpers import REPO_ROOT, all_files, english_demo_list
from indextts.cli.voice import main as voice_main
from indextts.prepare.demo_recording import build_long_recording

pytestmark = pytest.mark.slow
SETTINGS = ["--language", "en", "--asr", "pocketsphinx", "--sim", "resemblyzer", "--device", "cpu",
            "--max_eval_per_speaker", "1", "--train", "train.max_steps=8", "--train", "train.save_every_steps=1",
            "--train", "train.keep_checkpoints=2", "--train", "data.num_workers=0",
            "--train", "data.min_duration=0.1", "--train", "train.deterministic=true"]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    """raw/<speaker>/long.wav for the two demo speakers (their English sentences with pauses)."""
    root = tmp_path_factory.mktemp("voice_recordings")
    for index, demo_list in enumerate(make_demo_dataset(root / "demo", sentences_per_speaker=8, seed=0)):
        english = english_demo_list(demo_list, root / f"{demo_list.stem}_en.lst")
        count = len(english.read_text(encoding="utf-8").splitlines())
        pauses = list(np.random.default_rng(index).uniform(0.6, 1.4, count - 1))
        build_long_recording(english, root / "raw" / demo_list.stem / "long.wav", pauses, SAMPLE_RATE)
    return root / "raw"


def build_args(recordings: Path, base: Path, project: Path) -> list[str]:
    return ["build", str(recordings), "--base", str(base), "--project", str(project), *SETTINGS]


@pytest.fixture(scope="module")
def built(recordings, tiny_model_dir, tmp_path_factory, ) -> tuple[Path, str]:
    """A project built in one uninterrupted run; (project folder, what the build printed)."""
    project = tmp_path_factory.mktemp("voice") / "project"
    output = subprocess.run([sys.executable, "-m", "indextts", "voice", *build_args(recordings, tiny_model_dir, project)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert output.returncode == 0, output.stdout[-3000:] + output.stderr[-3000:]
    return project, output.stdout


def test_one_command_builds_a_promoted_voice_per_speaker_and_a_report(built):
    project, printed = built
    best = (project / "run" / "eval" / "best.json").read_text(encoding="utf-8")
    assert "step_" in best
    for speaker in ("demo_speaker_a", "demo_speaker_b"):
        assert (project / "prepared" / speaker / f"{speaker}.lst").is_file()
        assert f"--speaker {speaker}" in printed
    assert (project / "run" / "adapter" / "adapter_model.safetensors").is_file()
    assert (project / "report.html").is_file() and (project / "report.md").is_file()
    assert "indextts-serve --model_dir" in printed and "indextts-infer --adapter" in printed
    commands = (project / "commands.sh").read_text(encoding="utf-8").splitlines()[2:]
    assert [c.split()[1] for c in commands] == ["prepare", "prepare", "extract", "train", "eval", "report"]


def test_a_third_run_does_nothing_and_says_so(built, recordings, tiny_model_dir, capsys):
    project, _ = built
    assert voice_main(build_args(recordings, tiny_model_dir, project)) == 0  # the second run
    before = all_files(project)
    assert voice_main(build_args(recordings, tiny_model_dir, project)) == 0
    assert "nothing to do: every stage is done" in capsys.readouterr().out
    assert all_files(project) == before


def test_killed_during_training_it_continues_to_the_same_adapters(built, recordings, tiny_model_dir, tmp_path, capsys):
    project = tmp_path / "project"
    command = [sys.executable, "-m", "indextts", "voice", *build_args(recordings, tiny_model_dir, project)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        checkpoint = project / "run" / "checkpoints" / "step_00000002"
        deadline = time.monotonic() + 600
        while not checkpoint.is_dir() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert not (project / "run" / "eval").exists(), "the build ended before the kill: nothing was interrupted"
    assert voice_main(build_args(recordings, tiny_model_dir, project)) == 0
    printed = capsys.readouterr().out
    assert "train: resuming (stopped before it finished" in printed and "extract: skipped" in printed
    reference = built[0]
    for name in ("adapter/adapter_model.safetensors", "speakers.safetensors"):
        assert (project / "run" / name).read_bytes() == (reference / "run" / name).read_bytes(), name


def test_changed_inputs_run_again_saying_why_and_keep_the_old_run(built, recordings, tiny_model_dir, capsys):
    project, _ = built
    speaker_list = project / "prepared" / "demo_speaker_a" / "demo_speaker_a.lst"
    lines = speaker_list.read_text(encoding="utf-8").splitlines(keepends=True)
    speaker_list.write_text("".join(lines[:-1]), encoding="utf-8")  # the user drops a clip
    assert voice_main(build_args(recordings, tiny_model_dir, project)) == 0
    printed = capsys.readouterr().out
    assert "prepare:demo_speaker_a: skipped" in printed
    assert "extract: running (its inputs changed since the last build: audio_lists)" in printed
    assert "train: running (its inputs changed since the last build: data)" in printed
    assert (project / "run.previous-1" / "adapter" / "adapter_model.safetensors").is_file()
    assert (project / "run" / "eval" / "best.json").is_file()


def test_missing_recordings_are_refused_before_anything_is_written(tiny_model_dir, tmp_path, capsys):
    project = tmp_path / "project"
    status = voice_main(["build", str(tmp_path / "absent"), "--speaker", "a", "--base", str(tiny_model_dir),
                         "--project", str(project)])
    assert status == 2
    assert "These recordings do not exist" in capsys.readouterr().err
    assert not project.exists()


def test_speakers_and_recordings_must_pair_up(tiny_model_dir, tmp_path, capsys):
    recording = tmp_path / "a.wav"
    recording.write_bytes(b"")
    status = voice_main(["build", str(recording), "--speaker", "a", "--speaker", "b", "--base", str(tiny_model_dir),
                         "--project", str(tmp_path / "project")])
    assert status == 2 and "2 --speaker names for 1 recordings" in capsys.readouterr().err
    assert not (tmp_path / "project").exists()
