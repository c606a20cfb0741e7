"""tools/run_demo.py: the commands it echoes can be pasted into a shell."""

from __future__ import annotations

import shlex
import subprocess

import run_demo


def test_echoed_command_pastes_back_to_the_same_arguments(monkeypatch, capsys):
    """Issue 25 item 22: `--text Hello! 这是…` was echoed unquoted, so pasting it split the text."""
    ran = []
    monkeypatch.setattr(run_demo.subprocess, "run",
                        lambda command, cwd: ran.append(command) or subprocess.CompletedProcess(command, 0))
    command = ["python", "indextts/infer.py", "--text", run_demo.TEXTS["demo_speaker_a"], "--output", "a b.wav"]
    run_demo.run("synthesis", command)
    echoed = next(line[2:] for line in capsys.readouterr().out.splitlines() if line.startswith("$ "))
    assert shlex.split(echoed) == command and ran == [command]


def test_family_2_demo_runs_the_v2_tiny_folder_and_speaks_with_an_emotion(monkeypatch, tmp_path):
    """`make demo FAMILY=2`: the same steps, on a tiny IndexTTS-2 folder, synthesis with an emotion vector."""
    ran = []
    monkeypatch.setattr(run_demo.subprocess, "run",
                        lambda command, cwd: ran.append(command) or subprocess.CompletedProcess(command, 0))
    assert run_demo.main(["--family", "2", "--workdir", str(tmp_path / "demo"), "--steps", "3"]) == 0
    scripts = [command[1] for command in ran]
    assert scripts == ["tools/make_demo_data.py", "tools/make_tiny_checkpoints.py", "tools/extract_codec.py",
                       "train.py", "indextts/infer.py", "indextts/infer.py"]
    assert ran[1][-2:] == ["--release", "2"] and "train.max_steps=3" in ran[3]
    for synthesis in ran[4:]:
        assert synthesis[synthesis.index("--emotion_vector") + 1] == run_demo.DEMO_EMOTION


def test_default_demo_stays_on_15_without_emotion(monkeypatch, tmp_path):
    ran = []
    monkeypatch.setattr(run_demo.subprocess, "run",
                        lambda command, cwd: ran.append(command) or subprocess.CompletedProcess(command, 0))
    assert run_demo.main(["--workdir", str(tmp_path / "demo")]) == 0
    assert "--release" not in ran[1] and not any("--emotion_vector" in command for command in ran)
