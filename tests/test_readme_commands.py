"""Every command line of README.md runs as printed, in order, in a fresh venv (issue 27).

The lines of the ```bash blocks (continuation lines joined, trailing comments stripped) run one by one
through bash, each from a work folder outside the checkout; a line whose comment starts with "in a
checkout" runs in a fresh copy of the checkout instead. The venv is made with ``python -m venv``, and
the README's install line installs everything into it. The environment, not the command, picks the
CPU build of torch: PIP_CONSTRAINT names a file that pins ``torch==2.13.0`` (the CPU wheel this
machine's pip finds in /opt/wheels) next to the machine's own caps, so the printed
``pip install torch`` never pulls the CUDA build. ``indextts download 1.5`` and ``indextts download 2``
fetch the tiny random 1.5 and IndexTTS-2 checkpoints in the release file names from a local hub
(tests/fake_hub.py) that answers only while a download line runs; every other command runs as on a
user's machine without network (HF_ENDPOINT refuses connections, the hub cache lives in the work folder). The recordings are the long eSpeak recordings of the two demo
speakers, copied to the folders the README names. Servers start, answer on their port, and end on
SIGTERM. Lines that cannot run here sit in ``NOT_RUN`` with the reason; every other line runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest

from fake_hub import FakeHub
from helpers import REPO_ROOT, kill_process_group, run_process_group
from indextts.releases import RELEASES

README = REPO_ROOT / "README.md"
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
IN_A_CHECKOUT = "in a checkout"
MACHINE_PIP_CONSTRAINTS = Path("/etc/xdg/pip/constraints.txt")
CPU_TORCH = "torch==2.13.0"
RECORDINGS = {"recordings/alice": "demo_speaker_a", "recordings/bob": "demo_speaker_b",
              "recordings/carol": "demo_speaker_a"}
"""README recording folder -> the demo speaker whose long recording is copied there."""
SERVER_PORTS = {"indextts-serve": 8000, "indextts-webui": 7860}
"""Server command -> its default port (a ``--port N`` on the line wins)."""
COMMAND_TIMEOUT_S = 900
OFFLINE_ENDPOINT = "http://127.0.0.1:1"
"""HF_ENDPOINT outside the download lines: nothing listens on port 1, so the hub refuses connections."""

NOT_RUN = {
    "make demo": "a second full install (the checkout's own .venv, about 6 minutes here) before tools/run_demo.py, "
                 "which runs the stages the lines below run, on the same tiny random model",
    "make test": "the test suite itself, which `make test-readme` (this file) runs beside",
    "torchrun --standalone --nproc_per_node=4 -m indextts.cli.train run_dir=runs/bob_4gpu":
        "4 processes need 4 batches per epoch; the test's 10 s of recordings make 1, which the trainer refuses "
        "('Only 1 batch(es) of data for 4 processes'); tests/test_train.py runs torchrun with 2 CPU processes",
    "indextts-eval --run_dir runs/bob --asr whisper:openai/whisper-large-v3 --asr zh=paraformer "
    "--sim wavlm:microsoft/wavlm-base-plus-sv --promote":
        "downloads Whisper large-v3, Paraformer-zh (and FunASR) and WavLM from the hub: needs network and ~4 GB",
}
"""README command lines this test does not run, with the reason."""


class CommandLine(NamedTuple):
    command: str
    comment: str


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment) of one shell line: a ``#`` outside quotes, at the start or after a space, starts the comment."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].strip(), line[index + 1:].strip()
    return line.strip(), ""


def readme_command_lines(text: str) -> list[CommandLine]:
    """Every command line of the ```bash blocks of ``text``, in order; comment-only lines are left out."""
    lines = []
    for block in BASH_BLOCK.finditer(text):
        for line in re.sub(r"\s*\\\n\s*", " ", block[1]).splitlines():
            command, comment = split_comment(line)
            if command:
                lines.append(CommandLine(command, comment))
    return lines


def test_command_lines_are_read_as_a_shell_reads_them():
    text = ('```bash\nrun "a # b" x  # note\n# only a comment\nlong \\\n    --flag 1   # in a checkout\n```\n'
            "```python\nnot_shell()\n```\n")
    assert readme_command_lines(text) == [CommandLine('run "a # b" x', "note"),
                                          CommandLine("long --flag 1", IN_A_CHECKOUT)]


