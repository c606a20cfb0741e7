"""Evaluate a training run's checkpoints by what a listener hears: synthesise, transcribe, compare voices.

For every checkpoint (default: all kept step checkpoints and the final adapter) each eval
sentence is synthesised in its speaker's voice with a fixed per-sentence seed, transcribed by ASR
(WER/CER against the text) and embedded by a speaker-verification model (SIM: cosine with the
speaker's reference recording). The real validation recordings are scored the same way, giving
the ceiling. Results go under ``<run>/eval/``:

    <checkpoint>.jsonl   one row per utterance (step_00000200.jsonl, final.jsonl, real.jsonl)
    summary.csv          per checkpoint and speaker (+ "all"): error rates, SIM, RTF, best mark
    summary.png          error rate and SIM against the step
    best.json            the chosen checkpoint and the rule that chose it

plus TensorBoard scalars and audio samples in ``<run>/tensorboard``. A checkpoint whose jsonl is
complete for the same model and settings is not evaluated again; an interrupted one continues
from ``eval/.partial/<checkpoint>.jsonl``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from tqdm import tqdm

from indextts.asr.choice import AUTO
from indextts.atomic_files import write_json_atomic, write_jsonl_atomic
from indextts.errors import EvaluationError, IndexTTSError
from indextts.fingerprints import hash_json
from indextts.run_folder import RunFolder
from indextts.evaluation import report, selection
from indextts.evaluation.report import REAL
from indextts.evaluation.run_inputs import (
    FINAL,
    Checkpoint,
    EvalItem,
    find_checkpoints,
    resolve_model_dir,
    speaker_references,
    text_items,
    validation_items,
)
from indextts.evaluation.scoring import ANY_LANGUAGE, Scorer, check_asr_routes, read_audio, resolve_auto_routes
from indextts.evaluation.speaker import AUTO as SIM_AUTO
from indextts.evaluation.speaker import choose_speaker_encoder
from indextts.inference import SynthesisOptions
from indextts.runtime import resolve_device

logger = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
DEFAULT_ASR = AUTO
"""Per language, a backend that knows it (``indextts.asr.choice``); a language without one gets SIM only."""
DEFAULT_SIM = SIM_AUTO
"""WavLM-Base-Plus-SV when it can be loaded here, else the offline resemblyzer."""
DEFAULT_EPSILON = 0.02
AUDIO_SAMPLES_PER_SPEAKER = 2


@dataclass
class EvalSettings:
    """What to evaluate with; every field has a command-line flag in ``indextts-eval``.

    ``asr`` maps a language ("en", "zh") or "*" (any) to an ASR spec; ``sim`` is the speaker
    encoder spec; ``synthesis`` the options each sentence is spoken with (its seed is replaced by
    ``seed`` plus a per-sentence offset); ``epsilon`` the SIM tolerance of the selection rule.
    """

    asr: dict[str, str] = field(default_factory=lambda: {ANY_LANGUAGE: DEFAULT_ASR})
    sim: str = DEFAULT_SIM
    seed: int = 0
    device: str | None = None
    model_dir: Path | None = None
    texts: Path | None = None
    max_per_speaker: int | None = None
    synthesis: SynthesisOptions = field(default_factory=SynthesisOptions)
    epsilon: float = DEFAULT_EPSILON
    audio_samples: int = AUDIO_SAMPLES_PER_SPEAKER

    def signature(self) -> str:
        """Short hash of everything that changes the scores (not the device or the selection)."""
        generation = {f.name: getattr(self.synthesis.generation, f.name) for f in fields(self.synthesis.generation)
                      if f.name not in ("generator", "seed")}
        synthesis = {f.name: getattr(self.synthesis, f.name) for f in fields(self.synthesis) if f.name != "generation"}
        synthesis["generation"] = generation
        routes, unavailable = resolve_auto_routes(self.asr)  # what "auto" means on this machine now
        return hash_json({"asr": dict(sorted(routes.items())), "asr_unavailable": sorted(unavailable),
                          "sim": choose_speaker_encoder(self.sim), "seed": self.seed, "synthesis": synthesis})


@dataclass
class EvalReport:
    """The outcome of ``evaluate_run``."""

    eval_dir: Path
    summary: list[dict]
    best: str | None
    promoted: bool = False


class _Synthesiser:
    """The base model, loaded once; every checkpoint is added as a run of voices ``<checkpoint>:<speaker>``."""

    def __init__(self, model_dir: Path, device: str | None):
        self.model_dir, self.device, self._tts = model_dir, device, None

    def for_checkpoint(self, checkpoint) -> tuple[object, str]:
        """The shared IndexTTS with ``checkpoint``'s adapter loaded; returns it and the voice prefix."""
        from indextts.inference import IndexTTS

        if self._tts is None:
            self._tts = IndexTTS.from_pretrained(self.model_dir, device=self.device or "auto")
        if checkpoint.name not in {voice.run for voice in self._tts.voices}:
            self._tts.add_voice(checkpoint.name, checkpoint.folder)
        return self._tts, checkpoint.name


