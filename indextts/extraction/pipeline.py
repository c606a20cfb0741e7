"""The extraction run: audio lists -> per-utterance codes/conditions -> per-speaker JSONL and stats.

Single process: ``run_extraction(ExtractionOptions(...))``. Under ``torchrun`` every rank computes a
shard of the batches on its own GPU (``indextts.runtime``); after a barrier rank 0 assembles the
speaker files from the per-utterance outputs on disk (which also makes an interrupted run
resumable: finished utterances are reused).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from indextts.atomic_files import write_npy_atomic
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.checkpoint_folder.layout import DEFAULT_MODEL_DIR
from indextts.contracts import speaker_info
from indextts.contracts.paths import check_output_dir
from indextts.errors import DataError
from indextts.fingerprints import file_stamp, hash_json
from indextts.extraction import outputs
from indextts.contracts.audio_list import SkipReason, SpeakerList, Utterance, parse_audio_lists
from indextts.extraction.features import BatchFeatures, DecodedUtterance, Limits, UtteranceDataset, collate_decoded, plan_batches
from indextts.extraction.generations import check_output_family, extraction_family
from indextts.extraction.speaker_files import SECONDS_PER_HOUR, SpeakerAssembler, SpeakerSettings, SpeakerSummary
from indextts.extraction.speaker_stats import DISTANCE_METRICS
from indextts.runtime import PRECISIONS, DistributedContext, init_distributed, resolve_precision

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = Path("finetune_data/processed_data")
CONDITION_BATCHING = ("auto", "batched", "single")


def default_num_workers() -> int:
    return min(8, os.cpu_count() or 1)


@dataclass
class ExtractionOptions:
    """Everything one extraction run needs (the flags of ``indextts-extract``)."""

    audio_lists: list[Path]
    speakers: list[str] | None = None
    model_dir: Path = DEFAULT_MODEL_DIR
    output_dir: Path = DEFAULT_OUTPUT_DIR
    extract_condition: bool = False
    device: str | None = None
    precision: str = "auto"
    precision_check_batches: int | None = None
    condition_batching: str = "auto"
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
        checks = [
            (self.batch_size >= 1, f"--batch_size must be >= 1 (got {self.batch_size})"),
            (self.num_workers >= 0, f"--num_workers must be >= 0 (got {self.num_workers})"),
            (self.min_duration >= 0, f"--min_duration must be >= 0 (got {self.min_duration})"),
            (self.max_duration is None or self.max_duration > self.min_duration,
             f"--max_duration ({self.max_duration}) must exceed --min_duration ({self.min_duration})"),
            (0.0 <= self.valid_ratio < 1.0, f"--valid_ratio must be in [0, 1) (got {self.valid_ratio})"),
            (self.distance_metric in DISTANCE_METRICS, f"--distance_metric must be one of {', '.join(DISTANCE_METRICS)}"),
            (self.precision in PRECISIONS, f"--precision must be one of {', '.join(PRECISIONS)}"),
            (self.condition_batching in CONDITION_BATCHING,
             f"--condition_batching must be one of {', '.join(CONDITION_BATCHING)}"),
            (bool(self.audio_lists), "give at least one --audio_list"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise DataError("Invalid extraction options: " + "; ".join(problems) + ". See --help.")


@dataclass
class ExtractionSummary:
    """Result of a run (rank 0): per-speaker counts, reused vs computed utterances, precision, wall time."""

    speakers: list[SpeakerSummary]
    speaker_info: Path
    computed: int
    reused: int
    elapsed_seconds: float
    precision: str = "fp32"
    batches: int = 0
    fallback_batches: int = 0

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.speakers)

    @property
    def failed(self) -> list[SpeakerSummary]:
        return [s for s in self.speakers if s.failed]

    def format(self) -> str:
        lines = []
        for s in self.speakers:
            reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(s.skipped.items())) or "none"
            state = " FAILED, previous data kept" if s.kept_previous else (" FAILED" if s.failed else "")
            lines.append(f"{s.speaker}: kept {s.kept} ({s.total_seconds / SECONDS_PER_HOUR:.3f} h), "
                         f"skipped {sum(s.skipped.values())} ({reasons}){state} -> {s.folder}")
        hours = sum(s.total_seconds for s in self.speakers) / SECONDS_PER_HOUR
        lines.append(f"total: kept {self.kept} utterances, {hours:.3f} h of audio; computed {self.computed}, "
                     f"reused {self.reused}; {self.elapsed_seconds:.1f} s; speaker list {self.speaker_info}")
        if self.precision != "fp32":
            lines.append(f"codes in {self.precision}: {self.fallback_batches} of {self.batches} batches fell back "
                         "to fp32 (a code differed from the fp32 check)")
        return "\n".join(lines)


class _Run:
    """State of one run shared by its steps (kept private: ``run_extraction`` is the API)."""

    def __init__(self, options: ExtractionOptions, speaker_lists: list[SpeakerList], context: DistributedContext):
        self.options = options
        self.context = context
        self.lists = speaker_lists
        self.root = Path(options.output_dir).expanduser().resolve()
        self.folder = CheckpointFolder(options.model_dir)
        self.family = extraction_family(self.folder)
        check_output_family(self.root, self.family)
        self.condition_shape = self.family.condition_shape() if options.extract_condition else None
        self.emotion_dim = self.family.emotion_dim if options.extract_condition else None
        self.utterances: list[Utterance] = [u for s in speaker_lists for u in s.utterances]
        self.offsets = np.cumsum([0] + [len(s.utterances) for s in speaker_lists]).tolist()
        self.speaker_paths = {s.speaker: outputs.SpeakerPaths(self.root, s.speaker) for s in speaker_lists}
        model_files = [file_stamp(p) for p in self.family.required_files(options.extract_condition)]
        self.fingerprints = [
            hash_json(file_stamp(u.audio), u.text, model_files,
                                      options.extract_condition, options.min_duration, options.max_duration)
            for u in self.utterances
        ]
        self.precision = self._precision()
        self.batches = 0
        self.fallback_batches = 0

    def finished(self, index: int) -> dict | None:
        utterance = self.utterances[index]
        return outputs.read_valid_record(self.speaker_paths[utterance.speaker], utterance.uid,
                                         self.fingerprints[index], self.condition_shape, self.emotion_dim)

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

    def _write_done(self, item: DecodedUtterance, features: BatchFeatures, row: int, batch_key: str | None) -> None:
        utterance = self.utterances[item.index]
        paths = self.speaker_paths[utterance.speaker]
        codes = features.codes[row]
        write_npy_atomic(paths.codes(utterance.uid), codes)
        if features.conditions is not None:
            write_npy_atomic(paths.condition(utterance.uid), features.conditions[row])
        if features.emotions is not None:
            write_npy_atomic(paths.emotion(utterance.uid), features.emotions[row])
        record = {
            "status": "done", "fingerprint": self.fingerprints[item.index], "duration": item.duration,
            "num_codes": int(codes.shape[0]), "num_text_tokens": item.num_text_tokens,
            "special_tokens": item.special_tokens, "codes_precision": features.codes_precision,
        }
        if item.text.language is not None:
            record.update(language=item.text.language, language_id=item.text.language_id)
        outputs.write_record(paths.record(utterance.uid), record if batch_key is None else {**record, "codes_batch": batch_key})

    def _precision(self) -> str:
        device = self.context.device
        precision = resolve_precision(self.options.precision, device, cuda_auto="fp16")
        if device.type != "cuda" and precision != "fp32":
            logger.warning("--precision %s needs CUDA; computing in fp32 on %s.", precision, device)
            precision = "fp32"
        return precision

    def _load_models(self):
        device = self.context.device
        batching = self.options.condition_batching
        batched = batching == "batched" or (batching == "auto" and device.type == "cuda")
        return self.family.load_models(device, self.options.extract_condition, precision=self.precision,
                                       batch_conditions=batched, check_batches=self.options.precision_check_batches)

    def _dataset(self) -> UtteranceDataset:
        cfg = self.folder.cfg
        text_counter = self.family.text_counter()
        text_counter.load()
        return UtteranceDataset(
            self.utterances, self.family.model_input(), self.family.sample_rate, text_counter,
            Limits(self.options.min_duration, self.options.max_duration, int(cfg.gpt.max_text_tokens)),
        )

    def compute(self, batches: list[list[int]]) -> int:
        """Decode and run the models over ``batches``, writing each utterance's outputs; returns the count."""
        if not batches:
            return 0
        models = self._load_models()
        loader = DataLoader(self._dataset(), batch_sampler=batches, num_workers=self.options.num_workers,
                            collate_fn=collate_decoded)
        total, seconds = sum(len(b) for b in batches), 0.0
        label = f"extract[{self.context.rank}]" if self.context.enabled else "extract"
        with tqdm(total=total, unit="utt", desc=label, disable=not self.options.progress, dynamic_ncols=True) as bar:
            for decoded in loader:
                seconds += self._process_batch(decoded, models)
                bar.update(len(decoded))
                bar.set_postfix(audio_h=f"{seconds / SECONDS_PER_HOUR:.3f}")
        self.batches, self.fallback_batches = models.batches, models.fallback_batches
        return total

    def _process_batch(self, decoded: list[DecodedUtterance], models) -> float:
        """Record skips, run the models on the usable utterances, write outputs; returns their seconds."""
        max_codes = int(self.folder.cfg.gpt.max_mel_tokens)
        input_lengths = torch.tensor([0 if item.model_input is None else item.model_input.shape[-1] for item in decoded])
        usable = []
        for item, num_codes in zip(decoded, models.code_lengths(input_lengths).tolist()):
            if item.skip_reason is not None:
                self._write_skip(item.index, item.skip_reason, item.skip_detail)
            elif num_codes > max_codes:
                self._write_skip(item.index, SkipReason.TOO_MANY_CODES,
                                 f"{num_codes} codes > gpt.max_mel_tokens {max_codes} (the model's limit; "
                                 "cut the clip or leave it out)")
            else:
                usable.append(item)
        if not usable:
            return 0.0
        features = models([item.model_input for item in usable])
        # Half precision names the batch in each record, so fallback batches can be counted per speaker.
        batch_key = None if self.precision == "fp32" else self.utterances[usable[0].index].uid
        for row, item in enumerate(usable):
            self._write_done(item, features, row, batch_key)
        return sum(item.duration for item in usable)

    def records(self, speaker_list: SpeakerList, offset: int) -> list[dict]:
        """Every utterance's finished record; raises when one is missing (another rank failed)."""
        records = []
        for position, utterance in enumerate(speaker_list.utterances):
            record = self.finished(offset + position)
            if record is None:
                raise DataError(
                    f"The outputs of {utterance.audio} (line {utterance.line_number} of {utterance.list_path}) "
                    "are missing after extraction, probably because another process failed (see its "
                    "error above). Fix that and re-run the same command: finished utterances are reused."
                )
            records.append(record)
        return records

    def base_identity(self) -> dict:
        """The checkpoint's identity; without gpt.pth (a codes-only run) only the tokenizer's."""
        if self.folder.paths.gpt.is_file():
            return self.folder.identity()
        return {"gpt_sha256": None, "bpe_sha256": self.folder.tokenizer_fingerprint}


