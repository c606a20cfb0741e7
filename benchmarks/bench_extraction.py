"""Extraction throughput: utterances/s, audio-hours per hour of wall time, peak memory.

    python benchmarks/bench_extraction.py                                   # tiny model, CPU
    python benchmarks/bench_extraction.py --device cuda --size 1.5 --precision fp16 --json out.json

Writes random-weight checkpoints (``indextts.tiny.write_tiny_checkpoints``; ``--size 1.5`` gives
the release sizes) and synthetic speech-like audio (harmonic tones with noise, mono WAV at the
model's rate; ``--distinct_audio`` different clips, copied under new names up to ``--utterances``)
to a temporary folder (or reads ``--model_dir``), then runs the real extraction with conditions, as
``indextts-extract --extract_condition`` does. "fresh" includes model loading and audio decoding,
as a user sees it. "steady" is the rate after the first batch: utterances of batches 2..n over the
time from the end of batch 1 to the end of batch n (weights loading and warm-up left out; the
loading time is measured apart, ``model_loading_seconds``). "resumed" is a second run over the same
data (everything reused). Peak memory: CUDA max allocated, else the process's peak RSS. The fair
target (docs/benchmarks.md) is the steady rate over >= 1,000 utterances.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.extraction import ExtractionOptions, run_extraction
from indextts.extraction import generations
from indextts.extraction.features import FeatureModels
from indextts.runtime import PRECISIONS, resolve_device
from indextts.tiny import write_tiny_checkpoints


class TimedFeatureModels(FeatureModels):
    """FeatureModels that note when each batch's features are ready (codes on the host: synced)."""

    batch_ends: list[tuple[float, int]] = []
    """(perf_counter seconds, utterances) per batch of the run being timed."""

    def __call__(self, mels):
        features = super().__call__(mels)
        TimedFeatureModels.batch_ends.append((time.perf_counter(), len(mels)))
        return features


def steady_rate(batch_ends: list[tuple[float, int]]) -> tuple[float | None, int]:
    """Utterances/s of batches 2..n from the end of batch 1, and the utterances that counts (None: < 2 batches)."""
    if len(batch_ends) < 2:
        return None, 0
    counted = sum(count for _, count in batch_ends[1:])
    return counted / max(batch_ends[-1][0] - batch_ends[0][0], 1e-9), counted


