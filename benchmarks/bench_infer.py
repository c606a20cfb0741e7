"""Inference speed with random weights: GPT decoding, CPU quantisation, BigVGAN and end to end.

    python benchmarks/bench_infer.py --device cuda --size 1.5 --json infer.json   # the GPU check's run
    python benchmarks/bench_infer.py --device cpu --batch_sizes 1 --modes greedy --codes 60 \\
        --cpu_quantization int8 bf16                                              # CPU int8/bf16 vs fp32
    python benchmarks/bench_infer.py --device cpu --size tiny                      # smoke run (< 40 s)

Models have the sizes of indextts/configs/indextts-1.5.yaml (``--size 1.5``) or of the tiny test
model, with seeded random weights, so nothing is downloaded. ``min_new_tokens = max_new_tokens`` makes
every generation run exactly ``--codes`` steps. Reports (the JSON is rewritten after each section):

- GPT decode codes/s per mode (greedy; sampling; beam3 = 3 beams + repetition penalty 10; default =
  the reference default, sampling + 3 beams + penalty 10), batch size and step variant (CUDA: "graph",
  "eager", and "graph+inductor" for ``--inductor_modes`` at batch 1; CPU: "eager"). Each setting first
  runs once at the timed shapes (every graph bucket is captured, and compiled, there); then 3 interleaved
  pairs of a prompt-pass-only run and the full run: decode codes/s = codes generated after the first /
  (full - prompt pass) seconds, median of the 3; a pair whose decode time is under
  ``MIN_DECODE_SHARE`` of its run is noise, not a rate, and is left out. ``captures_during_timing``
  counts graphs captured while timing (0 when the warm-up did its job);
- with ``--cpu_quantization``: greedy codes/s of the int8 / bf16 GPT against float32 in the same run
  (runs interleaved, medians), and how often the greedy codes agree with float32;
- BigVGAN seconds of audio per second, warmed up at the timed shape, median of 3;
- end to end through ``IndexTTS``, greedy and the reference default separately: real-time factor for a
  text of each ``--e2e_seconds`` length (one sentence per 10 s), after a warm-up run of it (CUDA);
  the time to the first audio sample streamed within the first sentence (``stream(chunk_codes=
  FIRST_AUDIO_CHUNK_CODES)``), and to the first whole sentence;
- peak memory (CUDA: allocated by torch; CPU: the process's peak resident size).

Budget at 1.5 size on one H200 (about 90 s in all, by design; not yet measured there): model set-up
10 s; decoding 35 s (12 graph/eager settings of 8 runs each, eager ~300 codes/s at batch 1); the inductor
step 30 s (one compile, greedy batch 1); BigVGAN 2 s; end to end 15 s (writing and loading a 1.5-size
folder, then 2 modes x 2 texts, each run twice plus two streamed first sentences).
"""

from __future__ import annotations

import argparse
import copy
import logging
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from indextts.atomic_files import write_json_atomic
from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoints import build_model
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.dims import ModelDims
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.gpt.quantize import MODES as QUANTIZATION_MODES
from indextts.gpt.quantize import quantize_for_cpu
from indextts.gpt.step_runner import capture_count
from indextts.runtime import PRECISIONS, dtype_of, resolve_precision
from indextts.tiny import write_tiny_checkpoints

VARIANTS = {"graph": dict(cuda_graph=True), "eager": dict(cuda_graph=False),
            "graph+inductor": dict(cuda_graph=True, compile_backend="inductor")}
REPEATS = 3
MIN_DECODE_SHARE = 0.2
"""A timed pair whose decode time (full run - prompt pass) is under this share of the full run is noise."""
FIRST_AUDIO_CHUNK_CODES = 8
"""Codes per streamed piece of the first sentence when timing the first audio sample."""
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
    dims = ModelDims.from_config(cfg)
    gpt = build_model(dims.gpt).eval()
    bigvgan = build_model(dims.bigvgan).eval()
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


def decode_rate(full_seconds: list[float], prompt_seconds: list[float], decoded_codes: int) -> float | None:
    """Median codes/s after the prompt pass over timed pairs; None when fewer than two pairs hold a real decode.

    A pair whose decode time is under ``MIN_DECODE_SHARE`` of its run (timer noise bigger than the
    decode, or a prompt pass slower than the whole run) gives no rate rather than an absurd one.
    """
    rates = [decoded_codes / (full - prompt) for full, prompt in zip(full_seconds, prompt_seconds)
             if full - prompt >= MIN_DECODE_SHARE * full and decoded_codes > 0]
    return round(statistics.median(rates), 2) if len(rates) >= 2 else None


