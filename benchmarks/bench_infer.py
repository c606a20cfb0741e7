"""Inference speed with release-size random weights: GPT decoding, BigVGAN and end to end.

    python benchmarks/bench_infer.py                                 # CPU defaults: a few minutes on 2 cores
    python benchmarks/bench_infer.py --device cuda --codes 300 --vocoder_codes 300
    python benchmarks/bench_infer.py --batch_sizes 1 --modes greedy --codes 8   # quick look

Models are built from indextts/configs/indextts-1.5.yaml (IndexTTS-1.5 sizes) with random weights, so no
download is needed. The stop code's logit is pushed to -1e4 so that every generation runs exactly
``--codes`` steps and runs compare. Reports:

- GPT codes/s for greedy decoding, sampling (top-k 30, top-p 0.8) and beam search (3 beams,
  repetition penalty 10, sampling off) at each batch size: generated codes of all rows divided by
  the wall time of ``generate_codes`` (overall, prompt pass included), and the decoding rate
  after the prompt pass (from a one-code run that times the prompt pass);
- BigVGAN seconds of audio per second;
- end-to-end real-time factor of ``IndexTTS.synthesize`` with the reference defaults (sampling +
  3 beams + repetition penalty 10) on a two-sentence text.

Reference points (reference implementation, 2-core CPU, fp32, release-1.5 size): greedy 5.6 codes/s,
beam-3 with repetition penalty 2.0 codes/s.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoints import build_model
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.infer import IndexTTS, SynthesisOptions, Voice, default_dtype
from indextts.tiny import train_tiny_bpe
from indextts.text import TextTokenizer

NEVER = -1.0e4
"""Logit bias that keeps the random GPT from ever choosing the stop code."""

MODES = {
    "greedy": GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0),
    "sample": GenerationConfig(do_sample=True, num_beams=1, top_k=30, top_p=0.8,
                               repetition_penalty=1.0),
    "beam3": GenerationConfig(do_sample=False, num_beams=3, repetition_penalty=10.0),
}
E2E_TEXT = "今天天气很好，我们一起去公园散步吧。The weather is lovely this morning, so we walk to the park."


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_models(config_path: str, device: torch.device, dtype: torch.dtype):
    """Release-size GPT (stop code disabled) and BigVGAN with seeded random weights."""
    cfg = load_config(config_path)
    torch.manual_seed(0)
    gpt = build_model("gpt", cfg).eval()
    with torch.no_grad():
        gpt.mel_head.bias[gpt.stop_mel_token] = NEVER
    bigvgan = build_model("bigvgan", cfg).eval()
    return cfg, gpt.to(device, dtype), bigvgan.to(device)


def timed_generation(gpt, rows, text_ids, lengths, config: GenerationConfig, device) -> tuple[float, int]:
    """Seconds and number of codes of one ``generate_codes`` call."""
    synchronize(device)
    start = time.perf_counter()
    out = generate_codes(gpt, rows, text_ids, lengths, config)
    synchronize(device)
    return time.perf_counter() - start, sum(len(o) for o in out)


def bench_generation(gpt, conditioning: torch.Tensor, text_len: int, codes: int, batch_sizes, modes, device):
    """Codes/s per (mode, batch size), with and without the prompt pass.

    A one-code run (which also warms up) times the prompt pass; the decode rate is the extra
    codes of the full run over its extra time.
    """
    results = []
    warm_ids = torch.randint(2, 1000, (1, text_len)).to(device)
    generate_codes(gpt, conditioning, warm_ids, torch.tensor([text_len], device=device),
                   replace(MODES["greedy"], max_new_tokens=2))  # first-call costs stay out of the figures
    for mode in modes:
        for batch in batch_sizes:
            generator = torch.Generator().manual_seed(batch)
            text_ids = torch.randint(2, 1000, (batch, text_len), generator=generator).to(device)
            lengths = torch.full((batch,), text_len, device=device)
            rows = conditioning.expand(batch, -1, -1)
            prompt_seconds, _ = timed_generation(gpt, rows, text_ids, lengths,
                                                 replace(MODES[mode], max_new_tokens=1, seed=0), device)
            seconds, produced = timed_generation(gpt, rows, text_ids, lengths,
                                                 replace(MODES[mode], max_new_tokens=codes, seed=0), device)
            decode_rate = (produced - batch) / max(seconds - prompt_seconds, 1e-9)
            results.append({"mode": mode, "batch": batch, "codes": produced, "seconds": round(seconds, 3),
                            "prompt_seconds": round(prompt_seconds, 3), "codes_per_s": round(produced / seconds, 2),
                            "decode_codes_per_s": round(decode_rate, 2)})
            print(f"  {mode:6s} batch {batch:3d}: {produced / seconds:8.1f} codes/s overall, "
                  f"{decode_rate:8.1f} codes/s decoding ({decode_rate / batch:.1f} per row), "
                  f"prompt pass {prompt_seconds:.2f} s", flush=True)
    return results


def bench_vocoder(bigvgan, cfg, vocoder_codes: int, reference_mel: torch.Tensor, device, dtype) -> dict:
    latents = torch.randn(1, vocoder_codes, int(cfg.gpt.model_dim), device=device)
    audio_seconds = vocoder_codes * int(cfg.gpt.mel_length_compression) / int(cfg.dataset.sample_rate)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        bigvgan(latents[:, :4], reference_mel)
        synchronize(device)
        start = time.perf_counter()
        bigvgan(latents, reference_mel)
        synchronize(device)
    seconds = time.perf_counter() - start
    print(f"  BigVGAN: {audio_seconds / seconds:.2f} s of audio per s ({audio_seconds:.2f} s in {seconds:.2f} s)")
    return {"audio_seconds": round(audio_seconds, 3), "seconds": round(seconds, 3),
            "audio_per_second": round(audio_seconds / seconds, 3)}


def bench_end_to_end(tts: IndexTTS, codes: int) -> dict:
    options = SynthesisOptions(GenerationConfig(max_new_tokens=codes, seed=0), max_silence_codes=-1)
    warmup = replace(options, generation=replace(options.generation, max_new_tokens=2))
    tts.synthesize(E2E_TEXT, speaker="bench", options=warmup)
    result = tts.synthesize(E2E_TEXT, speaker="bench", options=options)
    print("  end to end (sampling + 3 beams + repetition penalty 10):")
    print("    " + result.timings.summary().replace("\n", "\n    "))
    timings = result.timings
    return {"sentences": len(result.sentences), "codes": timings.num_codes,
            "audio_seconds": round(timings.audio_seconds, 3), "seconds": round(timings.total, 3),
            "rtf": round(timings.rtf, 4), "stages": {k: round(getattr(timings, k), 3) for k in
                                                     ("text", "conditioning", "generation", "latents", "vocoder")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(RELEASE_CONFIGS["IndexTTS-1.5"]), help="model config giving the sizes")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                        help="weight precision (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--codes", type=int, default=16, help="codes generated per row in every run")
    parser.add_argument("--text_len", type=int, default=24, help="text tokens per row")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 4, 16], help="batch sizes to time")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=list(MODES), help="decoding modes")
    parser.add_argument("--vocoder_codes", type=int, default=64, help="latent frames vocoded by BigVGAN")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    # Every generation here runs to the code cap on purpose; the "sentence was cut" warning is noise.
    logging.getLogger("indextts.infer").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else default_dtype(device)
    print(f"device {device}, dtype {dtype}, threads {torch.get_num_threads()}, {args.codes} codes per row")

    start = time.perf_counter()
    cfg, gpt, bigvgan = random_models(args.config, device, dtype)
    print(f"built random release-size models in {time.perf_counter() - start:.1f} s", flush=True)
    mel = MelSpectrogramFeatures.from_config(cfg.dataset.mel).to(device)
    reference_audio = 0.1 * torch.randn(int(cfg.dataset.sample_rate) * 3, generator=torch.Generator().manual_seed(0))
    reference_mel = mel(reference_audio.to(device))  # (1, 100, F)
    with torch.inference_mode():
        lengths = torch.tensor([reference_mel.shape[-1]], device=device)
        conditioning = gpt.get_conditioning(reference_mel.to(dtype), lengths)

    report = {"device": str(device), "dtype": str(dtype), "threads": torch.get_num_threads(), "codes": args.codes}
    print("GPT decoding:")
    with torch.inference_mode():
        report["generation"] = bench_generation(gpt, conditioning, args.text_len, args.codes, args.batch_sizes,
                                                args.modes, device)
    report["vocoder"] = bench_vocoder(bigvgan, cfg, args.vocoder_codes, reference_mel.transpose(1, 2), device, dtype)
    with tempfile.TemporaryDirectory() as folder:
        bpe = Path(folder) / "bpe.model"
        bpe.write_bytes(train_tiny_bpe())
        voice = Voice(conditioning[0], reference_mel[0].transpose(0, 1))
        tts = IndexTTS.from_modules(cfg, gpt, bigvgan, TextTokenizer(bpe), {"bench": voice}, device=device, dtype=dtype)
        report["end_to_end"] = bench_end_to_end(tts, args.codes)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
