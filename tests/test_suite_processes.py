"""The suite leaves no process behind: launchers run in their own process group, killed as a whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO_ROOT, kill_process_group, run_process_group

LAUNCHER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_timeout_kills_the_launchers_children(tmp_path):
    """subprocess.run's timeout kills only the launcher; a torchrun rank then lived on (issue 25 item 7)."""
    pid_file = tmp_path / "child.pid"
    with pytest.raises(subprocess.TimeoutExpired):
        run_process_group([sys.executable, "-c", LAUNCHER, str(pid_file)], timeout=5)
    assert wait_until_gone(int(pid_file.read_text()))


def test_children_left_by_a_finished_launcher_are_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    script = LAUNCHER.rsplit("time.sleep(120)", 1)[0]  # the launcher exits at once, its child lives on
    result = run_process_group([sys.executable, "-c", script, str(pid_file)], timeout=60)
    assert result.returncode == 0, result.stderr
    assert wait_until_gone(int(pid_file.read_text()))


LEAKING_TEST = '''
import subprocess, sys

def test_leaves_a_child_behind(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    open(PID_FILE, "w").write(str(child.pid))
'''


def test_session_fails_while_a_started_process_lives_on(tmp_path):
    """The end-of-session check of conftest.py names a process a test left running, kills it, and fails
    the run although every test passed; an orphan in its own session is found too."""
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(Path(__file__).with_name(name), tmp_path / name)
    (tmp_path / "test_leak.py").write_text(LEAKING_TEST.replace("PID_FILE", repr(str(tmp_path / "pid"))))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                             str(tmp_path), str(tmp_path / "test_leak.py")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    pid = int((tmp_path / "pid").read_text())
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 1, result.stdout
    assert f"pid {pid}: " in result.stdout and "time.sleep(120)" in result.stdout, result.stdout
    assert wait_until_gone(pid)


def test_session_passes_when_nothing_is_left(tmp_path):
    for name in ("conftest.py", "helpers.py"):
        shutil.copy(Path(__file__).with_name(name), tmp_path / name)
    (tmp_path / "test_clean.py").write_text("def test_nothing():\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                             str(tmp_path), str(tmp_path / "test_clean.py")], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "still alive" not in result.stdout, result.stdout


UNDER_LOAD = REPO_ROOT / "tools" / "test_under_load.sh"


def load_group_members(output: str) -> list[str]:
    """Live members of the busy loops' process group named in the script's first line."""
    group = output.split("process group ", 1)[1].split(";", 1)[0]
    listing = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.split()[0] == group and not line.split()[1].startswith("Z")]


def test_under_load_reports_the_status_and_stops_the_loops():
    result = run_process_group(["bash", str(UNDER_LOAD), "sh", "-c", "exit 3"], timeout=60,
                               env={**os.environ, "LOAD_PROCESSES": "1"})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "exited with status 3" in result.stdout and "(loops stopped)" in result.stdout, result.stdout
    assert load_group_members(result.stdout) == []


def test_under_load_stops_the_loops_when_terminated(tmp_path):
    log = tmp_path / "log"
    with log.open("w") as out:
        script = subprocess.Popen(["bash", str(UNDER_LOAD), "sleep", "60"], stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "LOAD_PROCESSES": "1"}, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while "process group" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        script.terminate()
        assert script.wait(timeout=20) == 143
        assert load_group_members(log.read_text()) == []
    finally:
        kill_process_group(script.pid)