def generation_row(gpt, conditioning, text_len: int, codes: int, mode: str, batch: int, variant: str,
                   device) -> dict:
    """Decode codes/s of one (mode, batch, variant) setting, timed after a warm-up at the timed shapes."""
    text_ids, lengths = text_batch(batch, text_len, device, gpt.number_text_tokens)
    rows = conditioning.expand(batch, -1, -1)
    timed = fixed_length(MODES[mode], codes, **VARIANTS[variant])
    prompt_only = fixed_length(MODES[mode], 1, cuda_graph=False)  # prefill alone: no bucket, no capture
    for config in (prompt_only, timed):
        timed_generation(gpt, rows, text_ids, lengths, config, device)
    captures = capture_count(gpt)
    full_seconds, prompt_seconds = [], []
    for _ in range(REPEATS):  # interleaved, so a slow moment hits both runs of a pair
        prompt_seconds.append(timed_generation(gpt, rows, text_ids, lengths, prompt_only, device)[0])
        seconds, out = timed_generation(gpt, rows, text_ids, lengths, timed, device)
        full_seconds.append(seconds)
    produced = sum(len(o) for o in out)
    rate = decode_rate(full_seconds, prompt_seconds, produced - batch)
    row = {"mode": mode, "batch": batch, "variant": variant, "cuda_graph": VARIANTS[variant]["cuda_graph"],
           "codes": produced, "seconds": round(statistics.median(full_seconds), 4),
           "prompt_seconds": round(statistics.median(prompt_seconds), 4),
           "codes_per_s": round(produced / statistics.median(full_seconds), 2), "decode_codes_per_s": rate,
           "captures_during_timing": capture_count(gpt) - captures}
    print(f"  {mode:7s} batch {batch:3d} {variant:14s}: {rate} codes/s decoding, {row['codes_per_s']:9.1f} "
          f"overall, prompt pass {row['prompt_seconds']:.3f} s, {row['captures_during_timing']} captures "
          "while timing", flush=True)
    return row


def _variants(args, device, mode: str, batch: int) -> list[str]:
    if device.type != "cuda":
        return ["eager"]
    return ["graph", "eager"] + (["graph+inductor"] if batch == 1 and mode in args.inductor_modes else [])


def bench_generation(gpt, conditioning, args, device) -> list[dict]:
    rows = []
    for mode in args.modes:
        for batch in args.batch_sizes:
            for variant in _variants(args, device, mode, batch):
                try:
                    rows.append(generation_row(gpt, conditioning, args.text_len, args.codes, mode, batch, variant,
                                               device))
                except Exception as error:  # noqa: BLE001 - an optional compiler failing must not lose the rest
                    if variant != "graph+inductor":
                        raise
                    rows.append({"mode": mode, "batch": batch, "variant": variant,
                                 "error": f"{type(error).__name__}: {error}"[:500]})
    return rows


def inductor_verdict(rows: list[dict]) -> dict | None:
    """Whether the inductor-compiled step inside the graph beats the plain graph (greedy, batch 1)."""
    rates = {row["variant"]: row["decode_codes_per_s"] for row in rows if row["mode"] == "greedy" and row["batch"] == 1}
    if not rates.get("graph+inductor") or not rates.get("graph"):
        return None
    speedup = round(rates["graph+inductor"] / rates["graph"], 3)
    return {"speedup_over_graph": speedup, "helps": speedup > 1.0}


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
    """BigVGAN audio seconds per second over ``vocoder_codes`` frames: warmed up at that shape, median of 3."""
    latents = torch.randn(1, vocoder_codes, int(cfg.gpt.model_dim), device=device)
    audio_seconds = vocoder_codes * int(cfg.gpt.mel_length_compression) / int(cfg.dataset.sample_rate)
    times = []
    with torch.inference_mode():
        bigvgan(latents, reference_mel)
        for _ in range(REPEATS):
            synchronize(device)
            start = time.perf_counter()
            bigvgan(latents, reference_mel)
            synchronize(device)
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    print(f"  BigVGAN: {audio_seconds / seconds:.2f} s of audio per s ({audio_seconds:.2f} s in {seconds:.3f} s)")
    return {"audio_seconds": round(audio_seconds, 3), "seconds": round(seconds, 4),
            "audio_per_second": round(audio_seconds / seconds, 3)}


def _seconds_to_first(chunks, wanted) -> float:
    """Seconds until ``chunks`` (a fresh ``IndexTTS.stream`` iterator) gives a chunk ``wanted`` accepts."""
    start = time.perf_counter()
    try:
        for chunk in chunks:
            if wanted(chunk):
                return time.perf_counter() - start
    finally:
        chunks.close()
    raise RuntimeError("the stream ended before the chunk the benchmark waits for")