def test_every_readme_command_line_is_run_or_listed_with_a_reason():
    commands = [line.command for line in readme_command_lines(README.read_text(encoding="utf-8"))]
    assert sorted(set(NOT_RUN) - set(commands)) == [], "NOT_RUN names lines the README no longer has"
    assert len(commands) - len(NOT_RUN) >= 10, "the README's story lost its commands"
    for folder in RECORDINGS:
        assert any(folder in command for command in commands), f"the README no longer names {folder}"


def pip_constraints(path: Path) -> Path:
    """The machine's pip caps plus the CPU torch pin, in one file for PIP_CONSTRAINT (it replaces the machine's)."""
    caps = MACHINE_PIP_CONSTRAINTS.read_text() if MACHINE_PIP_CONSTRAINTS.is_file() else ""
    path.write_text(f"{caps}\n{CPU_TORCH}\n")
    return path


def user_environment(root: Path, venv: Path, hub_endpoint: str) -> dict[str, str]:
    """The shell a user has after activating ``venv``: nothing of this test's Python or hub settings."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_CONSTRAINT") and not key.startswith("HF_")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
            "PIP_CONSTRAINT": str(pip_constraints(root / "pip-constraints.txt")), "HF_HOME": str(root / "hf-home"),
            "HF_HUB_CACHE": str(root / "hf-home" / "hub"), "HF_ENDPOINT": hub_endpoint}


def failure(command: str, result: subprocess.CompletedProcess | None, why: str) -> str:
    tails = f"\n--- stdout (tail)\n{result.stdout[-4000:]}\n--- stderr (tail)\n{result.stderr[-4000:]}" if result else ""
    return f"README command failed ({why}):\n  {command}{tails}"


def run_line(command: str, cwd: Path, env: dict[str, str]) -> float:
    """Run one README line through bash; fails the test with its output tails unless it exits 0. Returns seconds."""
    started = time.monotonic()
    try:
        result = run_process_group(["bash", "-c", command], COMMAND_TIMEOUT_S, cwd=cwd, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(failure(command, None, f"still running after {COMMAND_TIMEOUT_S} s"))
    if result.returncode != 0:
        pytest.fail(failure(command, result, f"exit status {result.returncode}"))
    return time.monotonic() - started


def server_port(command: str) -> int | None:
    """The port a README server line listens on, or None when the line starts no server."""
    program = command.split()[0]
    if program not in SERVER_PORTS:
        return None
    given = re.search(r"--port[ =](\d+)", command)
    return int(given[1]) if given else SERVER_PORTS[program]


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def wait_until_answers(server: subprocess.Popen, command: str, url: str) -> None:
    """Poll ``url`` until it answers 200; fails the test with the server's output when it ends or times out first."""
    started = time.monotonic()
    while not answers(url):
        if server.poll() is not None or time.monotonic() - started > COMMAND_TIMEOUT_S:
            server.kill()
            out, err = server.communicate()
            pytest.fail(failure(command, subprocess.CompletedProcess(command, server.returncode, out, err),
                                f"{url} never answered 200"))
        time.sleep(1)


def run_server_line(command: str, port: int, cwd: Path, env: dict[str, str]) -> float:
    """Start a README server line, wait until its page answers 200, stop it with SIGTERM; returns seconds."""
    url = f"http://127.0.0.1:{port}" + ("/health" if command.startswith("indextts-serve") else "/")
    assert not answers(url), f"port {port} already answers before `{command}` starts: stop what holds it"
    started = time.monotonic()
    with subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, env=env, start_new_session=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as server:
        try:
            wait_until_answers(server, command, url)
            server.send_signal(signal.SIGTERM)
            try:
                server.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`{command}` still runs 60 s after SIGTERM")
        finally:
            kill_process_group(server.pid)
    return time.monotonic() - started


def test_a_failing_line_fails_with_the_command_and_its_output_tails(tmp_path):
    with pytest.raises(pytest.fail.Exception) as failed:
        run_line("echo said; echo complained >&2; exit 3", tmp_path, dict(os.environ))
    message = str(failed.value)
    assert "(exit status 3)" in message and "echo said; echo complained" in message
    assert "--- stdout (tail)\nsaid\n" in message and "--- stderr (tail)\ncomplained\n" in message


