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

import pytest
import torch
from safetensors import safe_open

from helpers import REPO_ROOT, all_files, voice_build_args as build_args
from indextts.cli.voice import main as voice_main

pytestmark = pytest.mark.slow


def test_one_command_builds_a_promoted_voice_per_speaker_and_a_report(built_voice):
    project, printed = built_voice
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


def test_a_third_run_does_nothing_and_says_so(built_voice, voice_recordings, tiny_model_dir, capsys):
    project, _ = built_voice
    assert voice_main(build_args(voice_recordings, tiny_model_dir, project)) == 0  # the second run
    before = all_files(project)
    assert voice_main(build_args(voice_recordings, tiny_model_dir, project)) == 0
    assert "nothing to do: every stage is done" in capsys.readouterr().out
    assert all_files(project) == before


def test_killed_during_training_it_continues_to_the_same_adapters(built_voice, voice_recordings, tiny_model_dir, tmp_path, capsys):
    project = tmp_path / "project"
    command = [sys.executable, "-m", "indextts", "voice", *build_args(voice_recordings, tiny_model_dir, project)]
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
    assert voice_main(build_args(voice_recordings, tiny_model_dir, project)) == 0
    printed = capsys.readouterr().out
    assert "train: resuming (stopped before it finished" in printed and "extract: skipped" in printed
    reference = built_voice[0]
    for name in ("adapter/adapter_model.safetensors", "speakers.safetensors"):
        resumed, uninterrupted = (safetensors_content(folder / "run" / name) for folder in (project, reference))
        assert resumed[0] == uninterrupted[0], name  # metadata (the order of its keys may differ)
        assert resumed[1].keys() == uninterrupted[1].keys()
        assert all(torch.equal(resumed[1][key], uninterrupted[1][key]) for key in resumed[1]), name


def safetensors_content(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a safetensors file."""
    with safe_open(str(path), "pt") as handle:
        return handle.metadata() or {}, {key: handle.get_tensor(key) for key in handle.keys()}


def test_changed_inputs_run_again_saying_why_and_keep_the_old_run(built_voice, voice_recordings, tiny_model_dir, capsys):
    project, _ = built_voice
    speaker_list = project / "prepared" / "demo_speaker_a" / "demo_speaker_a.lst"
    lines = speaker_list.read_text(encoding="utf-8").splitlines(keepends=True)
    speaker_list.write_text("".join(lines[:-1]), encoding="utf-8")  # the user drops a clip
    assert voice_main(build_args(voice_recordings, tiny_model_dir, project)) == 0
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


def test_approving_a_clip_in_review_csv_runs_the_prepare_stage_again(tmp_path):
    from indextts.prepare.review import REVIEW_COLUMNS
    from indextts.voice.build import BuildOptions, prepare_stages

    (tmp_path / "alice.wav").write_bytes(b"stand-in recording")
    options = BuildOptions(recordings=[tmp_path / "alice.wav"], speakers=["alice"], base=tmp_path,
                           project=tmp_path / "project")
    before = prepare_stages(options)[0].inputs
    review = options.prepared / "alice" / "review.csv"
    review.parent.mkdir(parents=True)
    row = {column: "" for column in REVIEW_COLUMNS} | {"clip": "alice/alice_0003.wav", "approved": "no"}
    review.write_text(",".join(REVIEW_COLUMNS) + "\n" + ",".join(row.values()) + "\n", encoding="utf-8")
    assert prepare_stages(options)[0].inputs == before  # no approval yet
    review.write_text(review.read_text(encoding="utf-8").replace(",no,", ",Yes,"), encoding="utf-8")
    after = prepare_stages(options)[0].inputs
    assert after["approvals"] != before["approvals"] and after["recordings"] == before["recordings"]