def _end_to_end_row(tts, text: str, reference: Path, options, device) -> dict:
    """RTF of one synthesis (after a warm-up run of it on CUDA); times to the first audio sample and sentence.

    The warm-ups capture the graph buckets and let cuDNN meet the vocoder's shapes; the CPU has neither,
    so the smoke run skips them.
    """
    warm_up = device.type == "cuda"
    if warm_up:
        tts.synthesize(text, reference_audio=reference, options=options)
    synchronize(device)
    start = time.perf_counter()
    result = tts.synthesize(text, reference_audio=reference, options=options)
    synchronize(device)
    seconds = time.perf_counter() - start
    audio_seconds = len(result.waveform) / result.sample_rate

    def first_sentence_pieces():
        return tts.stream(text, reference_audio=reference, options=options, chunk_codes=FIRST_AUDIO_CHUNK_CODES)

    if warm_up:
        _seconds_to_first(first_sentence_pieces(), lambda chunk: chunk.final)
    first_audio = _seconds_to_first(first_sentence_pieces(), lambda chunk: len(chunk.waveform) > 0)
    first_sentence = _seconds_to_first(tts.stream(text, reference_audio=reference, options=options),
                                       lambda chunk: True)
    return {"sentences": len(result.sentences), "audio_seconds": round(audio_seconds, 3),
            "seconds": round(seconds, 4), "rtf": round(seconds / audio_seconds, 5),
            "first_audio_seconds": round(first_audio, 4), "first_sentence_seconds": round(first_sentence, 4)}


def bench_end_to_end(cfg, folder: Path, args, precision: str, device) -> list[dict]:
    """RTF of ``IndexTTS`` (greedy, and the reference default) for texts of the given audio lengths."""
    import soundfile

    from indextts.inference import IndexTTS
    from indextts.inference.synthesis import SynthesisOptions

    sample_rate = int(cfg.dataset.sample_rate)
    reference = folder / "reference.wav"
    noise = np.random.default_rng(0).standard_normal(sample_rate * 3).astype(np.float32)
    soundfile.write(reference, 0.1 * noise, sample_rate)
    tts = IndexTTS.from_pretrained(folder, device=str(device), precision=precision)
    codes_per_second = sample_rate / int(cfg.gpt.mel_length_compression)
    rows = []
    for target in args.e2e_seconds:
        sentences = max(1, round(target / SECONDS_PER_SENTENCE))
        codes = round(min(target, SECONDS_PER_SENTENCE) * codes_per_second)
        for mode in args.e2e_modes:
            options = SynthesisOptions(generation=fixed_length(MODES[mode], codes), silence_trimming="off")
            row = {"target_seconds": target, "mode": mode,
                   **_end_to_end_row(tts, " ".join([SENTENCE] * sentences), reference, options, device)}
            print(f"  end to end {target:g} s, {mode}: RTF {row['rtf']:.4f} ({row['audio_seconds']:.1f} s of audio "
                  f"in {row['seconds']:.2f} s), first audio after {row['first_audio_seconds']:.3f} s, first "
                  f"sentence after {row['first_sentence_seconds']:.3f} s", flush=True)
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
    parser.add_argument("--inductor_modes", nargs="*", choices=list(MODES), default=["greedy"],
                        help="on CUDA, also time these modes at batch 1 with the step compiled by inductor inside "
                             "the graph (none: skip)")
    parser.add_argument("--cpu_quantization", nargs="*", choices=QUANTIZATION_MODES, default=[],
                        help="also time greedy batch 1 with these CPU weight formats against fp32")
    parser.add_argument("--vocoder_codes", type=int, default=300, help="latent frames vocoded by BigVGAN")
    parser.add_argument("--e2e_seconds", type=float, nargs="*", default=[10, 60],
                        help="audio lengths of the end-to-end texts (none: skip)")
    parser.add_argument("--e2e_modes", nargs="+", choices=list(MODES), default=["greedy", "default"],
                        help="decoding modes of the end-to-end runs (greedy batch 1 is the RTF target's)")
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
        report["inductor"] = inductor_verdict(report["generation"])
        save_report(report, args.json, device)
        if args.cpu_quantization and device.type == "cpu" and precision == "fp32":
            report["cpu_quantization"] = bench_cpu_quantization(gpt, conditioning, args)
    report["vocoder"] = bench_vocoder(bigvgan, cfg, args.vocoder_codes, reference_mel, device)
    save_report(report, args.json, device)
    del gpt, bigvgan
    if args.e2e_seconds:
        report["end_to_end"] = bench_end_to_end(cfg, folder, args, precision, device)
    save_report(report, args.json, device)
    return report


def save_report(report: dict, path: Path | None, device) -> None:
    """Rewrite the JSON (with the peak memory so far) after each section: a timeout keeps what is done."""
    report["peak_memory_bytes"] = peak_memory_bytes(device)
    if path:
        write_json_atomic(path, report, sync=False)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.getLogger("indextts").setLevel(logging.ERROR)  # every generation runs to the cap on purpose
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as temporary:
        needs_folder = args.size == "tiny" or bool(args.e2e_seconds)  # the tiny config comes from its folder
        folder = write_tiny_checkpoints(temporary, seed=0, release=args.size) if needs_folder else None
        return run(args, folder)


if __name__ == "__main__":
    main()
