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
