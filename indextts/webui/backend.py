"""The web UI's only door into the library: every call the page makes goes through this module.

Long work (preparation, extraction, training, evaluation) runs as the same console commands a
user types, in background processes (see ``jobs``); quick work (reading lists, metrics and
evaluation tables, loading voices, speaking) calls the library in-process. When a library API
changes, this is the one file to adapt. A feature whose package is not installed raises
``WebUIError`` saying so, which the page shows like any other library error.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indextts.errors import DataError, WebUIError
from indextts.run_folder import RunFolder
from indextts.webui.jobs import Job, JobBoard

EVAL_SUMMARY = "summary.csv"
EVAL_PLOT = "summary.png"
REVIEW_FILE = "review.csv"


# ------------------------------------------------------------------ commands
def _command(module: str, feature: str) -> list[str]:
    """``python -m module`` (the console script's module), or a clear error when it is not installed."""
    if importlib.util.find_spec(module.rsplit(".", 1)[0]) is None or importlib.util.find_spec(module) is None:
        raise WebUIError(f"{feature} is not available in this installation: the module {module} is missing. "
                         "Install or update index-tts-lora with that feature, then reload this page.")
    return [sys.executable, "-m", module]


def _required(value, what: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise WebUIError(f"{what} is empty. Fill it in and try again.")
    return text


def nonempty_lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def start_prepare(board: JobBoard, inputs: list[str], output_dir: str, speaker: str, asr: str,
                  model_dir: str, language: str = "") -> Job:
    """Run ``indextts-prepare`` on recordings (files or folders) in the background."""
    command = _command("indextts.cli.prepare", "Data preparation")
    if not inputs:
        raise WebUIError("No recordings given: upload files or enter a file or folder path, then run preparation.")
    command += [arg for path in inputs for arg in ("--input", path)]
    command += ["--output_dir", _required(output_dir, "The output folder")]
    command += ["--speaker", speaker.strip()] if speaker.strip() else []
    command += ["--asr", asr.strip()] if asr.strip() else []
    command += ["--language", language.strip()] if language.strip() else []
    command += ["--model_dir", model_dir.strip()] if model_dir.strip() else []
    return board.start("prepare", command)


def start_voice_build(board: JobBoard, inputs: list[str], speakers: list[str], model_dir: str, project: str,
                      language: str, asr: str, device: str) -> Job:
    """Run ``indextts voice build`` (prepare -> extract -> train -> eval --promote -> report) in the background."""
    if not inputs:
        raise WebUIError("No recordings given: upload files or enter a file or folder path, then build the voice.")
    command = _command("indextts.cli.voice", "Voice building") + ["build", *inputs]
    command += [arg for speaker in speakers for arg in ("--speaker", speaker)]
    command += ["--base", _required(model_dir, "The base checkpoint folder"),
                "--project", _required(project, "The project folder")]
    command += ["--language", language.strip()] if language.strip() else []
    command += ["--asr", asr.strip()] if asr.strip() else []
    command += ["--device", device.strip()] if device.strip() not in ("", "auto") else []
    return board.start("voice", command)


def start_extraction(board: JobBoard, audio_lists: str, model_dir: str, output_dir: str, device: str) -> Job:
    """Run ``indextts-extract`` (codes and conditions) on one audio list per line of ``audio_lists``."""
    lists = nonempty_lines(audio_lists)
    if not lists:
        raise WebUIError("No audio list given: enter one audio list path per line (path<TAB>transcript files).")
    command = _command("indextts.cli.extract", "Extraction")
    command += [arg for path in lists for arg in ("--audio_list", path)]
    command += ["--extract_condition", "--model_dir", _required(model_dir, "The base checkpoint folder"),
                "--output_dir", _required(output_dir, "The extracted data folder")]
    command += ["--device", device.strip()] if device.strip() not in ("", "auto") else []
    return board.start("extract", command)


def load_train_config(overrides: list[str]):
    """The packaged training config with ``overrides`` applied (raises the library's ConfigError)."""
    from indextts.training import load_train_config

    return load_train_config(overrides=overrides)


def training_defaults() -> dict:
    """The page's starting values for the key training options, from the packaged config."""
    cfg = load_train_config([])
    return {"epochs": int(cfg.train.epochs), "lr": float(cfg.train.optimizer.lr), "lora_r": int(cfg.train.lora.r),
            "token_budget": str(cfg.data.max_tokens), "precision": str(cfg.train.precision)}


LIVE_CURVE_SECONDS = 10
"""A training job started here logs its losses at least this often (train.log_every_seconds), so the
live curve moves between validations instead of waiting for train.log_every_steps."""


@dataclass
class TrainingChoices:
    """The key training options the page offers; anything else goes in ``extra`` as key=value lines.

    ``max_steps`` 0 trains by epochs; ``token_budget`` is a number or "auto"; LoRA alpha follows
    ``lora_r`` at the packaged ratio alpha = 2 r.
    """

    model_dir: str
    speaker_info: str
    run_dir: str
    epochs: int
    max_steps: int
    lr: float
    lora_r: int
    token_budget: str
    precision: str
    extra: str = ""

    def _budget(self) -> str:
        budget = str(self.token_budget).strip()
        if budget != "auto" and not (budget.isdigit() and int(budget) > 0):
            raise WebUIError(f"The token budget '{budget}' is neither a positive whole number nor 'auto'. "
                             "Enter e.g. 6000, or auto to size batches from free GPU memory.")
        return budget

    def overrides(self) -> list[str]:
        """Config overrides (dotlist) for ``train.py``."""
        values = [f"model_dir={_required(self.model_dir, 'The base checkpoint folder')}",
                  f"speaker_info={_required(self.speaker_info, 'The speaker list (speaker_info.json)')}",
                  f"run_dir={_required(self.run_dir, 'The run folder')}",
                  f"train.epochs={int(self.epochs or 0)}", f"train.optimizer.lr={float(self.lr or 0)}",
                  f"train.lora.r={int(self.lora_r or 0)}", f"train.lora.alpha={2 * int(self.lora_r or 0)}",
                  f"data.max_tokens={self._budget()}", f"train.precision={self.precision}",
                  f"train.log_every_seconds={LIVE_CURVE_SECONDS}"]
        if int(self.max_steps or 0) > 0:
            values.append(f"train.max_steps={int(self.max_steps)}")
        return values + nonempty_lines(self.extra)


def start_training(board: JobBoard, choices: TrainingChoices, resume: bool = False) -> Job:
    """Run ``train.py`` with the page's options; ``resume`` continues from the run's latest checkpoint."""
    command = _command("indextts.cli.train", "Training") + choices.overrides()
    return board.start("train", command + (["train.resume=auto"] if resume else []))


def start_evaluation(board: JobBoard, run_dir: str, asr: str, sim: str) -> Job:
    """Run ``indextts-eval`` over the run's checkpoints, writing ``<run>/eval/``."""
    command = _command("indextts.cli.eval", "Evaluation")
    command += ["--run", _required(run_dir, "The run folder")]
    command += ["--asr", asr.strip()] if asr.strip() else []
    command += ["--sim", sim.strip()] if sim.strip() else []
    return board.start("evaluate", command)


# ------------------------------------------------------------------- reading
@dataclass
class MetricsReader:
    """Follows a run's ``metrics.jsonl`` ({"kind": "train"|"valid", "step": ..., losses} per line).

    Each ``read`` parses only the complete lines appended since the last one, so polling a long
    run stays cheap; a file that shrank (a resumed run cuts it back to its checkpoint) is read afresh.
    """

    run_dir: Path
    offset: int = 0
    records: list[dict] = field(default_factory=list)

    def read(self) -> bool:
        """Take in new complete lines; returns whether ``records`` changed."""
        path = RunFolder(self.run_dir).metrics_path
        size = path.stat().st_size if path.is_file() else 0
        restarted = size < self.offset
        if restarted:
            self.offset, self.records = 0, []
        if size == self.offset:
            return restarted
        with open(path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.records += [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
        self.offset += len(complete)
        return restarted or bool(complete)


def read_audio_list(path: str | Path) -> list[tuple[str, str, str]]:
    """(absolute audio path, transcript, problem) per line of an audio list, in file order.

    ``problem`` is "" for a usable line, else the extraction parser's skip reason.
    """
    from indextts.contracts.audio_list import parse_audio_list

    parsed = parse_audio_list(Path(_required(path, "The audio list path")))
    rows = [(u.line_number, str(u.audio), u.text, "") for u in parsed.utterances]
    rows += [(s.line_number, s.audio or s.line, s.text or "", s.reason) for s in parsed.skipped]
    return [row[1:] for row in sorted(rows)]


def write_audio_list(path: str | Path, rows: list[tuple[str, str]]) -> Path:
    """Write ``audio<TAB>text`` lines atomically (audio paths relative to the list's folder)."""
    from indextts.contracts.audio_list import write_audio_list as write_list

    target = Path(_required(path, "The audio list path")).expanduser().resolve()
    try:
        return write_list(target, [(Path(audio).expanduser().resolve(), text) for audio, text in rows])
    except DataError as error:
        raise WebUIError(f"{error} Then export again.") from error


def read_review(output_dir: str | Path) -> list[dict]:
    """The rows of a preparation's ``review.csv`` (clip, duration, lufs, asr_confidence, flags, text, ...)."""
    path = Path(_required(output_dir, "The prepared data folder")) / REVIEW_FILE
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


REVIEW_TABLE_COLUMNS = ["keep", "clip", "seconds", "LUFS", "ASR confidence", "flags", "transcript"]


def _review_by_clip(list_path: Path) -> dict[str, dict]:
    """review.csv rows of the list's folder, keyed by absolute clip path."""
    return {str((list_path.parent / row["clip"]).resolve()): row for row in read_review(list_path.parent)}


def _seconds(audio: str) -> float | None:
    import soundfile

    try:
        return round(soundfile.info(audio).duration, 2)
    except (RuntimeError, OSError):
        return None


def review_table(list_path: str | Path) -> list[list]:
    """One row per line of an audio list, in ``REVIEW_TABLE_COLUMNS`` order.

    Loudness, ASR confidence and flags come from the preparation's review.csv beside the list
    when there is one; a line extraction would skip is flagged with its reason and not kept.
    """
    path = Path(_required(list_path, "The audio list path"))
    review = _review_by_clip(path)
    rows = []
    for audio, text, problem in read_audio_list(path):
        info = review.get(str(Path(audio).resolve()), {})
        flags = ", ".join(f for f in (info.get("flags", ""), problem) if f)
        seconds = float(info["duration"]) if info.get("duration") else _seconds(audio)
        rows.append([not problem, audio, seconds, info.get("lufs", ""), info.get("asr_confidence", ""), flags, text])
    return rows


def read_clip(audio: str) -> tuple[int, np.ndarray]:
    """(sample rate, int16 samples) of one clip, for the review player."""
    import soundfile

    try:
        samples, sample_rate = soundfile.read(audio, dtype="int16", always_2d=False)
    except (RuntimeError, OSError) as error:
        raise WebUIError(f"Cannot play {audio}: {error}. Check that the file exists and is audio.") from None
    return sample_rate, samples


def pcm16(waveform: np.ndarray) -> np.ndarray:
    """int16 samples of a float waveform, as the library writes wav files."""
    from indextts.inference.synthesis import to_pcm16

    return to_pcm16(waveform)


def read_eval_summary(run_dir: str | Path) -> tuple[list[dict], Path | None]:
    """The rows of ``<run>/eval/summary.csv`` and the path of its plot (None when not written yet)."""
    eval_dir = RunFolder(_required(run_dir, "The run folder")).eval_dir
    rows: list[dict] = []
    if (eval_dir / EVAL_SUMMARY).is_file():
        with open(eval_dir / EVAL_SUMMARY, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    plot = eval_dir / EVAL_PLOT
    return rows, plot if plot.is_file() else None


def checkpoint_folders(run_dir: str | Path) -> list[Path]:
    """The run's kept step checkpoints, oldest first."""
    return RunFolder(run_dir).checkpoints()


def promote(run_dir: str, checkpoint: str) -> str:
    """Copy one checkpoint over the run's final adapter and speakers (the evaluation's promote)."""
    run = RunFolder(_required(run_dir, "The run folder"))
    folder = run.snapshot_dir(_required(checkpoint, "The checkpoint"))
    if folder not in run.checkpoints():  # also refuses ../../elsewhere
        raise WebUIError(f"There is no checkpoint {folder}. Pick one of the run's kept checkpoints.")
    run.promote(folder)
    return f"Promoted {folder.name} to the final adapter of {run_dir}."


# -------------------------------------------------------------------- speech
ZERO_SHOT = "zero-shot: reference upload"
"""The voice entry that speaks like an uploaded reference recording with the base model."""


def voice_source_label(folder: Path) -> str:
    """``run`` for a run folder, ``run@step_XXXXXXXX`` for one of its checkpoints."""
    run, snapshot = RunFolder.locate(folder)
    return run.label(snapshot)


def default_synthesis_options():
    """The library's default SynthesisOptions (the reference implementation's settings)."""
    from indextts.inference import SynthesisOptions

    return SynthesisOptions()


def synthesis_option_help() -> dict[str, str]:
    """Field name -> help of every user-facing synthesis option (the commands' flags say the same)."""
    from dataclasses import fields

    from indextts.gpt.generation import GenerationConfig
    from indextts.inference import SynthesisOptions

    return {f.name: f.metadata["help"] for config in (GenerationConfig, SynthesisOptions) for f in fields(config)
            if "help" in f.metadata}


def synthesis_options(temperature: float, top_p: float, top_k: int, num_beams: int, seed: int | None,
                      sentence_tokens: int):
    """The library's SynthesisOptions from the page's advanced fields (seed None or < 0: unseeded)."""
    from dataclasses import replace

    options = replace(default_synthesis_options(), max_text_tokens_per_sentence=int(sentence_tokens))
    seed = None if seed is None or int(seed) < 0 else int(seed)
    options.generation = replace(options.generation, temperature=float(temperature), top_p=float(top_p),
                                 top_k=int(top_k), num_beams=int(num_beams), seed=seed)
    return options


class VoiceBank:
    """The voices of training runs (and their checkpoints) on one base checkpoint folder.

    The base is loaded once; each run adds only its LoRA weights. A voice is ``<run>:<speaker>``
    (``<run>@step_N:<speaker>`` for a checkpoint), or ``ZERO_SHOT`` (the base with a reference).
    """

    def __init__(self, model_dir: str, device: str = "auto"):
        from indextts.inference import IndexTTS

        self.tts = IndexTTS.from_pretrained(Path(_required(model_dir, "The base checkpoint folder")),
                                            device=device or "auto")

    def add(self, folder: str | Path) -> None:
        """Load one run or checkpoint folder; its speakers become voices."""
        folder = Path(folder)
        if not folder.is_dir():
            example = RunFolder("runs/<name>").checkpoint_dir(200)
            raise WebUIError(f"The run folder {folder} does not exist. Give a folder written by training "
                             f"(runs/<name>) or one of its checkpoints ({example}).")
        self.tts.add_voice(voice_source_label(folder), folder)

    @property
    def voices(self) -> list[str]:
        return [info.id for info in self.tts.voices]

    @property
    def family(self):
        """The base's model family (indextts.families.Family): which controls the voices have."""
        return self.tts.base.family

    def stream(self, text: str, voice: str, reference: str | None, options) -> Iterator[tuple[int, np.ndarray]]:
        """(sample rate, float32 (S,) waveform) per sentence, as soon as each is ready."""
        if voice == ZERO_SHOT or not voice:
            if not reference:
                raise WebUIError("Zero-shot speech needs a reference recording: upload one, or pick a trained voice.")
            voice = None
        for chunk in self.tts.stream(text, voice, reference_audio=reference, options=options):
            yield chunk.sample_rate, chunk.waveform


def load_voices(model_dir: str, run_folders: str, device: str = "auto") -> VoiceBank:
    """A VoiceBank with every run or checkpoint folder listed one per line in ``run_folders``."""
    bank = VoiceBank(model_dir, device)
    for folder in nonempty_lines(run_folders):
        bank.add(folder)
    return bank

