"""``run_prepare``: long recordings -> loudness-normalised clips, transcripts, audio lists, review.csv.

Per speaker the output folder holds::

    <output_dir>/<speaker>/<recording>_<NNNN>.wav    clips at the model's sample rate
    <output_dir>/<speaker>/prepare_state.json        what is done, per recording and clip (crash-safe)
    <output_dir>/<speaker>.lst                        clip<TAB>transcript, ready for extraction; the
                                                      user's once edited (``indextts.prepare.user_list``)
    <output_dir>/review.csv                           every clip's levels, confidence and flags

The state file is saved after the clip plan and after every clip, so an interrupted recording
resumes at its next clip, cut from the saved plan. A recording is done once it is complete there;
a later run with the same recording (size and modification time) and the same settings reuses it
without loading any model, so running again is a no-op. An unreadable recording is skipped with
its reason.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from indextts.atomic_files import (
    remove_temp_files,
    write_bytes_atomic,
    write_json_atomic,
)
from indextts.audio import load_audio
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.errors import AudioError, PrepareError
from indextts.extraction.generations import extraction_family, mel_code_rate
from indextts.contracts.paths import check_output_dir
from indextts.prepare.inputs import discover_speakers
from indextts.prepare.loudness import LoudnessOptions, normalise_loudness
from indextts.prepare.review import ClipRecord, read_approvals, write_review_csv
from indextts.prepare.slicing import Clip, SileroVAD, SlicingOptions, slice_recording
from indextts.prepare.transcription import Flag, TextLimits, Transcriber
from indextts.prepare.user_list import STATE_KEY as LIST_STATE_KEY
from indextts.prepare.user_list import ListRecord, SpeakerList

logger = logging.getLogger(__name__)

STATE_FILE = "prepare_state.json"
STATE_VERSION = 1
RELEASE_CONFIG = RELEASE_CONFIGS["IndexTTS-1.5"]
"""The packaged IndexTTS-1.5 release config, for the model limits when no --model_dir is given."""


@dataclass(frozen=True)
class ModelLimits:
    """What the target model accepts: clip length, sample rate, text tokens (and its BPE model)."""

    max_seconds: float
    sample_rate: int
    max_text_tokens: int
    bpe_model: Path | None
    text_counter: object | None = None
    """Counts a transcript's tokens as extraction will (``extraction_family(folder).text_counter()``:
    SentencePiece for 1.x and 2, 2.5's tiktoken vocabulary and language prefix); None without a model."""


def model_limits(model_dir: Path | None) -> ModelLimits:
    """Read the limits from ``model_dir``'s config.yaml, or from the packaged IndexTTS-1.5 release config.

    A clip gives about its seconds x the family's code rate (IndexTTS 1.x: 24000 / mel_length_compression;
    IndexTTS-2: 50 semantic codes per second, 2.5: 25) + 1 codes, which must stay within ``gpt.max_mel_tokens``.
    """
    folder = CheckpointFolder(model_dir) if model_dir is not None else None
    cfg = folder.cfg if folder is not None else load_config(RELEASE_CONFIG)
    sample_rate = int(cfg.dataset.sample_rate)
    family = extraction_family(folder) if folder is not None else None
    code_rate = family.code_rate if family is not None else mel_code_rate(cfg)
    max_seconds = (int(cfg.gpt.max_mel_tokens) - 2) / code_rate
    bpe = folder.paths.bpe if folder is not None else None
    counter = family.text_counter() if bpe is not None and bpe.is_file() else None
    return ModelLimits(max_seconds, sample_rate, int(cfg.gpt.max_text_tokens), bpe, counter)


@dataclass
class PrepareOptions:
    inputs: list[Path]
    output_dir: Path
    speaker: str | None = None
    asr: str = "auto"
    language: str | None = None
    device: str = "cpu"
    model_dir: Path | None = None
    slicing: SlicingOptions = field(default_factory=SlicingOptions)
    loudness: LoudnessOptions = field(default_factory=LoudnessOptions)
    min_confidence: float = 0.0
    keep_doubtful: bool = False
    progress: bool = True


