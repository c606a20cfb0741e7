"""Long work as background processes: start a command-line tool, follow its log, stop it.

The web UI runs preparation, extraction, training and evaluation through the same console
commands a user would type, each in its own process group, so the page never blocks, a crash of
the job cannot take the server down, and "stop" ends the job and every worker it started.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from indextts.errors import WebUIError

STOP_GRACE_SECONDS = 10.0
"""How long a stopped job may take to save and exit after SIGTERM before it is killed."""
LOG_TAIL_BYTES = 64 * 1024
"""How much of the end of a job's log the page reads each poll (tqdm redraws make long logs large)."""

_TQDM_PROGRESS = re.compile(r"(\d+)/(\d+) \[([\d:]+)<([\d:?]+)")
_ERROR_LINE = re.compile(r"^error: (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Progress:
    """The newest tqdm progress line of a job: ``done`` of ``total`` units, elapsed and ETA as printed."""

    done: int
    total: int
    elapsed: str
    remaining: str

    def describe(self) -> str:
        return f"{self.done} / {self.total} ({self.done / max(self.total, 1):.0%}), elapsed {self.elapsed}, ETA {self.remaining}"


@dataclass
class Job:
    """One running or finished command; its stdout and stderr go to ``log_path``."""

    name: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    stopped: bool = False

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def state(self) -> str:
        """``running``, ``finished``, ``stopped`` or ``failed (exit N)``."""
        code = self.process.poll()
        if code is None:
            return "running"
        if self.stopped:
            return "stopped"
        return "finished" if code == 0 else f"failed (exit {code})"

    def log_text(self) -> str:
        """The last ``LOG_TAIL_BYTES`` of the log, with tqdm's carriage-return redraws turned into lines."""
        if not self.log_path.is_file():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = log.read()
        return tail.decode("utf-8", errors="replace").replace("\r", "\n")

    def progress(self) -> Progress | None:
        """The last tqdm line printed by the job, if any."""
        matches = _TQDM_PROGRESS.findall(self.log_text())
        if not matches:
            return None
        done, total, elapsed, remaining = matches[-1]
        return Progress(int(done), int(total), elapsed, remaining)

    def error_message(self) -> str | None:
        """The one-paragraph message of a failed job (the ``error: ...`` line the commands print)."""
        if self.running or self.process.returncode in (0, None) or self.stopped:
            return None
        found = _ERROR_LINE.findall(self.log_text())
        if found:
            return found[-1]
        return f"{self.name} stopped with exit status {self.process.returncode}; its log is {self.log_path}."

    def summary(self) -> str:
        """One Markdown line for the page: state, progress and, for a failure, the error message."""
        parts = [f"**{self.name}**: {self.state()}"]
        progress = self.progress()
        if progress is not None:
            parts.append(progress.describe())
        message = self.error_message()
        if message:
            parts.append(message)
        return " · ".join(parts)

    def stop(self) -> None:
        """SIGTERM the job's process group (it saves what it can); SIGKILL it after a grace period."""
        if not self.running:
            return
        self.stopped = True
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class JobBoard:
    """The UI's jobs by name; at most one job per name runs at a time."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self.jobs: dict[str, Job] = {}
        self._starting = threading.Lock()

    def start(self, name: str, command: list[str], cwd: Path | None = None) -> Job:
        """Start ``command`` in a new process group with its output in ``<log_dir>/<name>.log``."""
        with self._starting:  # two clicks (e.g. start and resume) never start the same job twice
            return self._start(name, command, cwd)

    def _start(self, name: str, command: list[str], cwd: Path | None) -> Job:
        current = self.jobs.get(name)
        if current is not None and current.running:
            raise WebUIError(f"A {name} job is already running (started as: {' '.join(current.command)}). "
                             "Wait for it to finish or stop it first.")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=cwd, env=env, start_new_session=True)
        job = Job(name, command, log_path, process)
        self.jobs[name] = job
        return job

    def get(self, name: str) -> Job | None:
        return self.jobs.get(name)

    def summary(self, name: str) -> str:
        job = self.jobs.get(name)
        return job.summary() if job is not None else f"**{name}**: not started"

    def stop(self, name: str) -> str:
        job = self.jobs.get(name)
        if job is None or not job.running:
            return f"No {name} job is running."
        job.stop()
        return f"Stopped the {name} job; what it finished is kept."

    def stop_all(self) -> None:
        """Stop every running job (the server is shutting down)."""
        for job in self.jobs.values():
            job.stop()
