"""Inference speed with random weights: GPT decoding, CPU quantisation, BigVGAN and end to end.

    python benchmarks/bench_infer.py --device cuda --size 1.5 --json infer.json   # the GPU check's run
    python benchmarks/bench_infer.py --device cpu --batch_sizes 1 --modes greedy --codes 60 \\
        --cpu_quantization int8 bf16                                              # CPU int8/bf16 vs fp32
    python benchmarks/bench_infer.py --device cpu --size tiny --codes 8 --e2e_seconds 1  # smoke run

Models have the sizes of indextts/configs/indextts-1.5.yaml (``--size 1.5``) or of the tiny test
model, with seeded random weights, so nothing is downloaded. ``min_new_tokens = max_new_tokens`` makes
every generation run exactly ``--codes`` steps. Reports:

- GPT codes/s per mode (greedy; sampling; beam3 = 3 beams + repetition penalty 10; default = the
  reference default, sampling + 3 beams + penalty 10) and batch size, with and without the CUDA graph
  on CUDA: codes of all rows over the wall time of ``generate_codes`` (prompt pass included), and the
  decoding rate after the prompt pass (a one-code run times the prompt pass);
- with ``--cpu_quantization``: greedy codes/s of the int8 / bf16 GPT against float32 in the same run
  (runs interleaved, medians), and how often the greedy codes agree with float32;
- BigVGAN seconds of audio per second;
- end to end through ``IndexTTS`` (the reference default settings): real-time factor for a text of
  each ``--e2e_seconds`` length (one sentence per 10 s) and the latency of the first streamed chunk;
- peak memory (CUDA: allocated by torch; CPU: the process's peak resident size).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoints import build_model
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.gpt.quantize import MODES as QUANTIZATION_MODES
from indextts.gpt.quantize import quantize_for_cpu
from indextts.runtime import PRECISIONS, dtype_of, resolve_precision
from indextts.tiny import write_tiny_checkpoints

MODES = {
    "greedy": GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0),
    "sample": GenerationConfig(do_sample=True, num_beams=1, top_k=30, top_p=0.8, repetition_penalty=1.0),
    "beam3": GenerationConfig(do_sample=False, num_beams=3, repetition_penalty=10.0),
    "default": GenerationConfig(),
}
SENTENCE = "The weather is lovely this morning, so we take a long walk through the quiet park together."
SECONDS_PER_SENTENCE = 10
QUANTIZATION_REPEATS = 3


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_models(cfg, device: torch.device, dtype: torch.dtype):
    """GPT and BigVGAN with seeded random weights."""
    torch.manual_seed(0)
    gpt = build_model("gpt", cfg).eval()
    bigvgan = build_model("bigvgan", cfg).eval()
    return gpt.to(device, dtype), bigvgan.to(device)


def fixed_length(config: GenerationConfig, codes: int, **changes) -> GenerationConfig:
    return replace(config, max_new_tokens=codes, min_new_tokens=codes, seed=0, **changes)


def timed_generation(gpt, rows, text_ids, lengths, config: GenerationConfig, device) -> tuple[float, list]:
    """Seconds and codes of one ``generate_codes`` call."""
    synchronize(device)
    start = time.perf_counter()
    out = generate_codes(gpt, rows, text_ids, lengths, config)
    synchronize(device)
    return time.perf_counter() - start, out


def text_batch(batch: int, text_len: int, device: torch.device, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random text ids (batch, text_len) below ``vocab`` and their lengths (batch,)."""
    generator = torch.Generator().manual_seed(batch)
    text_ids = torch.randint(2, vocab, (batch, text_len), generator=generator).to(device)
    return text_ids, torch.full((batch,), text_len, device=device)


def generation_row(gpt, conditioning, text_len: int, codes: int, mode: str, batch: int, graph: bool, device) -> dict:
    """Codes/s of one (mode, batch, graph) setting; a first run of each setting warms up (and captures)."""
    text_ids, lengths = text_batch(batch, text_len, device, gpt.number_text_tokens)
    rows = conditioning.expand(batch, -1, -1)
    config = MODES[mode]
    for warm_codes in (1, codes):  # both cache lengths, so every bucket is captured before timing
        timed_generation(gpt, rows, text_ids, lengths, fixed_length(config, warm_codes, cuda_graph=graph), device)
    prompt_seconds, _ = timed_generation(gpt, rows, text_ids, lengths, fixed_length(config, 1, cuda_graph=graph),
                                         device)
    seconds, out = timed_generation(gpt, rows, text_ids, lengths, fixed_length(config, codes, cuda_graph=graph),
                                    device)
    produced = sum(len(o) for o in out)
    decode_rate = (produced - batch) / max(seconds - prompt_seconds, 1e-9)
    print(f"  {mode:7s} batch {batch:3d} graph {str(graph):5s}: {produced / seconds:9.1f} codes/s overall, "
          f"{decode_rate:9.1f} decoding, prompt pass {prompt_seconds:.3f} s", flush=True)
    return {"mode": mode, "batch": batch, "cuda_graph": graph, "codes": produced, "seconds": round(seconds, 4),
            "prompt_seconds": round(prompt_seconds, 4), "codes_per_s": round(produced / seconds, 2),
            "decode_codes_per_s": round(decode_rate, 2)}


