"""Extraction throughput: utterances/s and audio-hours per hour of wall time.

    python benchmarks/bench_extraction.py                       # tiny model, CPU
    python benchmarks/bench_extraction.py --release 1.5 --utterances 16 --device cuda

Writes random-weight checkpoints (``indextts.tiny.write_tiny_checkpoints``) and synthetic speech-
like audio (harmonic tones with noise, 24 kHz mono WAV) to a temporary folder, then runs the real
extraction with conditions. The time includes model loading and audio decoding, as a user sees it;
a second run over the same data shows the cost of a fully resumed run.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from indextts.checkpoints import load_dvae, load_gpt
from indextts.config import load_config
from indextts.extraction import ExtractionOptions, run_extraction
from indextts.tiny import write_tiny_checkpoints

SAMPLE_RATE = 24000


def write_audio(folder: Path, count: int, mean_seconds: float, max_seconds: float, seed: int) -> tuple[Path, float]:
    """``count`` synthetic utterances around ``mean_seconds`` long; returns the list and total seconds."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines, total = [], 0.0
    for index in range(count):
        seconds = float(np.clip(rng.normal(mean_seconds, mean_seconds / 3), 1.0, max_seconds))
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        pitch = 100 + 80 * rng.random() + 20 * np.sin(2 * np.pi * 0.5 * t)
        phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
        audio = sum(0.2 / k * np.sin(k * phase) for k in range(1, 6)) + 0.01 * rng.standard_normal(len(t))
        sf.write(folder / f"utt{index:05d}.wav", audio.astype(np.float32), SAMPLE_RATE)
        lines.append(f"utt{index:05d}.wav\tthis is synthetic sentence number {index} for the benchmark.")
        total += len(t) / SAMPLE_RATE
    list_path = folder / "bench.lst"
    list_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return list_path, total


def bench(release: str, args: argparse.Namespace, work: Path) -> None:
    model_dir = write_tiny_checkpoints(work / f"model_{release}", seed=0, release=release)
    cfg = load_config(model_dir)
    model_limit = int(cfg.gpt.max_mel_tokens) * 4 * int(cfg.dataset.mel.hop_length) / SAMPLE_RATE
    list_path, audio_seconds = write_audio(work / f"audio_{release}", args.utterances, args.mean_seconds,
                                           min(args.max_seconds, model_limit - 0.5), args.seed)
    options = ExtractionOptions(
        audio_lists=[list_path], model_dir=model_dir, output_dir=work / f"out_{release}", extract_condition=True,
        device=args.device, precision=args.precision, batch_size=args.batch_size, num_workers=args.num_workers,
        progress=False,
    )
    started = time.perf_counter()
    load_dvae(model_dir, cfg, device=args.device or "cpu")
    load_gpt(model_dir, cfg, device=args.device or "cpu")
    load_seconds = time.perf_counter() - started
    print(f"{release:>5} model loading (DVAE + GPT): {load_seconds:.1f} s")
    for label in ("fresh", "resumed"):
        started = time.perf_counter()
        summary = run_extraction(options)
        elapsed = time.perf_counter() - started
        steady = max(elapsed - load_seconds, 1e-9) if label == "fresh" else elapsed
        print(f"{release:>5} {label:>7} | {summary.kept} utt, {audio_seconds / 60:.1f} min audio | "
              f"{elapsed:7.1f} s | {summary.kept / elapsed:7.2f} utt/s | {audio_seconds / elapsed:8.1f} audio-h/h | "
              f"without loading {summary.kept / steady:7.2f} utt/s, {audio_seconds / steady:8.1f} audio-h/h | "
              f"device {args.device or 'auto'}, batch {args.batch_size}, workers {args.num_workers}, "
              f"threads {torch.get_num_threads()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", action="append", choices=["tiny", "1.5", "1.0"],
                        help="model size(s) to measure (default: tiny)")
    parser.add_argument("--utterances", type=int, default=64, help="synthetic utterances (default: %(default)s)")
    parser.add_argument("--mean_seconds", type=float, default=5.0, help="mean utterance length (default: %(default)s)")
    parser.add_argument("--max_seconds", type=float, default=12.0, help="longest utterance (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads of the main process (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_extraction_") as work:
        for release in args.release or ["tiny"]:
            bench(release, args, Path(work))


if __name__ == "__main__":
    main()
