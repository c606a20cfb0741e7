"""GPT mel-code generation speed: codes/s for greedy, sampling and beam-3 at several batch sizes.

    python benchmarks/bench_generation.py                          # release-1.5 size, random weights, CPU
    python benchmarks/bench_generation.py --tiny                   # tiny checkpoint: a quick smoke run
    python benchmarks/bench_generation.py --device cuda --dtype bfloat16 --codes 300
    python benchmarks/bench_generation.py --batch_sizes 1 --modes greedy --codes 20 --threads 1

The release model is built from checkpoints/config.yaml (IndexTTS-1.5 sizes) with random weights, so no
download is needed. Every generation is forced to exactly ``--codes`` codes with
``GenerationConfig.min_new_tokens`` so that runs compare. codes/s = generated codes of all rows (not beams)
divided by the wall time of ``generate_codes``, prompt pass included; the best of ``--repeats`` runs is
reported after one untimed warm-up run per setting.

Reference points (reference implementation, 2-core CPU, fp32, release-1.5 size): greedy 5.6 codes/s, beam-3
with repetition penalty 2.0 codes/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from indextts.checkpoints import build_model, load_gpt
from indextts.config import load_config
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.tiny import write_tiny_checkpoints

RELEASE_CONFIG = Path(__file__).resolve().parents[1] / "checkpoints" / "config.yaml"
MODES = {
    "greedy": dict(do_sample=False, num_beams=1, repetition_penalty=1.0),
    "sample": dict(do_sample=True, num_beams=1, top_k=30, top_p=0.8, repetition_penalty=10.0),
    "beam3": dict(do_sample=False, num_beams=3, repetition_penalty=10.0, length_penalty=0.0),
}


def build_gpt(tiny: bool, device: str, dtype: torch.dtype, seed: int):
    """A UnifiedVoice with random weights: release-1.5 size, or the tiny test checkpoint."""
    torch.manual_seed(seed)
    if tiny:
        with tempfile.TemporaryDirectory() as folder:
            model = load_gpt(write_tiny_checkpoints(folder, seed=seed))
    else:
        model = build_model("gpt", load_config(RELEASE_CONFIG))
    return model.to(device=device, dtype=dtype).eval()


def make_inputs(model, batch: int, text_tokens: int, device: str, dtype: torch.dtype, seed: int):
    """Conditioning (B, 32, D) and B texts of ``text_tokens`` random ids."""
    generator = torch.Generator().manual_seed(seed)
    conditioning = torch.randn(batch, 32, model.model_dim, generator=generator) * 0.1
    text_ids = torch.randint(2, model.number_text_tokens, (batch, text_tokens), generator=generator)
    lengths = torch.full((batch,), text_tokens)
    return conditioning.to(device=device, dtype=dtype), text_ids.to(device), lengths.to(device)


def time_generation(model, inputs, config: GenerationConfig, repeats: int, device: str) -> float:
    """Best wall time in seconds of ``repeats`` generations after one warm-up."""
    best = float("inf")
    for run in range(repeats + 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        codes = generate_codes(model, *inputs, config)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        assert all(len(row) == config.max_new_tokens for row in codes)
        if run > 0:
            best = min(best, elapsed)
    return best


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="use the tiny test checkpoint instead of release size")
    parser.add_argument("--codes", type=int, default=50, help="codes generated per row (forced length)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 16], help="batch sizes to time")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES), help="decoding modes")
    parser.add_argument("--text_tokens", type=int, default=40, help="text tokens per row")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per setting (best is reported)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                        help="weight and activation dtype")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model = build_gpt(args.tiny, args.device, dtype, args.seed)
    size = "tiny" if args.tiny else "release-1.5"
    print(f"{size} GPT, {args.device} {args.dtype}, {torch.get_num_threads()} threads, "
          f"{args.codes} codes per row, {args.text_tokens} text tokens")
    print(f"{'mode':<8} {'batch':>5} {'seconds':>9} {'codes/s':>9}")
    results = []
    for mode in args.modes:
        for batch in args.batch_sizes:
            config = GenerationConfig(max_new_tokens=args.codes, min_new_tokens=args.codes, seed=args.seed,
                                      **MODES[mode])
            inputs = make_inputs(model, batch, args.text_tokens, args.device, dtype, args.seed)
            seconds = time_generation(model, inputs, config, args.repeats, args.device)
            codes_per_second = batch * args.codes / seconds
            print(f"{mode:<8} {batch:>5} {seconds:>9.3f} {codes_per_second:>9.2f}", flush=True)
            results.append({"mode": mode, "batch": batch, "seconds": seconds, "codes_per_second": codes_per_second})
    if args.json:
        args.json.write_text(json.dumps({"model": size, "device": args.device, "dtype": args.dtype,
                                         "threads": torch.get_num_threads(), "codes": args.codes,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
