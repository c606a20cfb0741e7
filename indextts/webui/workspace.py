"""What the web UI's tabs share: the folders it works in, its background jobs, the loaded voices."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from indextts.checkpoint_folder.layout import DEFAULT_MODEL_DIR
from indextts.errors import IndexTTSError
from indextts.webui.backend import VoiceBank
from indextts.webui.jobs import Job, JobBoard
from indextts.webui.paths import PathPolicy

WARNING_SIGN = "⚠️"
REFRESH_SECONDS = 1.0
"""How often the page polls job status and training metrics."""


@dataclass
class Settings:
    """Where the page starts: the base checkpoint folder, the work folder, the torch device, and the
    other folders (``allowed_dirs``) requests may name besides the work folder and the base."""

    model_dir: Path = DEFAULT_MODEL_DIR
    workdir: Path = Path("webui_work")
    device: str = "auto"
    allowed_dirs: tuple[Path, ...] = ()

    @property
    def prepared_dir(self) -> Path:
        return self.workdir / "prepared"

    @property
    def extracted_dir(self) -> Path:
        return self.workdir / "extracted"

    @property
    def runs_dir(self) -> Path:
        return self.workdir / "runs"


@dataclass
class Workspace:
    """One per server: the settings, the folders requests may name, the job board (logs under
    ``<workdir>/logs``) and the voice bank."""

    settings: Settings
    board: JobBoard = field(init=False)
    paths: PathPolicy = field(init=False)
    voices: VoiceBank | None = None

    def __post_init__(self):
        from gradio.utils import get_upload_folder

        self.board = JobBoard(self.settings.workdir / "logs")
        self.paths = PathPolicy.for_folders(self.settings.workdir, self.settings.model_dir,
                                            self.settings.allowed_dirs, Path(get_upload_folder()))


def error_text(error: IndexTTSError) -> str:
    """How a library error reads in a status box: a warning sign and its one paragraph."""
    return f"{WARNING_SIGN} {error}"


def reporting_errors(outputs: int):
    """Decorate a handler whose last output is a status box: a library error fills the status box
    (its one-paragraph message) and leaves the ``outputs - 1`` other outputs unchanged."""
    import gradio as gr

    def decorate(handler):
        @functools.wraps(handler)
        def wrapped(*args):
            try:
                return handler(*args)
            except IndexTTSError as error:
                unchanged = tuple(gr.skip() for _ in range(outputs - 1))
                return (*unchanged, error_text(error)) if unchanged else error_text(error)
        return wrapped
    return decorate


@dataclass
class JobPanel:
    """The controls of one background job on the page: start (and resume), stop, and two lines:
    ``message`` answers the last click, ``status`` follows the job (state, progress, ETA, error)."""

    start: object
    resume: object | None
    message: object
    status: object


def job_panel(workspace: Workspace, name: str, prefix: str, start_label: str, resume: bool = False,
              follow: bool = True) -> JobPanel:
    """Lay out a JobPanel for job ``name`` (element ids ``<prefix>-start`` etc.); stop is wired here,
    and with ``follow`` a timer refreshes the status line every ``REFRESH_SECONDS``."""
    import gradio as gr

    with gr.Row():
        start = gr.Button(start_label, variant="primary", elem_id=f"{prefix}-start")
        again = gr.Button("Resume", elem_id=f"{prefix}-resume") if resume else None
        stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop")
    message = gr.Markdown(elem_id=f"{prefix}-message")
    status = gr.Markdown(workspace.board.summary(name), elem_id=f"{prefix}-status")
    stop.click(lambda: workspace.board.stop(name), None, message)
    if follow:
        gr.Timer(REFRESH_SECONDS).tick(lambda: workspace.board.summary(name), None, status, show_progress="hidden")
    return JobPanel(start, again, message, status)


def started(job: Job) -> str:
    """The message after a job starts: the exact command, so it can be rerun by hand."""
    return f"Started: `{' '.join(job.command)}`"
