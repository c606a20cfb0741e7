"""Throughput and latency of ``indextts-serve`` on loopback: requests/s and p50/p95 latency per client count.

    python benchmarks/bench_serve.py                                  # tiny model, CPU, 1/4/16 clients
    python benchmarks/bench_serve.py --size 1.5 --device cuda --json serve.json

A checkpoint folder with seeded random weights (``indextts.tiny``: the tiny model, or the IndexTTS-1.5
sizes) is written to a temporary folder and served on 127.0.0.1 (a free port) from this process.
One voice is made from random learned conditions. The stop code's logit is pushed to -1e4, so every
sentence generates exactly ``--codes`` codes with greedy decoding and runs compare. Each of N
concurrent clients sends ``--requests_per_client`` requests one after another (wav, one two-sentence
text); the figures are all requests over the wall time, and the latency percentiles of single
requests. Traffic goes to 127.0.0.1 only, and the loop is bounded by the request count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import torch

from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.lora import TrainedSpeaker
from indextts.serving import ServerSettings, create_app, serve_in_background
from indextts.tiny import write_tiny_checkpoints

NEVER = -1.0e4
"""Logit bias that keeps the random GPT from ever choosing the stop code."""
TEXT = "The weather is lovely this morning. So we walk to the park together."
VOICE = "bench:speaker"


def build_synthesizer(folder: Path, size: str, device: str) -> IndexTTS:
    """Random-weight IndexTTS of ``size`` with one voice ``bench:speaker`` and the stop code disabled."""
    tts = IndexTTS.from_pretrained(write_tiny_checkpoints(folder, seed=0, release=size), device=device)
    generator = torch.Generator().manual_seed(0)
    model_dim = int(tts.cfg.gpt.model_dim)
    speaker = TrainedSpeaker(condition=torch.randn(32, model_dim, generator=generator) * 0.5,
                             reference_mel=torch.randn(100, 200, generator=generator))
    tts.add_speakers("bench", {"speaker": speaker})
    with torch.no_grad():
        tts.models.gpt.mel_head.bias[int(tts.cfg.gpt.stop_mel_token)] = NEVER
    return tts


async def _client(client: httpx.AsyncClient, requests: int, latencies: list[float]) -> None:
    body = {"model": "indextts", "input": TEXT, "voice": VOICE, "response_format": "wav"}
    for _ in range(requests):
        start = time.perf_counter()
        response = await client.post("/v1/audio/speech", json=body)
        response.raise_for_status()
        latencies.append(time.perf_counter() - start)


async def measure(url: str, clients: int, requests_per_client: int) -> dict:
    """Figures for ``clients`` concurrent clients, each sending ``requests_per_client`` requests."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=3600, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(_client(client, requests_per_client, latencies) for _ in range(clients)))
        seconds = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies), "seconds": round(seconds, 3),
            "requests_per_second": round(len(latencies) / seconds, 3),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1)}


def run(args: argparse.Namespace) -> dict:
    """Build the model, serve it, warm up, and measure every client count."""
    options = SynthesisOptions(generation=GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=args.codes),
                               sentence_batch_size=2 * max(args.clients))
    settings = ServerSettings(options=options, max_batch=max(args.clients), max_queue=2 * max(args.clients))
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as folder:
        tts = build_synthesizer(Path(folder), args.size, args.device)
    with serve_in_background(create_app(tts, settings)) as url:
        if args.warmup:
            asyncio.run(measure(url, 1, args.warmup))
        rows = [asyncio.run(measure(url, clients, args.requests_per_client)) for clients in args.clients]
    return {"benchmark": "bench_serve", "size": args.size, "device": str(tts.device), "codes_per_sentence": args.codes,
            "text": TEXT, "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(), "gpu": _gpu_name(tts.device),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "results": rows}


def _gpu_name(device: torch.device) -> str | None:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--size", default="tiny", choices=("tiny", "1.5", "1.0"),
                        help="tiny model, or random weights of a release's size")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent client counts")
    parser.add_argument("--requests_per_client", type=int, default=3, help="requests each client sends")
    parser.add_argument("--codes", type=int, default=40, help="codes generated per sentence (1 code = 1024 samples)")
    parser.add_argument("--warmup", type=int, default=2, help="requests sent once before measuring")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    logging.getLogger("indextts.inference").setLevel(logging.ERROR)  # every sentence hits --codes on purpose
    report = run(args)
    print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>9} {'p95 ms':>9}")
    for row in report["results"]:
        print(f"{row['clients']:>7} {row['requests']:>8} {row['requests_per_second']:>8.2f} "
              f"{row['p50_ms']:>9.1f} {row['p95_ms']:>9.1f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
