"""Raw recordings to an evaluated voice: prepare, extract, train, evaluate (--promote), report.

Each stage runs the same command a user would type (its ``main(argv)``, in this process), so the
report can print commands that reproduce every stage exactly. ``voice.json`` records the stages
(:mod:`indextts.voice.stages`): a re-run skips finished stages, resumes a stopped one (training
from its last checkpoint) and runs again a stage whose inputs changed, saying why. Nothing the user
has is overwritten: a training run whose data changed is moved aside, not deleted.

Project layout::

    <project>/voice.json                 the stage record
    <project>/prepared/<speaker>/        indextts-prepare output (clips, <speaker>.lst, review.csv)
    <project>/features/                  indextts-extract output (speaker_info.json, manifests)
    <project>/run/                       indextts-train run (eval/ from indextts-eval)
    <project>/report.html, report.md     the report
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from indextts.atomic_files import write_bytes_atomic
from indextts.checkpoint_folder.folder import FINGERPRINT_CACHE_SUFFIX, CheckpointFolder
from indextts.errors import EXIT_INTERRUPTED, DataError, IndexTTSError
from indextts.fingerprints import hash_json
from indextts.prepare.review import read_approvals
from indextts.run_folder import RunFolder
from indextts.voice.stages import Decision, StageRecord, content_fingerprint, files_fingerprint


class StageFailed(IndexTTSError):
    """A stage's command reported an error (its own message was printed above)."""


@dataclass
class BuildOptions:
    """What ``indextts voice build`` was given; ``None`` leaves a stage's own default."""

    recordings: list[Path]
    speakers: list[str]
    base: Path
    project: Path
    language: str | None = None
    asr: str | None = None
    sim: str | None = None
    device: str | None = None
    train_overrides: list[str] = field(default_factory=list)
    max_eval_per_speaker: int | None = None

    @property
    def prepared(self) -> Path:
        return self.project / "prepared"

    @property
    def features(self) -> Path:
        return self.project / "features"

    @property
    def run_dir(self) -> Path:
        return self.project / "run"


@dataclass(frozen=True)
class Stage:
    """One stage: its record name, the command module and arguments, its input fingerprints."""

    name: str
    module: str
    argv: list[str]
    inputs: dict[str, str]

    @property
    def command(self) -> str:
        """The stage as a user types it (``indextts <verb> …``)."""
        verb = self.module.rsplit(".", 1)[-1]
        return shlex.join(["indextts", verb, *self.argv])


def speaker_inputs(recordings: list[Path], speakers: list[str]) -> dict[str, list[Path]]:
    """Which recordings (files or folders) belong to which speaker, checked before anything runs."""
    missing = [str(path) for path in recordings if not path.exists()]
    if missing:
        raise DataError(f"These recordings do not exist: {', '.join(missing)}. Check the paths.")
    if len(speakers) == 1:
        pairs = {speakers[0]: recordings}
    elif speakers:
        if len(speakers) != len(recordings):
            raise DataError(f"{len(speakers)} --speaker names for {len(recordings)} recordings: with several "
                            "speakers, give one recording file or folder per --speaker, in the same order.")
        if len(set(speakers)) != len(speakers):
            raise DataError(f"A --speaker name is given twice ({', '.join(speakers)}); give each voice one name.")
        pairs = {speaker: [path] for speaker, path in zip(speakers, recordings)}
    else:
        folders = sorted(p for p in recordings[0].iterdir() if p.is_dir()) if recordings[0].is_dir() else []
        if len(recordings) != 1 or not folders:
            raise DataError("Name the voice with --speaker NAME, or give one folder holding one subfolder of "
                            "recordings per speaker (the subfolder names become the voice names).")
        pairs = {folder.name: [folder] for folder in folders}
    return pairs


def _option(flag: str, value) -> list[str]:
    return [] if value is None else [flag, str(value)]


def _hash(values: list[str]) -> str:
    return hash_json(values)


