"""Children of the GPU check: each in its own process session, output streamed, the whole group killed.

A child runs with ``start_new_session=True``, so it and everything it starts (``train.py`` under
bench_train_e2e, DataLoader workers) share one process group that ``os.killpg`` ends at once:
SIGTERM, then SIGKILL after ``GRACE_S``. On Linux the child also gets SIGKILL when its parent dies
(``PR_SET_PDEATHSIG``), so even a SIGKILL of the GPU check leaves no child on the GPU.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

GRACE_S = 5.0
"""Seconds between SIGTERM and SIGKILL of a child's process group."""
PR_SET_PDEATHSIG = 1
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
"""Looked up before any fork: a child of a multi-threaded parent must not call dlopen/dlsym."""


class Interrupted(Exception):
    """The GPU check itself got SIGTERM or SIGINT."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signum)


def raise_on_termination() -> None:
    """SIGTERM and SIGINT raise ``Interrupted`` in the main thread (the running child is then killed)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_interrupted)


def die_with_parent() -> None:
    """In a child before exec: SIGKILL when the parent dies (Linux; a no-op elsewhere)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


def kill_group(pgid: int) -> None:
    """SIGTERM to the whole group, SIGKILL to what is left after ``GRACE_S``."""
    for signum, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _pump(stream, log: TextIO, echo: TextIO | None, tail: list[str]) -> None:
    """Copy the child's output line by line to the log (and the console) as it comes."""
    for line in iter(stream.readline, ""):
        log.write(line)
        log.flush()
        if echo is not None:
            echo.write(line)
            echo.flush()
        tail.append(line)
        del tail[:-200]


def run_logged(command: list[str], log_path: Path, timeout_s: float, cwd: Path, env: dict,
               echo: TextIO | None = sys.stdout) -> dict:
    """Run ``command`` in its own session; stdout and stderr go to ``log_path`` as they come.

    Returns status ("ok", "failed (exit N)", "timed out after N s"), exit code, seconds and the last
    lines of output. On timeout or ``Interrupted`` the child's whole process group is killed; an
    ``Interrupted`` is raised again after that.
    """
    started = time.perf_counter()
    tail: list[str] = []
    with open(log_path, "w", encoding="utf-8") as log:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True,
                                 preexec_fn=die_with_parent)
        pump = threading.Thread(target=_pump, args=(child.stdout, log, echo, tail), daemon=True)
        pump.start()
        try:
            code = child.wait(timeout=max(timeout_s, 1.0))
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            code, status = None, f"timed out after {timeout_s:.0f} s"
        finally:
            kill_group(child.pid)  # also what a finished child left behind
            pump.join(timeout=GRACE_S)
    return {"command": command, "status": status, "exit_code": code,
            "seconds": round(time.perf_counter() - started, 1), "output_tail": "".join(tail)[-4000:]}