def write_audio(folder: Path, count: int, mean_seconds: float, max_seconds: float, sample_rate: int,
                seed: int, distinct: int) -> tuple[Path, float]:
    """``count`` synthetic utterances around ``mean_seconds`` long (``distinct`` different clips, copied
    under new names); returns the list and total seconds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines, total, seconds_of = [], 0.0, {}
    for index in range(count):
        name, source = f"utt{index:05d}.wav", f"utt{index % distinct:05d}.wav"
        if index < distinct:
            seconds = float(np.clip(rng.normal(mean_seconds, mean_seconds / 3), 1.0, max_seconds))
            t = np.arange(int(seconds * sample_rate)) / sample_rate
            pitch = 100 + 80 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
            phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
            audio = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.01 * rng.standard_normal(len(t))
            sf.write(folder / name, audio.astype(np.float32), sample_rate)
            seconds_of[source] = len(t) / sample_rate
        else:
            shutil.copyfile(folder / source, folder / name)
        lines.append(f"{name}\tthis is synthetic sentence number {index} for the benchmark.")
        total += seconds_of[source]
    list_path = folder / "bench.lst"
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_path, total


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is KiB on Linux, bytes on macOS
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def load_seconds(folder: CheckpointFolder, device: torch.device) -> float:
    started = time.perf_counter()
    folder.load_dvae(device)
    folder.load_gpt(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def timed_run(options: ExtractionOptions, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    summary = run_extraction(options)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, summary


def bench(args: argparse.Namespace, work: Path) -> dict:
    device = resolve_device(args.device)
    model_dir = args.model_dir or write_tiny_checkpoints(work / "model", seed=0, release=args.size)
    folder = CheckpointFolder(model_dir)
    cfg = folder.cfg
    model_limit = int(cfg.gpt.max_mel_tokens) * 4 * int(cfg.dataset.mel.hop_length) / folder.sample_rate
    list_path, audio_seconds = write_audio(work / "audio", args.utterances, args.mean_seconds,
                                           min(args.max_seconds, model_limit - 0.5), folder.sample_rate, args.seed,
                                           args.distinct_audio)
    loading = load_seconds(folder, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    options = ExtractionOptions(
        audio_lists=[list_path], model_dir=model_dir, output_dir=work / "out", extract_condition=True,
        device=str(device), precision=args.precision, condition_batching=args.condition_batching,
        batch_size=args.batch_size, num_workers=args.num_workers, progress=False,
        precision_check_batches=args.precision_check_batches,
    )
    TimedFeatureModels.batch_ends.clear()
    fresh, summary = timed_run(options, device)
    steady, steady_counted = steady_rate(TimedFeatureModels.batch_ends)
    peak = peak_memory_bytes(device)
    resumed, _ = timed_run(options, device)
    hours = audio_seconds / 3600.0
    return {
        "benchmark": "extraction", "device": str(device), "size": args.size, "precision": summary.precision,
        "condition_batching": args.condition_batching, "batch_size": args.batch_size,
        "num_workers": args.num_workers, "utterances": summary.kept, "audio_hours": hours,
        "fresh_seconds": fresh, "model_loading_seconds": loading, "resumed_seconds": resumed,
        "utterances_per_second": summary.kept / fresh, "steady_utterances_per_second": steady,
        "steady_utterances": steady_counted, "audio_hours_per_hour": hours / (fresh / 3600.0),
        "batches": summary.batches, "fallback_batches": summary.fallback_batches,
        "precision_check_batches": args.precision_check_batches,
        "peak_memory_bytes": peak, "torch_threads": torch.get_num_threads(),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--size", choices=["tiny", "1.5"], default="tiny", help="model size (default: %(default)s)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="DVAE precision (auto = fp16 on CUDA, fp32 on the CPU)")
    parser.add_argument("--condition_batching", choices=["auto", "batched", "single"], default="auto")
    parser.add_argument("--utterances", type=int, default=1000,
                        help="synthetic utterances; the fair target needs >= 1000 (default: %(default)s)")
    parser.add_argument("--distinct_audio", type=int, default=32, help="different synthetic clips (default: %(default)s)")
    parser.add_argument("--model_dir", type=Path, default=None, help="checkpoint folder (default: random weights)")
    parser.add_argument("--precision_check_batches", type=int, default=None,
                        help="as indextts-extract's (default: check every half-precision batch)")
    parser.add_argument("--mean_seconds", type=float, default=5.0, help="mean utterance length (default: %(default)s)")
    parser.add_argument("--max_seconds", type=float, default=12.0, help="longest utterance (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of the main process")
    parser.add_argument("--json", type=Path, default=None, help="also write the result to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    generations.FeatureModels = TimedFeatureModels  # the real extraction, with a clock after each batch
    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as work:
        result = bench(args, Path(work))
    print(f"{result['size']:>4} {result['device']} {result['precision']} | {result['utterances']} utt, "
          f"{result['audio_hours'] * 60:.1f} min audio | fresh {result['fresh_seconds']:.1f} s: "
          f"{result['utterances_per_second']:.2f} utt/s, {result['audio_hours_per_hour']:.1f} audio-h/h | "
          f"steady {result['steady_utterances_per_second'] or 0:.2f} utt/s | resumed {result['resumed_seconds']:.1f} s | "
          f"fallback batches {result['fallback_batches']}/{result['batches']} | "
          f"peak {result['peak_memory_bytes'] / 2**20:.0f} MiB")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
