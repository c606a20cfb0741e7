"""The extraction run: audio lists -> per-utterance codes/conditions -> per-speaker JSONL and stats.

Single process: ``run_extraction(ExtractionOptions(...))``. Under ``torchrun`` every rank computes a
shard of the batches; after a barrier rank 0 assembles the speaker files from the per-utterance
outputs on disk (which also makes an interrupted run resumable: finished utterances are reused).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from indextts.atomic_files import remove_temp_files, write_json_atomic, write_jsonl_atomic, write_npy_atomic
from indextts.audio import MelSpectrogramFeatures
from indextts.config import CONFIG_FILENAME, checkpoint_paths, load_config
from indextts.errors import CheckpointError, DataError
from indextts.extraction import outputs
from indextts.extraction.audio_list import SkippedLine, SkipReason, SpeakerList, Utterance, parse_audio_lists
from indextts.extraction.features import (
    PRECISIONS, DecodedUtterance, FeatureModels, Limits, UtteranceDataset, collate_decoded, plan_batches,
)
from indextts.extraction.speaker_stats import DISTANCE_METRICS, find_medoid, split_train_valid

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = Path("finetune_data/processed_data")
DEFAULT_MODEL_DIR = Path("checkpoints")
SECONDS_PER_HOUR = 3600.0


def default_num_workers() -> int:
    return min(8, os.cpu_count() or 1)


@dataclass
class ExtractionOptions:
    """Everything one extraction run needs (the CLI flags of tools/extract_codec.py)."""

    audio_lists: list[Path]
    speakers: list[str] | None = None
    model_dir: Path = DEFAULT_MODEL_DIR
    output_dir: Path = DEFAULT_OUTPUT_DIR
    extract_condition: bool = False
    device: str | None = None
    precision: str = "fp32"
    batch_size: int = 16
    num_workers: int = field(default_factory=default_num_workers)
    seed: int = 1234
    min_duration: float = 0.5
    max_duration: float | None = None
    valid_ratio: float = 0.1
    distance_metric: str = "euclidean"
    progress: bool = True

    def validate(self) -> None:
        """Raise DataError listing every invalid option at once."""
        problems = []
        if self.batch_size < 1:
            problems.append(f"--batch_size must be >= 1 (got {self.batch_size})")
        if self.num_workers < 0:
            problems.append(f"--num_workers must be >= 0 (got {self.num_workers})")
        if self.min_duration < 0:
            problems.append(f"--min_duration must be >= 0 (got {self.min_duration})")
        if self.max_duration is not None and self.max_duration <= self.min_duration:
            problems.append(f"--max_duration ({self.max_duration}) must exceed --min_duration ({self.min_duration})")
        if not 0.0 <= self.valid_ratio < 1.0:
            problems.append(f"--valid_ratio must be in [0, 1) (got {self.valid_ratio})")
        if self.distance_metric not in DISTANCE_METRICS:
            problems.append(f"--distance_metric must be one of {', '.join(DISTANCE_METRICS)}")
        if self.precision not in PRECISIONS:
            problems.append(f"--precision must be one of {', '.join(PRECISIONS)}")
        if not self.audio_lists:
            problems.append("give at least one --audio_list")
        if problems:
            raise DataError("Invalid extraction options: " + "; ".join(problems) + ". See --help.")


@dataclass
class SpeakerSummary:
    """What one speaker's extraction kept and skipped."""

    speaker: str
    folder: Path
    kept: int = 0
    total_seconds: float = 0.0
    skipped: Counter = field(default_factory=Counter)