def _reduce_counts(context: DistributedContext, *counts: int) -> list[int]:
    """Sum integer counts over the torchrun ranks (as they are without torchrun)."""
    if not context.enabled:
        return list(counts)
    device = context.device if context.device.type == "cuda" else torch.device("cpu")
    tensor = torch.tensor(counts, dtype=torch.long, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _finish(run: _Run, computed: int, started: float) -> ExtractionSummary:
    """Rank 0: assemble every speaker's files, merge speaker_info.json, report failures."""
    info_path = run.root / speaker_info.SPEAKER_INFO
    previous = {entry["speaker"] for entry in speaker_info.read_speaker_entries(info_path)}
    settings = SpeakerSettings(run.root, run.options.valid_ratio, run.options.seed, run.options.distance_metric,
                               run.condition_shape is not None, run.base_identity(), run.precision,
                               run.emotion_dim is not None, run.family.speaker_fields())
    assembler = SpeakerAssembler(settings, previous)
    results = [assembler.assemble(s, run.records(s, offset)) for s, offset in zip(run.lists, run.offsets)]
    speaker_info.merge_speaker_info(info_path, {summary.speaker: entry for summary, entry in results if entry is not None})
    return ExtractionSummary([s for s, _ in results], info_path, computed, len(run.utterances) - computed,
                             time.perf_counter() - started, run.precision, run.batches, run.fallback_batches)


def _raise_for_failures(summary: ExtractionSummary) -> None:
    if summary.kept == 0 and not any(s.kept_previous for s in summary.speakers):
        raise DataError(
            "No utterance could be kept: every line was skipped (reasons per line in "
            f"{', '.join(str(s.folder / outputs.SKIPPED) for s in summary.speakers)}). Fix the "
            "audio files or the list and run again."
        )
    if summary.failed:
        logger.info("Extraction summary:\n%s", summary.format())
        raise DataError(
            f"Extraction failed for {'; '.join(s.problem for s in summary.failed)}. The other speakers were "
            f"written to {summary.speaker_info}. Fix the audio files or the list and run again."
        )


def run_extraction(options: ExtractionOptions) -> ExtractionSummary | None:
    """Extract codes (and conditions) for every audio list; returns the summary on rank 0, else None.

    Raises DataError before loading any model when the options, lists or output folder are
    unusable, and after extraction when a speaker yields no usable utterance (its previous data,
    if any, is kept untouched; the other speakers are written).
    """
    started = time.perf_counter()
    options.validate()
    speaker_lists = parse_audio_lists([Path(p) for p in options.audio_lists], options.speakers)
    check_output_dir(Path(options.output_dir).expanduser().resolve(), [s.speaker for s in speaker_lists])
    context = init_distributed(options.device or "auto")
    try:
        run = _Run(options, speaker_lists, context)
        computed = run.compute(run.plan())
        if run.precision != "fp32":
            logger.info("Half precision (%s): %d of %d batches fell back to fp32 on rank %d.",
                        run.precision, run.fallback_batches, run.batches, context.rank)
        computed, run.batches, run.fallback_batches = _reduce_counts(context, computed, run.batches,
                                                                     run.fallback_batches)
        context.barrier()
        if not context.is_main:
            return None
        summary = _finish(run, computed, started)
        _raise_for_failures(summary)
        return summary
    finally:
        if context.enabled and dist.is_initialized():
            dist.destroy_process_group()
