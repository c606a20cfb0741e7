"""``run_prepare``: long recordings -> loudness-normalised clips, transcripts, audio lists, review.csv.

Per speaker the output folder holds::

    <output_dir>/<speaker>/<recording>_<NNNN>.wav    clips at the model's sample rate
    <output_dir>/<speaker>/prepare_state.json        what is done, per recording (crash-safe)
    <output_dir>/<speaker>.lst                        clip<TAB>transcript, ready for extraction
    <output_dir>/review.csv                           every clip's levels, confidence and flags

A recording is done once its clips and records are in the state file; a later run with the same
recording (size and modification time) and the same settings reuses them without loading any
model, so running again is a no-op. An unreadable recording is skipped with its reason.
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
from indextts.checkpoint_folder import CheckpointFolder
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.errors import AudioError, PrepareError
from indextts.prepare.inputs import discover_speakers
from indextts.prepare.loudness import LoudnessOptions, normalise_loudness
from indextts.prepare.review import ClipRecord, write_audio_list, write_review_csv
from indextts.prepare.slicing import SileroVAD, SlicingOptions, slice_recording
from indextts.prepare.transcription import Flag, TextLimits, Transcriber

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


def model_limits(model_dir: Path | None) -> ModelLimits:
    """Read the limits from ``model_dir``'s config.yaml, or from the packaged IndexTTS-1.5 release config.

    A clip of S samples gives about S / mel_length_compression + 1 codes, which must stay within
    ``gpt.max_mel_tokens``.
    """
    folder = CheckpointFolder(model_dir) if model_dir is not None else None
    cfg = folder.cfg if folder is not None else load_config(RELEASE_CONFIG)
    sample_rate = int(cfg.dataset.sample_rate)
    samples_per_code = int(cfg.gpt.get("mel_length_compression", 1024))
    max_seconds = (int(cfg.gpt.max_mel_tokens) - 2) * samples_per_code / sample_rate
    bpe = folder.paths.bpe if folder is not None else None
    return ModelLimits(max_seconds, sample_rate, int(cfg.gpt.max_text_tokens), bpe)


@dataclass
class PrepareOptions:
    inputs: list[Path]
    output_dir: Path
    speaker: str | None = None
    asr: str = "pocketsphinx"
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
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def format(self) -> str:
        lines = [(f"{self.listed} of {self.clips} clips listed; {self.processed} recordings processed, "
                  f"{self.reused} reused, {len(self.skipped)} skipped.")]
        lines += [f"  list: {path}" for path in self.lists.values()]
        lines += [f"  skipped {source}: {reason}" for source, reason in self.skipped.items()]
        return "\n".join(lines)


def _fingerprint(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


class SpeakerPreparation:
    """Cuts, normalises and transcribes one speaker's recordings, keeping its state file current."""

    def __init__(self, speaker: str, options: PrepareOptions, settings: dict, models: dict) -> None:
        self.speaker = speaker
        self.options = options
        self.settings = settings
        self.models = models
        self.folder = options.output_dir / speaker
        self.state_path = self.folder / STATE_FILE
        self.state = self._load_state()

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

    def _is_done(self, source: Path) -> bool:
        entry = self.state["recordings"].get(str(source))
        return entry is not None and entry["fingerprint"] == _fingerprint(source) \
            and entry["settings"] == self.settings

    def _forget(self, source: Path) -> None:
        """Delete the clips an outdated entry for ``source`` wrote."""
        entry = self.state["recordings"].pop(str(source), None)
        for record in (entry or {}).get("clips", []):
            (self.options.output_dir / record["clip"]).unlink(missing_ok=True)

    def prepare(self, source: Path, summary: PrepareSummary) -> None:
        """Bring ``source`` up to date in the state file (reusing it when it already is)."""
        if self._is_done(source):
            summary.reused += 1
        else:
            self._forget(source)
            entry = {"fingerprint": _fingerprint(source), "settings": self.settings, "clips": [], "skipped": None}
            try:
                entry["clips"] = [r.to_json() for r in self._cut_and_transcribe(source)]
            except AudioError as error:
                entry["skipped"] = str(error)
            self.state["recordings"][str(source)] = entry
            write_json_atomic(self.state_path, self.state)
            summary.processed += 1
        skipped = self.state["recordings"][str(source)]["skipped"]
        if skipped:
            logger.warning("Skipped %s: %s", source, skipped)
            summary.skipped[str(source)] = skipped

    def _cut_and_transcribe(self, source: Path) -> list[ClipRecord]:
        rate = self.settings["sample_rate"]
        audio = load_audio(source, rate).numpy()
        clips = slice_recording(audio, rate, self.models["vad"], self.options.slicing)
        if not clips:
            raise AudioError(f"No speech of {self.options.slicing.min_seconds}-{self.options.slicing.max_seconds} s "
                             f"between pauses was found in {source}.")
        return [self._write_clip(source, index, audio[round(c.start * rate): round(c.end * rate)], c.start, c.end)
                for index, c in enumerate(clips)]

    def _write_clip(self, source: Path, index: int, samples: np.ndarray, start: float, end: float) -> ClipRecord:
        rate = self.settings["sample_rate"]
        normalised, levels = normalise_loudness(samples, rate, self.options.loudness)
        transcript = self.models["transcriber"].transcribe(normalised, rate)
        relative = f"{self.speaker}/{source.stem}_{index:04d}.wav"
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
                                               TextLimits(limits.bpe_model, limits.max_text_tokens)),
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


def run_prepare(options: PrepareOptions) -> PrepareSummary:
    """Prepare every speaker's recordings; returns the counts and the written audio lists."""
    limits = model_limits(options.model_dir)
    options.slicing = _capped_slicing(options, limits)
    speakers = discover_speakers(options.inputs, options.speaker)
    settings = _settings(options, limits)
    models = _LazyModels(options, limits)
    summary = PrepareSummary()
    all_records: list[ClipRecord] = []
    for speaker, sources in speakers.items():
        preparation = SpeakerPreparation(speaker, options, settings, models)
        remove_temp_files(preparation.folder)
        for source in tqdm(sources, desc=f"prepare {speaker}", unit="file", disable=not options.progress):
            preparation.prepare(source, summary)
        records = preparation.records(sources)
        list_path = options.output_dir / f"{speaker}.lst"
        summary.listed += write_audio_list(list_path, records, options.min_confidence, options.keep_doubtful)
        summary.clips += len(records)
        summary.lists[speaker] = list_path
        all_records += records
    write_review_csv(options.output_dir / "review.csv", all_records, options.min_confidence, options.keep_doubtful)
    if summary.clips == 0:
        raise PrepareError(f"No clip could be made from {', '.join(map(str, options.inputs))} "
                           f"({'; '.join(summary.skipped.values()) or 'no speech found'}).")
    return summary