@dataclass
class ExtractionSummary:
    """Result of a run (rank 0): per-speaker counts, reused vs computed utterances, wall time."""

    speakers: list[SpeakerSummary]
    speaker_info: Path
    computed: int
    reused: int
    elapsed_seconds: float

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.speakers)

    def format(self) -> str:
        lines = []
        for s in self.speakers:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(s.skipped.items())) or "none"
            lines.append(f"{s.speaker}: kept {s.kept} ({s.total_seconds / SECONDS_PER_HOUR:.3f} h), "
                         f"skipped {sum(s.skipped.values())} ({reasons}) -> {s.folder}")
        hours = sum(s.total_seconds for s in self.speakers) / SECONDS_PER_HOUR
        lines.append(f"total: kept {self.kept} utterances, {hours:.3f} h of audio; computed {self.computed}, "
                     f"reused {self.reused}; {self.elapsed_seconds:.1f} s; speaker list {self.speaker_info}")
        return "\n".join(lines)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def _start_distributed(device: str | None) -> DistributedContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    uses_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if uses_cuda else "gloo")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _resolve_device(device: str | None, context: DistributedContext) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and context.world_size > 1:
        device = f"cuda:{context.local_rank}"
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"--device {device} was requested but CUDA is not available. Use --device cpu.")
    return resolved