def _record_hash(record: StageRecord, *stages: str) -> str:
    return hash_json([record.stages.get(stage) for stage in stages])


def prepare_stages(options: BuildOptions) -> list[Stage]:
    """One indextts-prepare per speaker, each into its own folder; clips approved in its review.csv
    are an input (approving one runs the stage, and those after it, again)."""
    stages = []
    for speaker, inputs in speaker_inputs(options.recordings, options.speakers).items():
        argv = [arg for path in inputs for arg in ("--input", str(path))]
        argv += ["--output_dir", str(options.prepared / speaker), "--speaker", speaker, "--model_dir", str(options.base),
                 *_option("--asr", options.asr), *_option("--language", options.language), "--no_progress"]
        approvals = sorted(read_approvals(options.prepared / speaker / "review.csv"))
        stages.append(Stage(f"prepare:{speaker}", "indextts.cli.prepare", argv,
                            {"recordings": files_fingerprint(inputs), "approvals": _hash(approvals),
                             "command": _hash(argv)}))
    return stages


def extract_stage(options: BuildOptions, lists: list[Path]) -> Stage:
    argv = [arg for path in lists for arg in ("--audio_list", str(path))]
    argv += ["--extract_condition", "--model_dir", str(options.base), "--output_dir", str(options.features),
             *_option("--device", options.device), "--no_progress"]
    base_files = [p for p in options.base.iterdir() if not p.name.endswith(FINGERPRINT_CACHE_SUFFIX)]
    inputs = {"audio_lists": content_fingerprint(lists), "base": files_fingerprint(base_files),
              "command": _hash(argv)}
    return Stage("extract", "indextts.cli.extract", argv, inputs)


def train_stage(options: BuildOptions) -> Stage:
    info = options.features / "speaker_info.json"
    argv = [f"model_dir={options.base}", f"speaker_info={info}", f"run_dir={options.run_dir}",
            *([f"train.device={options.device}"] if options.device else []), *options.train_overrides]
    data = sorted(options.features.glob("*.json*")) if options.features.is_dir() else [info]
    return Stage("train", "indextts.cli.train", argv, {"data": content_fingerprint(data), "command": _hash(argv)})


def eval_stage(options: BuildOptions, record: StageRecord) -> Stage:
    argv = ["--run", str(options.run_dir), "--promote", *_option("--asr", options.asr), *_option("--sim", options.sim),
            *_option("--device", options.device), *_option("--max_per_speaker", options.max_eval_per_speaker)]
    return Stage("eval", "indextts.cli.eval", argv, {"training": _record_hash(record, "train"), "command": _hash(argv)})


def command_main(stage: Stage) -> Callable[[list[str]], int]:
    """The ``main(argv)`` of the stage's command module."""
    return importlib.import_module(stage.module).main


def run_stage(stage: Stage, record: StageRecord, extra: list[str] | None = None,
              main: Callable[[list[str]], int] | None = None) -> None:
    """Run one stage's command (or ``main``) in this process; record it started and, on success, finished."""
    record.started(stage.name, stage.inputs, stage.argv)
    status = (main or command_main(stage))([*stage.argv, *(extra or [])])
    if status == EXIT_INTERRUPTED:
        raise KeyboardInterrupt  # the command kept its finished work; so does the build
    if status != 0:
        raise StageFailed(f"The {stage.name} stage stopped (exit status {status}; its message is above). Fix what "
                          "it says and run the same `indextts voice build` again: finished stages are kept and "
                          f"this one continues. The stage on its own: {stage.command}")
    record.finished(stage.name)


def set_aside(folder: Path) -> Path:
    """Rename ``folder`` to the first free ``<name>.previous-N`` beside it (kept, never deleted)."""
    n = 1
    while (target := folder.with_name(f"{folder.name}.previous-{n}")).exists():
        n += 1
    folder.rename(target)
    return target