def read_rows(path: Path) -> list[dict]:
    """The rows of a jsonl file; a last line cut short by a kill is ignored."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


class Evaluation:
    """One run's eval set, checkpoints and scorer; evaluates checkpoints one at a time, resumably."""

    def __init__(self, run_dir: str | Path, settings: EvalSettings, checkpoint_names: list[str] | None = None):
        check_asr_routes(settings.asr)
        self.run_dir = Path(run_dir).expanduser().resolve()
        if not self.run_dir.is_dir():
            raise EvaluationError(f"The run folder {self.run_dir} does not exist. Pass --run runs/<name>.")
        self.settings = settings
        self.run = RunFolder(self.run_dir)
        cfg = self.run.config()
        self.checkpoints = find_checkpoints(self.run, checkpoint_names)
        self.model_dir = resolve_model_dir(self.run, settings.model_dir)
        self.synthesiser = _Synthesiser(self.model_dir, settings.device)
        self.references = speaker_references(self.run_dir, self.checkpoints[-1])
        speakers = sorted(self.references)
        self.items = validation_items(cfg, speakers, settings.seed, settings.max_per_speaker)
        if settings.texts is not None:
            self.items += text_items(settings.texts, speakers, settings.seed)
        if not self.items:
            raise EvaluationError(f"Nothing to evaluate in {self.run_dir}: its speakers ({', '.join(speakers)}) have no "
                                  "validation rows with a recording, and no --texts file was given. Pass --texts FILE.")
        self.eval_dir = self.run.eval_dir
        self.settings_id = settings.signature()
        self._scorer: Scorer | None = None

    @property
    def scorer(self) -> Scorer:
        """Loaded on first use, so a run whose results are all complete loads no model."""
        if self._scorer is None:
            self._scorer = Scorer(self.settings.asr, self.settings.sim, self.references,
                                  str(resolve_device(self.settings.device)))
        return self._scorer

    def _complete_rows(self, name: str, fingerprint: str, items: list[EvalItem]) -> list[dict] | None:
        """Rows of ``eval/<name>.jsonl`` when they cover ``items`` for this model and these settings."""
        rows = read_rows(self.eval_dir / f"{name}.jsonl")
        fits = all(r.get("fingerprint") == fingerprint and r.get("settings") == self.settings_id for r in rows)
        return rows if fits and {r["key"] for r in rows} == {i.key for i in items} else None

    def _rows_of_same_model(self, checkpoint: Checkpoint) -> list[dict] | None:
        """Complete rows another checkpoint name already has for the same weights (final = a step)."""
        for other in self.checkpoints:
            if other.name != checkpoint.name and other.fingerprint == checkpoint.fingerprint:
                rows = self._complete_rows(other.name, other.fingerprint, self.items)
                if rows is not None:
                    return [{**r, "checkpoint": checkpoint.name, "step": checkpoint.step} for r in rows]
        return None

    def checkpoint_rows(self, checkpoint: Checkpoint, writer=None) -> list[dict]:
        """Evaluate one checkpoint (or reuse its complete results); writes and returns its rows."""
        rows = self._complete_rows(checkpoint.name, checkpoint.fingerprint, self.items)
        if rows is None:
            rows = self._rows_of_same_model(checkpoint)
            if rows is None:
                rows = self._synthesise_and_score(checkpoint, writer)
            write_jsonl_atomic(self.eval_dir / f"{checkpoint.name}.jsonl", rows)
        (self.eval_dir / PARTIAL_DIR / f"{checkpoint.name}.jsonl").unlink(missing_ok=True)
        return rows

    def real_rows(self) -> list[dict]:
        """Score the real validation recordings (the ceiling) once."""
        items = [item for item in self.items if item.audio is not None]
        rows = self._complete_rows(REAL, REAL, items)
        if rows is None:
            base = {"checkpoint": REAL, "step": None, "fingerprint": REAL}
            rows = self._resumed(REAL, REAL)
            done = {r["key"] for r in rows}
            partial = self._partial_file(REAL)
            for item in tqdm(items, desc="real recordings", unit="utt"):
                if item.key not in done:
                    audio, sample_rate = read_audio(item.audio)
                    row = {**base, **self._item_fields(item), **self.scorer.score(item, audio, sample_rate)}
                    self._append(partial, row, rows)
            rows = self._in_item_order(rows)
            write_jsonl_atomic(self.eval_dir / f"{REAL}.jsonl", rows)
            partial.unlink(missing_ok=True)
        return rows

    def _item_fields(self, item: EvalItem) -> dict:
        return {"key": item.key, "speaker": item.speaker, "uid": item.uid, "text": item.text,
                "language": item.language, "real_audio": None if item.audio is None else str(item.audio),
                "seed": item.seed, "settings": self.settings_id}

    def _partial_file(self, name: str) -> Path:
        path = self.eval_dir / PARTIAL_DIR / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _resumed(self, name: str, fingerprint: str) -> list[dict]:
        """Rows for this model and settings that an interrupted evaluation of ``name`` or an earlier
        one with another eval set left; they are kept in the partial file and not scored again."""
        rows = read_rows(self.eval_dir / PARTIAL_DIR / f"{name}.jsonl") + read_rows(self.eval_dir / f"{name}.jsonl")
        keys = {i.key for i in self.items}
        kept = [r for r in rows if r.get("fingerprint") == fingerprint and r.get("settings") == self.settings_id
                and r.get("key") in keys]
        unique: dict[str, dict] = {}
        for row in kept:
            unique.setdefault(row["key"], row)
        kept = list(unique.values())
        self._partial_file(name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept),
                                            encoding="utf-8")
        return kept

    @staticmethod
    def _append(partial: Path, row: dict, rows: list[dict]) -> None:
        rows.append(row)
        with open(partial, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _synthesise_and_score(self, checkpoint: Checkpoint, writer=None) -> list[dict]:
        rows = self._resumed(checkpoint.name, checkpoint.fingerprint)
        done = {r["key"] for r in rows}
        todo = [item for item in self.items if item.key not in done]
        if not todo:
            return rows
        tts, run = self.synthesiser.for_checkpoint(checkpoint)
        partial = self._partial_file(checkpoint.name)
        samples_logged: dict[str, int] = {}
        base = {"checkpoint": checkpoint.name, "step": checkpoint.step, "fingerprint": checkpoint.fingerprint}
        for item in tqdm(todo, desc=f"eval {checkpoint.name}", unit="utt"):
            row = {**base, **self._item_fields(item), **self._synthesise_one(tts, run, item, writer, checkpoint,
                                                                             samples_logged)}
            self._append(partial, row, rows)
        return self._in_item_order(rows)

    def _in_item_order(self, rows: list[dict]) -> list[dict]:
        order = {item.key: index for index, item in enumerate(self.items)}
        return sorted(rows, key=lambda r: order[r["key"]])

    def _synthesise_one(self, tts, run: str, item: EvalItem, writer, checkpoint: Checkpoint,
                        samples_logged: dict) -> dict:
        """Speak ``item`` with its seed and score the audio; a sentence that cannot be spoken gets an error."""
        options = self.settings.synthesis
        options = replace(options, generation=replace(options.generation, seed=item.seed, generator=None))
        try:
            result = tts.synthesize(item.text, voice=f"{run}:{item.speaker}", options=options)
        except IndexTTSError as error:
            logger.warning("%s: cannot synthesise %s: %s", checkpoint.name, item.key, error)
            return {"error": str(error)}
        fields = {"synthesis_seconds": result.timings.total, "audio_seconds": result.timings.audio_seconds,
                  "rtf": result.timings.rtf if result.timings.audio_seconds else None}
        fields.update(self.scorer.score(item, result.waveform, result.sample_rate))
        if writer is not None and checkpoint.name != FINAL and len(result.waveform) \
                and samples_logged.get(item.speaker, 0) < self.settings.audio_samples:
            samples_logged[item.speaker] = samples_logged.get(item.speaker, 0) + 1
            report.log_audio(writer, item.key, result.waveform, result.sample_rate, checkpoint.step)
        return fields


def evaluate_checkpoint(run_dir: str | Path, checkpoint: str, settings: EvalSettings | None = None) -> dict:
    """Evaluate one checkpoint of a run (e.g. right after training saved it) and return its pooled row.

    ``checkpoint`` is "final", "step_XXXXXXXX" or a step number. Writes ``eval/<checkpoint>.jsonl``
    and returns the "all speakers" summary row (``mer``, ``wer_en``, ``cer_zh``, ``sim``, ``rtf`` ...).
    """
    evaluation = Evaluation(run_dir, settings or EvalSettings(), [checkpoint])
    rows = evaluation.checkpoint_rows(evaluation.checkpoints[0])
    return next(row for row in report.summarise(rows) if row["speaker"] == report.ALL_SPEAKERS)


def evaluate_run(run_dir: str | Path, settings: EvalSettings | None = None, checkpoints: list[str] | None = None,
                 promote: bool = False) -> EvalReport:
    """Evaluate the real recordings and the run's checkpoints, write the reports, choose (and promote) the best."""
    settings = settings or EvalSettings()
    evaluation = Evaluation(run_dir, settings, checkpoints)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(evaluation.run_dir / "tensorboard"))
    try:
        rows = evaluation.real_rows()
        for checkpoint in evaluation.checkpoints:
            rows += evaluation.checkpoint_rows(checkpoint, writer)
        summary = report.summarise(rows)
        for note in report.summary_notes(summary):
            logger.warning("Rows not ASR-scored (the summary's note column says the same): %s", note)
        best = selection.choose_best(summary, settings.epsilon)
        report.write_reports(evaluation.eval_dir, summary, best, writer)
    finally:
        writer.close()
    write_json_atomic(evaluation.eval_dir / "best.json", selection.describe_choice(best, settings.epsilon))
    promoted = False
    if promote and best is not None:
        chosen = next(c for c in evaluation.checkpoints if c.name == best)
        promoted = evaluation.run.promote(chosen.folder)
    shutil.rmtree(evaluation.eval_dir / PARTIAL_DIR, ignore_errors=True)
    return EvalReport(evaluation.eval_dir, summary, best, promoted)