def bench_generation(gpt, conditioning, args, device) -> list[dict]:
    graphs = [True, False] if device.type == "cuda" else [False]
    return [generation_row(gpt, conditioning, args.text_len, args.codes, mode, batch, graph, device)
            for mode in args.modes for batch in args.batch_sizes for graph in graphs]


def agreement(reference: list[torch.Tensor], other: list[torch.Tensor]) -> dict:
    """How far greedy codes of two models agree: equal positions, and codes before the first difference."""
    equal = sum(int((a == b).sum()) for a, b in zip(reference, other))
    total = sum(len(a) for a in reference)
    prefixes = [int((a != b).nonzero()[0, 0]) if bool((a != b).any()) else len(a) for a, b in zip(reference, other)]
    return {"equal_positions": round(equal / total, 4), "identical_prefix": round(sum(prefixes) / total, 4)}


def bench_cpu_quantization(gpt, conditioning, args) -> list[dict]:
    """Greedy batch-1 codes/s of each quantised copy against float32, runs interleaved; code agreement."""
    text_ids, lengths = text_batch(1, args.text_len, torch.device("cpu"), gpt.number_text_tokens)
    config = fixed_length(MODES["greedy"], args.codes)
    models = {"fp32": gpt} | {mode: quantize_for_cpu(copy.deepcopy(gpt), mode) for mode in args.cpu_quantization}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    codes: dict[str, list] = {}
    for name, model in models.items():  # warm-up
        timed_generation(model, conditioning, text_ids, lengths, fixed_length(config, 2), torch.device("cpu"))
    for _ in range(QUANTIZATION_REPEATS):
        for name, model in models.items():
            elapsed, codes[name] = timed_generation(model, conditioning, text_ids, lengths, config, torch.device("cpu"))
            seconds[name].append(elapsed)
    base = statistics.median(seconds["fp32"])
    rows = []
    for name in models:
        median = statistics.median(seconds[name])
        row = {"mode": name, "codes_per_s": round(args.codes / median, 3), "speedup": round(base / median, 3),
               **agreement(codes["fp32"], codes[name])}
        print(f"  CPU {name:5s}: {row['codes_per_s']:.2f} codes/s, {row['speedup']:.2f}x fp32, "
              f"agreement {row['equal_positions']:.2f} (prefix {row['identical_prefix']:.2f})", flush=True)
        rows.append(row)
    return rows


def bench_vocoder(bigvgan, cfg, vocoder_codes: int, reference_mel: torch.Tensor, device) -> dict:
    latents = torch.randn(1, vocoder_codes, int(cfg.gpt.model_dim), device=device)
    audio_seconds = vocoder_codes * int(cfg.gpt.mel_length_compression) / int(cfg.dataset.sample_rate)
    with torch.inference_mode():
        bigvgan(latents[:, :4], reference_mel)
        synchronize(device)
        start = time.perf_counter()
        bigvgan(latents, reference_mel)
        synchronize(device)
    seconds = time.perf_counter() - start
    print(f"  BigVGAN: {audio_seconds / seconds:.2f} s of audio per s ({audio_seconds:.2f} s in {seconds:.3f} s)")
    return {"audio_seconds": round(audio_seconds, 3), "seconds": round(seconds, 4),
            "audio_per_second": round(audio_seconds / seconds, 3)}


def _end_to_end_row(tts, text: str, reference: Path, options, device) -> dict:
    """Wall time and audio of one synthesis, and the time to the first streamed chunk of the same text."""
    synchronize(device)
    start = time.perf_counter()
    result = tts.synthesize(text, reference_audio=reference, options=options)
    synchronize(device)
    seconds = time.perf_counter() - start
    audio_seconds = len(result.waveform) / result.sample_rate
    start = time.perf_counter()
    next(iter(tts.stream(text, reference_audio=reference, options=options)))
    first_chunk = time.perf_counter() - start
    return {"sentences": len(result.sentences), "audio_seconds": round(audio_seconds, 3),
            "seconds": round(seconds, 4), "rtf": round(seconds / audio_seconds, 5),
            "first_chunk_seconds": round(first_chunk, 4)}