def announce(stage: Stage, decision: Decision, say: Callable[[str], None]) -> None:
    verb = {"skip": "skipped", "resume": "resuming", "run": "running"}[decision.action]
    say(f"[voice build] {stage.name}: {verb} ({decision.reason})")


def perform(stage: Stage, record: StageRecord, say: Callable[[str], None], **run) -> Decision:
    """Decide, announce and (unless skipped) run ``stage``."""
    decision = record.decide(stage.name, stage.inputs)
    announce(stage, decision, say)
    if decision.action != "skip":
        run_stage(stage, record, **run)
    return decision


def train(options: BuildOptions, record: StageRecord, say: Callable[[str], None]) -> tuple[Stage, Decision]:
    """The training stage: resumed from the last checkpoint, or anew (an outdated run is moved aside)."""
    stage = train_stage(options)
    decision = record.decide(stage.name, stage.inputs)
    announce(stage, decision, say)
    if decision.action == "skip":
        return stage, decision
    if decision.action == "run" and stage.name in record.stages and options.run_dir.exists():
        say(f"[voice build] train: the previous run is kept as {set_aside(options.run_dir)}")
    resume = RunFolder(options.run_dir).latest_checkpoint() is not None
    run_stage(stage, record, ["--resume"] if resume else [])
    return stage, decision


def report_stage(options: BuildOptions, record: StageRecord, stages: list[Stage]) -> tuple[Stage, Callable]:
    """The report stage and the call that writes it (with the commands of every stage)."""
    prepared = sorted(p for p in options.prepared.iterdir() if p.is_dir())
    argv = ["--run", str(options.run_dir), *[a for p in prepared for a in ("--prepared", str(p))],
            "--features", str(options.features), "--out", str(options.project)]
    stage = Stage("report", "indextts.cli.report", argv,
                  {"stages": _record_hash(record, *(s.name for s in stages)), "command": _hash(argv)})
    commands = [s.command for s in [*stages, stage]]

    def write(_argv: list[str]) -> int:
        from indextts.report import write_report

        write_report(prepared_dirs=prepared, features_dir=options.features, run_dir=options.run_dir,
                     out_dir=options.project, commands=commands, device=options.device or "cpu")
        return 0

    return stage, write


def write_commands(project: Path, stages: list[Stage]) -> None:
    """``<project>/commands.sh``: every stage as the command that runs it alone (rewritten only on change)."""
    script = "#!/bin/sh\n# The stages of this voice build as commands, in order.\n" + \
        "\n".join(stage.command for stage in stages) + "\n"
    path = project / "commands.sh"
    if not path.is_file() or path.read_text(encoding="utf-8") != script:
        write_bytes_atomic(path, script.encode("utf-8"))


def build_voice(options: BuildOptions, say: Callable[[str], None] = print) -> list[Stage]:
    """Run (or skip, or resume) every stage in order; returns the stages."""
    speakers = list(speaker_inputs(options.recordings, options.speakers))  # input problems before any write
    CheckpointFolder(options.base)  # a missing or broken base folder is named now, not three stages later
    options.project.mkdir(parents=True, exist_ok=True)
    record = StageRecord(options.project)
    stages = prepare_stages(options)
    decisions = [perform(stage, record, say) for stage in stages]
    stages.append(extract_stage(options, [options.prepared / name / f"{name}.lst" for name in speakers]))
    decisions.append(perform(stages[-1], record, say))
    stage, decision = train(options, record, say)
    stages.append(stage)
    decisions.append(decision)
    stages.append(eval_stage(options, record))
    decisions.append(perform(stages[-1], record, say))
    stage, write = report_stage(options, record, stages)
    stages.append(stage)
    decisions.append(perform(stage, record, say, main=write))
    if all(decision.action == "skip" for decision in decisions):
        say("[voice build] nothing to do: every stage is done and its inputs are unchanged.")
    write_commands(options.project, stages)
    return stages
