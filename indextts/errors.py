"""User-facing error types.

Every error a user can cause (a bad file, a wrong option, a mismatched checkpoint) is raised as an
``IndexTTSError`` whose message is one paragraph: what went wrong, where, and what to do next.
Command-line entry points catch it, print the message and exit with status 2.
"""

from pathlib import Path

EXIT_USER_ERROR = 2
"""The exit status of a command that stopped on an ``IndexTTSError``."""
EXIT_INTERRUPTED = 130
"""The exit status of a command stopped by Ctrl-C (finished work kept)."""


class IndexTTSError(Exception):
    """Base class of errors caused by user input rather than by a bug."""


class ConfigError(IndexTTSError):
    """A config.yaml or training config is missing, malformed or inconsistent."""


class CheckpointError(IndexTTSError):
    """A weight file is missing, unreadable, or does not fit the config."""


class AudioError(IndexTTSError):
    """An audio file cannot be read or holds no usable sound."""


class TextError(IndexTTSError):
    """A text cannot be normalised or tokenised into something speakable."""


class DataError(IndexTTSError):
    """An audio list, manifest or extracted dataset is malformed or empty."""


class TrainingError(IndexTTSError):
    """Training cannot start or resume with the given data, config or checkpoints."""


class DistributedError(IndexTTSError):
    """A process of a torchrun job gave up waiting for the others (a rank died, hung or was killed)."""


class InferenceError(IndexTTSError):
    """Synthesis cannot run with the given speaker, adapter, reference or output."""


class EvaluationError(IndexTTSError):
    """A run cannot be evaluated: no checkpoints, no eval set, an unknown or uninstalled backend."""


class PrepareError(IndexTTSError):
    """Raw recordings cannot be turned into clips and an audio list with the given inputs or options."""


class VoiceNotFoundError(InferenceError):
    """A requested voice is not loaded; the message lists the voices that are.

    ``voice`` is the name asked for and ``matches`` the loaded voices it fits (several: ambiguous),
    so that the HTTP server can word its own answer.
    """

    def __init__(self, message: str, voice: str | None = None, matches: tuple[str, ...] = ()):
        super().__init__(message)
        self.voice = voice
        self.matches = matches


class TextTooLongError(InferenceError):
    """A text or sentence exceeds the model's ``max_text_length`` / ``gpt.max_text_tokens`` limit."""


class WebUIError(IndexTTSError):
    """A web UI action cannot run: a job is already running, a field is empty, or a feature is missing."""


def extra_install_command(extra: str) -> str:
    """The pip command, in backticks, that adds the optional ``extra`` to this install.

    A source checkout (``pyproject.toml`` of this project beside the package) is told the editable
    form; a pip install is told the published name, which works from any folder.
    """
    project = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        in_checkout = 'name = "index-tts-lora"' in project.read_text(encoding="utf-8")
    except OSError:
        in_checkout = False
    return f"`pip install -e '.[{extra}]'`" if in_checkout else f"`pip install 'index-tts-lora[{extra}]'`"