def bench_end_to_end(cfg, folder: Path, seconds_list: list[float], precision: str, device) -> list[dict]:
    """RTF of ``IndexTTS`` with the reference default settings for texts of the given audio lengths."""
    import soundfile

    from indextts.infer import IndexTTS

    from indextts.synthesis import SynthesisOptions

    sample_rate = int(cfg.dataset.sample_rate)
    reference = folder / "reference.wav"
    noise = np.random.default_rng(0).standard_normal(sample_rate * 3).astype(np.float32)
    soundfile.write(reference, 0.1 * noise, sample_rate)
    tts = IndexTTS.from_pretrained(folder, device=str(device), precision=precision)
    codes_per_second = sample_rate / int(cfg.gpt.mel_length_compression)
    rows = []
    for target in seconds_list:
        sentences = max(1, round(target / SECONDS_PER_SENTENCE))
        codes = round(min(target, SECONDS_PER_SENTENCE) * codes_per_second)
        options = SynthesisOptions(generation=fixed_length(GenerationConfig(), codes), silence_trimming="off")
        warmup = replace(options, generation=fixed_length(GenerationConfig(), 2))
        tts.synthesize(SENTENCE, reference_audio=reference, options=warmup)
        row = {"target_seconds": target, **_end_to_end_row(tts, " ".join([SENTENCE] * sentences), reference,
                                                           options, device)}
        print(f"  end to end {target:g} s: RTF {row['rtf']:.4f} ({row['audio_seconds']:.1f} s of audio in "
              f"{row['seconds']:.2f} s), first chunk after {row['first_chunk_seconds']:.3f} s", flush=True)
        rows.append(row)
    return rows


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--size", choices=["1.5", "tiny"], default="1.5", help="model sizes (random weights)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="GPT precision (auto: fp16 on CUDA as the reference, fp32 on the CPU)")
    parser.add_argument("--codes", type=int, default=100, help="codes generated per row in every run")
    parser.add_argument("--text_len", type=int, default=24, help="text tokens per row")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 16], help="batch sizes to time")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=["greedy", "default"],
                        help="decoding modes")
    parser.add_argument("--cpu_quantization", nargs="*", choices=QUANTIZATION_MODES, default=[],
                        help="also time greedy batch 1 with these CPU weight formats against fp32")
    parser.add_argument("--vocoder_codes", type=int, default=300, help="latent frames vocoded by BigVGAN")
    parser.add_argument("--e2e_seconds", type=float, nargs="*", default=[10, 60],
                        help="audio lengths of the end-to-end texts (none: skip)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def conditioning_and_mel(gpt, cfg, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Speaker conditioning (1, 32, D) and BigVGAN's reference mel (1, F, 100) of 3 s of noise."""
    mel = MelSpectrogramFeatures.from_config(cfg.dataset.mel).to(device)
    audio = 0.1 * torch.randn(int(cfg.dataset.sample_rate) * 3, generator=torch.Generator().manual_seed(0))
    reference_mel = mel(audio.to(device))  # (1, 100, F)
    with torch.inference_mode():
        lengths = torch.tensor([reference_mel.shape[-1]], device=device)
        conditioning = gpt.get_conditioning(reference_mel.to(dtype), lengths)
    return conditioning, reference_mel.transpose(1, 2)


def run(args, folder: Path | None) -> dict:
    """Every section of the report; ``folder`` is a checkpoint folder of the benchmarked size (or None)."""
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    dtype = dtype_of(precision)
    print(f"device {device}, size {args.size}, GPT {precision}, threads {torch.get_num_threads()}, "
          f"{args.codes} codes per row", flush=True)
    cfg = load_config(folder if folder else RELEASE_CONFIGS[f"IndexTTS-{args.size}"])
    gpt, bigvgan = random_models(cfg, device, dtype)
    conditioning, reference_mel = conditioning_and_mel(gpt, cfg, device, dtype)
    report = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "size": args.size, "precision": precision, "threads": torch.get_num_threads(), "codes": args.codes}
    print("GPT decoding:")
    with torch.inference_mode():
        report["generation"] = bench_generation(gpt, conditioning, args, device)
        if args.cpu_quantization and device.type == "cpu" and precision == "fp32":
            report["cpu_quantization"] = bench_cpu_quantization(gpt, conditioning, args)
    report["vocoder"] = bench_vocoder(bigvgan, cfg, args.vocoder_codes, reference_mel, device)
    del gpt, bigvgan
    if args.e2e_seconds:
        report["end_to_end"] = bench_end_to_end(cfg, folder, args.e2e_seconds, precision, device)
    report["peak_memory_bytes"] = peak_memory_bytes(device)
    return report


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("indextts").setLevel(logging.ERROR)  # every generation runs to the cap on purpose
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temporary:
        needs_folder = args.size == "tiny" or bool(args.e2e_seconds)  # the tiny config comes from its folder
        folder = write_tiny_checkpoints(temporary, seed=0, release=args.size) if needs_folder else None
        report = run(args, folder)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