class _Run:
    """State of one run shared by its steps (kept private: ``run_extraction`` is the API)."""

    def __init__(self, options: ExtractionOptions, speaker_lists: list[SpeakerList], context: DistributedContext):
        self.options = options
        self.context = context
        self.lists = speaker_lists
        self.root = Path(options.output_dir).expanduser().resolve()
        self.model_dir = Path(options.model_dir).expanduser().resolve()
        self.cfg = load_config(self.model_dir)
        self.paths = checkpoint_paths(self.model_dir, self.cfg)
        self.condition_dim = int(self.cfg.gpt.model_dim) if options.extract_condition else None
        self.utterances: list[Utterance] = [u for s in speaker_lists for u in s.utterances]
        self.offsets = np.cumsum([0] + [len(s.utterances) for s in speaker_lists]).tolist()
        self.speaker_paths = {s.speaker: outputs.SpeakerPaths(self.root, s.speaker) for s in speaker_lists}
        model_files = [outputs.file_fingerprint(p) for p in self._required_files()]
        self.fingerprints = [
            outputs.input_fingerprint(outputs.file_fingerprint(u.audio), u.text, model_files,
                                      options.extract_condition, options.min_duration, options.max_duration)
            for u in self.utterances
        ]

    def _required_files(self) -> list[Path]:
        files = [self.model_dir / CONFIG_FILENAME, self.paths.dvae, self.paths.bpe]
        files += [self.paths.gpt] if self.options.extract_condition else []
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(
                f"The checkpoint folder {self.model_dir} lacks {', '.join(missing)}. Extraction needs "
                "config.yaml, dvae.pth, bpe.model and (with --extract_condition) gpt.pth: download the "
                "IndexTTS release files into it or pass --model_dir."
            )
        return files

    def finished(self, index: int) -> dict | None:
        utterance = self.utterances[index]
        return outputs.read_valid_record(self.speaker_paths[utterance.speaker], utterance.uid,
                                         self.fingerprints[index], self.condition_dim)

    def plan(self) -> list[list[int]]:
        """This rank's batches that hold at least one unfinished utterance."""
        batches = []
        for speaker_list, offset in zip(self.lists, self.offsets):
            batches += plan_batches(speaker_list.utterances, self.options.batch_size, offset)
        mine = batches[self.context.rank::self.context.world_size]
        return [batch for batch in mine if any(self.finished(i) is None for i in batch)]

    def _write_skip(self, index: int, reason: str, detail: str) -> None:
        utterance = self.utterances[index]
        outputs.write_record(self.speaker_paths[utterance.speaker].record(utterance.uid), {
            "status": "skipped", "fingerprint": self.fingerprints[index], "reason": reason, "detail": detail,
        })

    def _write_done(self, item: DecodedUtterance, codes: np.ndarray, condition: np.ndarray | None) -> None:
        utterance = self.utterances[item.index]
        paths = self.speaker_paths[utterance.speaker]
        write_npy_atomic(paths.codes(utterance.uid), codes)
        if condition is not None:
            write_npy_atomic(paths.condition(utterance.uid), condition)
        outputs.write_record(paths.record(utterance.uid), {
            "status": "done", "fingerprint": self.fingerprints[item.index], "duration": item.duration,
            "num_codes": int(codes.shape[0]), "num_text_tokens": item.num_text_tokens,
        })

    def _load_models(self, device: torch.device) -> FeatureModels:
        # Imported here: it pulls in transformers, and list errors should be reported without that wait.
        from indextts.checkpoints import load_dvae, load_gpt

        dvae = load_dvae(self.model_dir, self.cfg, device=device)
        gpt = load_gpt(self.model_dir, self.cfg, device=device) if self.options.extract_condition else None
        precision = self.options.precision
        if device.type != "cuda" and precision != "fp32":
            logger.warning("--precision %s needs CUDA; computing in fp32 on %s.", precision, device)
            precision = "fp32"
        return FeatureModels(dvae, gpt, device, precision)

    def compute(self, batches: list[list[int]], device: torch.device) -> int:
        """Decode and run the models over ``batches``, writing each utterance's outputs; returns the count."""
        if not batches:
            return 0
        options = self.options
        dataset = UtteranceDataset(
            self.utterances, MelSpectrogramFeatures.from_config(self.cfg.dataset.mel),
            int(self.cfg.dataset.sample_rate), self.paths.bpe,
            Limits(options.min_duration, options.max_duration, int(self.cfg.gpt.max_text_tokens)),
        )
        dataset.load_tokenizer()
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=options.num_workers,
                            collate_fn=collate_decoded)
        batch_iterator = iter(loader)
        models = self._load_models(device)
        total = sum(len(b) for b in batches)
        seconds = 0.0
        with tqdm(total=total, unit="utt", desc=f"extract[{self.context.rank}]" if self.context.world_size > 1
                  else "extract", disable=not options.progress, dynamic_ncols=True) as bar:
            for decoded in batch_iterator:
                seconds += self._process_batch(decoded, models)
                bar.update(len(decoded))
                bar.set_postfix(audio_h=f"{seconds / SECONDS_PER_HOUR:.3f}")
        return total

    def _process_batch(self, decoded: list[DecodedUtterance], models: FeatureModels) -> float:
        """Record skips, run the models on the usable utterances, write outputs; returns their seconds."""
        max_codes = int(self.cfg.gpt.max_mel_tokens)
        mel_lengths = torch.tensor([0 if item.mel is None else item.mel.shape[-1] for item in decoded])
        usable = []
        for item, num_codes in zip(decoded, models.code_lengths(mel_lengths).tolist()):
            if item.skip_reason is not None:
                self._write_skip(item.index, item.skip_reason, item.skip_detail)
            elif num_codes > max_codes:
                self._write_skip(item.index, SkipReason.TOO_MANY_CODES,
                                 f"{num_codes} codes > gpt.max_mel_tokens {max_codes}")
            else:
                usable.append(item)
        if not usable:
            return 0.0
        codes, conditions = models([item.mel for item in usable])
        for row, item in enumerate(usable):
            self._write_done(item, codes[row], None if conditions is None else conditions[row])
        return sum(item.duration for item in usable)

    def assemble(self, speaker_list: SpeakerList, offset: int) -> tuple[SpeakerSummary, dict | None]:
        """Write one speaker's metadata, splits, skipped lines and medoid; return its summary and entry."""
        paths = self.speaker_paths[speaker_list.speaker]
        folder = paths.folder
        remove_temp_files(folder)
        summary = SpeakerSummary(speaker_list.speaker, folder)
        skipped: list[SkippedLine] = list(speaker_list.skipped)
        rows = []
        for position, utterance in enumerate(speaker_list.utterances):
            record = self.finished(offset + position)
            if record is None:
                raise DataError(
                    f"The outputs of {utterance.audio} (line {utterance.line_number} of {utterance.list_path}) "
                    "are missing after extraction, probably because another process failed. Re-run "
                    "the same command: finished utterances are reused."
                )
            if record["status"] == "skipped":
                skipped.append(SkippedLine(utterance.list_path, utterance.line_number, utterance.line,
                                           record["reason"], record["detail"], str(utterance.audio),
                                           utterance.text))
                continue
            rows.append({
                "uid": utterance.uid, "speaker": utterance.speaker,
                "audio": outputs.relative_path(utterance.audio, folder), "text": utterance.text,
                "codes": outputs.relative_path(paths.codes(utterance.uid), folder),
                "condition": (outputs.relative_path(paths.condition(utterance.uid), folder)
                              if self.condition_dim is not None else None),
                "duration": record["duration"], "num_codes": record["num_codes"],
                "num_text_tokens": record["num_text_tokens"],
            })
        skipped.sort(key=lambda s: s.line_number)
        summary.skipped.update(s.reason for s in skipped)
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(folder / outputs.SKIPPED, [s.to_json() for s in skipped])
        if not rows:
            logger.warning("Speaker %s: no usable utterance (see %s).", speaker_list.speaker,
                           folder / outputs.SKIPPED)
            return summary, None
        train, valid = split_train_valid(len(rows), self.options.valid_ratio, self.options.seed)
        write_jsonl_atomic(folder / outputs.METADATA, rows)
        write_jsonl_atomic(folder / outputs.METADATA_TRAIN, [rows[i] for i in train])
        write_jsonl_atomic(folder / outputs.METADATA_VALID, [rows[i] for i in valid])
        summary.kept = len(rows)
        summary.total_seconds = float(sum(row["duration"] for row in rows))
        medoid_path = self._write_medoid(paths, rows) if self.condition_dim is not None else None
        entry = {
            "speaker": speaker_list.speaker,
            "avg_duration": summary.total_seconds / len(rows),
            "sample_num": len(rows),
            "total_duration_in_seconds": summary.total_seconds,
            "total_duration_in_minutes": summary.total_seconds / 60.0,
            "total_duration_in_hours": summary.total_seconds / SECONDS_PER_HOUR,
            "train_jsonl": outputs.relative_path(folder / outputs.METADATA_TRAIN, self.root),
            "valid_jsonl": outputs.relative_path(folder / outputs.METADATA_VALID, self.root),
            "medoid_condition": None if medoid_path is None else outputs.relative_path(medoid_path, self.root),
        }
        return summary, entry

    def _write_medoid(self, paths: outputs.SpeakerPaths, rows: list[dict]) -> Path:
        conditions = np.stack([np.load(paths.condition(row["uid"]), allow_pickle=False) for row in rows])
        medoid = find_medoid(conditions, self.options.distance_metric)
        chosen = rows[medoid.index]
        medoid_path = paths.folder / outputs.MEDOID_CONDITION
        write_npy_atomic(medoid_path, conditions[medoid.index])
        write_json_atomic(paths.folder / outputs.MEDOID_INFO, {
            "uid": chosen["uid"], "audio": chosen["audio"], "condition": chosen["condition"],
            "metric": medoid.metric, **medoid.stats(),
        })
        return medoid_path