@dataclass
class PrepareSummary:
    """Counts of one run; ``skipped`` maps an unusable recording to the reason."""

    lists: dict[str, Path] = field(default_factory=dict)
    clips: int = 0
    listed: int = 0
    processed: int = 0
    resumed: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [(f"{self.listed} of {self.clips} clips listed; {self.processed} recordings processed "
                  f"({self.resumed} resumed), {self.reused} reused, {len(self.skipped)} skipped.")]
        lines += [f"  list: {path}" for path in self.lists.values()]
        lines += [f"  skipped {source}: {reason}" for source, reason in self.skipped.items()]
        return "\n".join(lines)


def _fingerprint(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _clip_plan(clips: list[Clip]) -> list[list[float]]:
    return [[c.speech_start, c.speech_end, c.start, c.end] for c in clips]


class SpeakerPreparation:
    """Cuts, normalises and transcribes one speaker's recordings, keeping its state file current.

    A recording's entry holds its fingerprint, the settings, the clip plan (cut points, so that a
    resumed recording is cut exactly as before without running the VAD again), the records of the
    clips written so far and whether it is complete.
    """

    def __init__(self, speaker: str, options: PrepareOptions, settings: dict, models: dict) -> None:
        self.speaker = speaker
        self.options = options
        self.settings = settings
        self.models = models
        self.folder = options.output_dir / speaker
        self.state_path = self.folder / STATE_FILE
        self.state = self._load_state()
        self.audio_list = SpeakerList(options.output_dir / f"{speaker}.lst", ListRecord.from_state(self.state))

    def _load_state(self) -> dict:
        if self.state_path.is_file():
            try:
                state = json.loads(self.state_path.read_text(encoding="utf-8"))
                if state.get("version") == STATE_VERSION:
                    return state
            except (ValueError, OSError) as error:
                logger.warning("Ignoring the unreadable state file %s (%s); redoing its recordings.",
                               self.state_path, error)
        return {"version": STATE_VERSION, "recordings": {}}

    def _save_state(self) -> None:
        self.state[LIST_STATE_KEY] = self.audio_list.record.to_state()
        write_json_atomic(self.state_path, self.state)

    def _matches(self, source: Path) -> bool:
        """True when ``source``'s entry was made from this very file with these settings."""
        entry = self.state["recordings"].get(str(source))
        return entry is not None and entry["fingerprint"] == _fingerprint(source) \
            and entry["settings"] == self.settings

    def is_done(self, source: Path) -> bool:
        return self._matches(source) and self.state["recordings"][str(source)].get("complete", True)

    def refuse_recut_of_edited_list(self, sources: list[Path]) -> None:
        """Stop before any work when the user's edited list names clips this run would cut again."""
        self.audio_list.refuse_recut(self.speaker, [s.stem for s in sources if not self._matches(s)])

    def _forget(self, source: Path) -> None:
        """Delete the clips an outdated entry for ``source`` wrote or planned."""
        entry = self.state["recordings"].pop(str(source), None) or {}
        planned = range(len(entry.get("plan") or []))
        for clip in {r["clip"] for r in entry.get("clips", [])} | {self._clip_name(source, i) for i in planned}:
            (self.options.output_dir / clip).unlink(missing_ok=True)

    def prepare(self, source: Path, summary: PrepareSummary) -> None:
        """Bring ``source`` up to date in the state file (reusing or resuming it when possible)."""
        if self.is_done(source):
            summary.reused += 1
        else:
            if self._matches(source):
                summary.resumed += 1
            else:
                self._forget(source)
                self.state["recordings"][str(source)] = {
                    "fingerprint": _fingerprint(source), "settings": self.settings, "plan": None, "clips": [],
                    "skipped": None, "complete": False}
            entry = self.state["recordings"][str(source)]
            try:
                self._cut_and_transcribe(source, entry)
            except AudioError as error:
                entry["skipped"] = str(error)
            entry["complete"] = True
            self._save_state()
            summary.processed += 1
        skipped = self.state["recordings"][str(source)]["skipped"]
        if skipped:
            logger.warning("Skipped %s: %s", source, skipped)
            summary.skipped[str(source)] = skipped

    def _planned_clips(self, source: Path, audio: np.ndarray, entry: dict) -> list[Clip]:
        """The entry's clip plan, made (and saved) by the VAD on the recording's first pass."""
        if entry["plan"] is None:
            clips = slice_recording(audio, self.settings["sample_rate"], self.models["vad"], self.options.slicing)
            if not clips:
                raise AudioError(f"No speech of {self.options.slicing.min_seconds}-"
                                 f"{self.options.slicing.max_seconds} s between pauses was found in {source}.")
            entry["plan"] = _clip_plan(clips)
            self._save_state()
        return [Clip(*cut) for cut in entry["plan"]]

    def _cut_and_transcribe(self, source: Path, entry: dict) -> None:
        """Write the clips of ``entry``'s plan not written yet, saving the state after each one."""
        rate = self.settings["sample_rate"]
        audio = load_audio(source, rate).numpy()
        clips = self._planned_clips(source, audio, entry)
        done = len(entry["clips"])
        if done:
            logger.info("Resuming %s at clip %d of %d (%.0f of %.0f s done).", source, done + 1, len(clips),
                        clips[done - 1].end, len(audio) / rate)
        with _audio_progress(source, len(audio) / rate, clips[done - 1].end if done else 0.0,
                             self.options.progress) as progress:
            for index in range(done, len(clips)):
                clip = clips[index]
                record = self._write_clip(source, index, audio[round(clip.start * rate): round(clip.end * rate)],
                                          clip.start, clip.end)
                entry["clips"].append(record.to_json())
                self._save_state()
                progress.update(clip.end - progress.n)
            progress.update(progress.total - progress.n)

    def _clip_name(self, source: Path, index: int) -> str:
        return f"{self.speaker}/{source.stem}_{index:04d}.wav"

    def _write_clip(self, source: Path, index: int, samples: np.ndarray, start: float, end: float) -> ClipRecord:
        rate = self.settings["sample_rate"]
        normalised, levels = normalise_loudness(samples, rate, self.options.loudness)
        transcript = self.models["transcriber"].transcribe(normalised, rate)
        relative = self._clip_name(source, index)
        buffer = _wav_bytes(normalised, rate)
        write_bytes_atomic(self.options.output_dir / relative, buffer)
        level_flags = [flag for flag, raised in ((Flag.LOW_SNR, levels.low_snr), (Flag.CLIPPING, levels.clipping),
                                                 (Flag.PEAK_LIMITED, levels.peak_limited)) if raised]
        return ClipRecord(
            speaker=self.speaker, clip=relative, source=str(source), source_start=start, source_end=end,
            duration=len(normalised) / rate, lufs=levels.lufs, snr_db=levels.snr_db,
            confidence=transcript.confidence, language=transcript.language, text=transcript.text,
            normalised=transcript.normalised, flags=tuple(level_flags) + transcript.flags,
        )

    def records(self, sources: list[Path]) -> list[ClipRecord]:
        return [ClipRecord.from_json(r) for s in sources for r in self.state["recordings"][str(s)]["clips"]]

    def write_list(self, records: list[ClipRecord], approvals: set[str]) -> int:
        """Write ``<speaker>.lst`` (keeping the user's edits) and record it; returns its clip line count."""
        before = self.audio_list.record
        listed = self.audio_list.write(records, self.options.min_confidence, self.options.keep_doubtful, approvals)
        if self.audio_list.record != before or LIST_STATE_KEY not in self.state:
            self._save_state()
        return listed


def _audio_progress(source: Path, total_seconds: float, done_seconds: float, enabled: bool) -> tqdm:
    """A bar of seconds of audio done within one recording (long recordings take many minutes)."""
    return tqdm(total=total_seconds, initial=done_seconds, desc=source.name, leave=False, disable=not enabled,
                mininterval=0, miniters=0, bar_format="{desc}: {n:.0f}/{total:.0f} s of audio |{bar}| [{elapsed}<{remaining}]")


def _wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


class _LazyModels(dict):
    """The VAD and the transcriber, built on first use so that a run with nothing to do loads neither."""

    def __init__(self, options: PrepareOptions, limits: ModelLimits) -> None:
        super().__init__()
        self._factories = {
            "vad": SileroVAD,
            "transcriber": lambda: Transcriber(options.asr, options.device, options.language,
                                               TextLimits(limits.text_counter, limits.max_text_tokens)),
        }

    def __missing__(self, key: str):
        self[key] = self._factories[key]()
        return self[key]


def _settings(options: PrepareOptions, limits: ModelLimits) -> dict:
    """What the clips of a recording depend on; a change redoes that recording."""
    return {"sample_rate": limits.sample_rate, "slicing": asdict(options.slicing),
            "loudness": asdict(options.loudness), "asr": options.asr, "language": options.language,
            "bpe_model": str(limits.bpe_model) if limits.bpe_model else None}


def _capped_slicing(options: PrepareOptions, limits: ModelLimits) -> SlicingOptions:
    slicing = options.slicing
    if slicing.max_seconds > limits.max_seconds:
        logger.info("Clips are capped at %.2f s, the model's max_mel_tokens limit.", limits.max_seconds)
        slicing = SlicingOptions(**{**asdict(slicing), "max_seconds": limits.max_seconds})
    slicing.validate()
    return slicing


def _speaker_preparations(options: PrepareOptions, limits: ModelLimits) -> dict[str, tuple[SpeakerPreparation, list]]:
    """Each speaker's preparation and recordings, once the inputs, the output folder and the
    users' edited lists are known to allow the run (nothing is written before)."""
    speakers = discover_speakers(options.inputs, options.speaker)
    check_output_dir(options.output_dir, list(speakers))
    settings = _settings(options, limits)
    models = _LazyModels(options, limits)
    preparations = {speaker: (SpeakerPreparation(speaker, options, settings, models), sources)
                    for speaker, sources in speakers.items()}
    for preparation, sources in preparations.values():
        preparation.refuse_recut_of_edited_list(sources)
    if any(not p.is_done(s) for p, sources in preparations.values() for s in sources):
        models["transcriber"].choose()  # refuses a language no available backend knows, before any cut
    return preparations


def run_prepare(options: PrepareOptions) -> PrepareSummary:
    """Prepare every speaker's recordings; returns the counts and the written audio lists."""
    limits = model_limits(options.model_dir)
    options.slicing = _capped_slicing(options, limits)
    summary = PrepareSummary()
    all_records: list[ClipRecord] = []
    review_csv = options.output_dir / "review.csv"
    approvals = read_approvals(review_csv)
    for speaker, (preparation, sources) in _speaker_preparations(options, limits).items():
        remove_temp_files(preparation.folder)
        for source in tqdm(sources, desc=f"prepare {speaker}", unit="file", disable=not options.progress):
            preparation.prepare(source, summary)
        records = preparation.records(sources)
        summary.listed += preparation.write_list(records, approvals)
        summary.clips += len(records)
        summary.lists[speaker] = preparation.audio_list.path
        all_records += records
    write_review_csv(review_csv, all_records, options.min_confidence, options.keep_doubtful, approvals)
    if summary.clips == 0:
        raise PrepareError(f"No clip could be made from {', '.join(map(str, options.inputs))} "
                           f"({'; '.join(summary.skipped.values()) or 'no speech found'}).")
    return summary