def test_server_lines_are_known_by_their_program_and_port():
    assert server_port("indextts-serve --adapter runs/bob --port 8001") == 8001
    assert server_port("indextts-webui --model_dir checkpoints") == SERVER_PORTS["indextts-webui"]
    assert server_port("indextts-train run_dir=runs/bob") is None


@pytest.fixture
def workplace(tmp_path, voice_recordings) -> tuple[Path, Path]:
    """(a fresh copy of the checkout, a work folder outside it holding the README's recordings)."""
    checkout = tmp_path / "index-tts-lora"
    shutil.copytree(REPO_ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv*", ".cache", "build", "dist", "*.egg-info", "__pycache__", "demo_out", "runs"))
    work = tmp_path / "work"
    for folder, speaker in RECORDINGS.items():
        shutil.copytree(voice_recordings / speaker, work / folder)
    return checkout, work


def release_15_files(tiny_model_dir: Path) -> dict[str, bytes]:
    """The tiny random checkpoint as the IndexTeam/IndexTTS-1.5 repository (the release file names)."""
    return {path.name: path.read_bytes() for path in tiny_model_dir.iterdir() if path.is_file()}


def release_repos(version: str, folder: Path) -> dict[str, dict[str, bytes]]:
    """A tiny release folder as the hub repositories ``indextts download <version>`` fetches it from:
    ``RELEASES[version].repos`` inverted (folder path -> repository and path; the release repository's
    other files at their own names)."""
    sources = RELEASES[version].repos
    by_local = {local: (source.repo_id, repo_path) for source in sources for repo_path, local in source.files.items()}
    whole = next(source.repo_id for source in sources if source.whole_repo)
    repos: dict[str, dict[str, bytes]] = {source.repo_id: {} for source in sources}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        local = path.relative_to(folder).as_posix()
        repo_id, repo_path = by_local.get(local, (whole, local))
        repos[repo_id][repo_path] = path.read_bytes()
    return repos


def test_tiny_v2_release_maps_back_onto_every_repository_the_download_takes(tiny_v2_dirs):
    repos = release_repos("2", tiny_v2_dirs["2"])
    for source in RELEASES["2"].repos:
        assert set(source.files) <= set(repos[source.repo_id]), source.repo_id
    assert sum(map(len, repos.values())) == sum(1 for p in tiny_v2_dirs["2"].rglob("*") if p.is_file())


def run_readme_line(line: CommandLine, checkout: Path, work: Path, env: dict[str, str]) -> str:
    """Run one README line where it belongs; returns its timing line."""
    cwd = checkout if line.comment.startswith(IN_A_CHECKOUT) else work
    port = server_port(line.command)
    seconds = run_server_line(line.command, port, cwd, env) if port else run_line(line.command, cwd, env)
    return f"{seconds:6.1f} s  {line.command}"


@pytest.mark.readme
@pytest.mark.slow
def test_readme_commands_run_as_printed_in_order(workplace, tiny_model_dir, tiny_v2_dirs, tmp_path):
    checkout, work = workplace
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    lines = [line for line in readme_command_lines(README.read_text(encoding="utf-8")) if line.command not in NOT_RUN]
    repos = {"IndexTeam/IndexTTS-1.5": release_15_files(tiny_model_dir), **release_repos("2", tiny_v2_dirs["2"])}
    offline = user_environment(tmp_path, venv, OFFLINE_ENDPOINT)
    timings = []
    for line in lines:
        if not line.command.startswith("indextts download"):
            timings.append(run_readme_line(line, checkout, work, offline))
            continue
        with FakeHub(repos) as hub:  # up for this download only: everything else runs offline
            timings.append(run_readme_line(line, checkout, work, user_environment(tmp_path, venv, hub.endpoint)))
    print("\n".join(timings))
    torch_build = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
                                 capture_output=True, text=True, timeout=300).stdout.strip()
    assert torch_build.endswith("+cpu"), f"the install line installed torch {torch_build}, not the CPU build"