def run_extraction(options: ExtractionOptions) -> ExtractionSummary | None:
    """Extract codes (and conditions) for every audio list; returns the summary on rank 0, else None.

    Raises DataError before loading any model when the lists are unreadable or hold no usable
    line, and after extraction when no utterance at all could be kept.
    """
    started = time.perf_counter()
    options.validate()
    speaker_lists = parse_audio_lists([Path(p) for p in options.audio_lists], options.speakers)
    context = _start_distributed(options.device)
    try:
        run = _Run(options, speaker_lists, context)
        device = _resolve_device(options.device, context)
        pending = run.plan()
        computed = run.compute(pending, device)
        if context.world_size > 1:
            count = torch.tensor([computed], dtype=torch.long, device=device if device.type == "cuda" else "cpu")
            dist.all_reduce(count)
            computed = int(count.item())
        context.barrier()
        if not context.is_main:
            return None
        results = [run.assemble(s, offset) for s, offset in zip(speaker_lists, run.offsets)]
        speaker_info = run.root / outputs.SPEAKER_INFO
        outputs.merge_speaker_info(speaker_info, {summary.speaker: entry for summary, entry in results})
        summary = ExtractionSummary([s for s, _ in results], speaker_info, computed,
                                    len(run.utterances) - computed, time.perf_counter() - started)
        if summary.kept == 0:
            raise DataError(
                "No utterance could be kept: every line was skipped (reasons per line in "
                f"{', '.join(str(s.folder / outputs.SKIPPED) for s in summary.speakers)}). Fix the "
                "audio files or the list and run again."
            )
        return summary
    finally:
        if context.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
