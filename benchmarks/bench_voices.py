"""Many voices on one base: voice switch time, memory per added voice, and the per-row LoRA alternative.

    python benchmarks/bench_voices.py --size 1.5 --device cpu --json voices.json
    python benchmarks/bench_voices.py --size tiny --voices 3 --switches 4      # quick look

The GPT is built with random weights (IndexTTS-1.5 sizes from indextts/configs/indextts-1.5.yaml,
or the tiny test model). Each voice is a fake adapter of the real shapes: LoRA factors of rank
``--rank`` on every targeted GPT-2 weight (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj), plus
one speaker's (32, D) conditioning and (F, 100) reference mel. Reports:

- memory per added voice (its LoRA factors and speaker tensors, and the process's resident-memory
  growth), and the one-time copy of the touched base weights that makes switching exact;
- voice switch time (take one run's patch off the base, put another's on), median of ``--switches``;
- the alternative, unmerged per-row LoRA: one GPT-2 step over a new token at batch 1 and 8 with
  PEFT's unmerged adapter layers, against the same step on the plain (merged) base;
- the drift of the other exact-reversibility option, unmerging by subtraction, after 20 switches.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from indextts.inference.adapters import LowRankDelta, WeightPatch
from indextts.checkpoints import build_model
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.dims import GPTDims
from indextts.lora import (
    DEFAULT_TARGETS,
    TrainedSpeaker,
    add_lora,
    lora_target_pattern,
    make_lora_config,
)
from indextts.runtime import dtype_of, resolve_device, resolve_precision
from indextts.tiny import write_tiny_checkpoints
from indextts.inference.voices import PatchedWeights, VoiceLibrary, VoiceSource

REFERENCE_FRAMES = 300


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resident_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0
    return pages * 4096


def random_gpt(size: str, device: torch.device, dtype: torch.dtype):
    """A UnifiedVoice of the release (or tiny) sizes with seeded random weights."""
    if size == "tiny":
        with tempfile.TemporaryDirectory() as folder:
            cfg = load_config(write_tiny_checkpoints(folder))
    else:
        cfg = load_config(RELEASE_CONFIGS[f"IndexTTS-{size}"])
    torch.manual_seed(0)
    return build_model(GPTDims.from_config(cfg)).eval().to(device, dtype)


def fake_patch(gpt, rank: int, seed: int) -> WeightPatch:
    """LoRA factors of rank ``rank`` for every targeted GPT-2 weight (Conv1D: weight (in, out))."""
    generator = torch.Generator().manual_seed(seed)
    pattern = lora_target_pattern(DEFAULT_TARGETS)
    patch = WeightPatch()
    for name, module in gpt.named_modules():
        if re.fullmatch(pattern, name):
            fan_in, fan_out = module.weight.shape
            patch.low_rank[f"{name}.weight"] = LowRankDelta(
                torch.randn(rank, fan_in, generator=generator) * 0.01,
                torch.randn(fan_out, rank, generator=generator) * 0.01, 2.0, True)
    return patch


def fake_speaker(dim: int, seed: int) -> dict[str, TrainedSpeaker]:
    generator = torch.Generator().manual_seed(seed)
    return {"speaker": TrainedSpeaker(torch.randn(32, dim, generator=generator),
                                      torch.randn(100, REFERENCE_FRAMES, generator=generator))}


def bench_switching(gpt, voices: int, rank: int, switches: int, device: torch.device) -> dict:
    """Memory per added voice and the median time of one voice switch."""
    library, weights = VoiceLibrary(), PatchedWeights(gpt)
    before = resident_bytes()
    for i in range(voices):
        library.add(VoiceSource(f"voice{i}", Path("."), fake_speaker(gpt.model_dim, i), None, fake_patch(gpt, rank, i)))
    added = resident_bytes() - before
    patch_bytes = [s.patch.nbytes for s in library.sources.values()]
    speaker_bytes = [sum(t.numel() * t.element_size() for sp in s.speakers.values()
                         for t in (sp.condition, sp.reference_mel)) for s in library.sources.values()]
    names = list(library.sources)
    weights.activate(names[0], library.sources[names[0]].patch)  # takes the one-time copy of the base
    times = []
    for i in range(switches):
        name = names[(i + 1) % len(names)]
        synchronize(device)
        start = time.perf_counter()
        weights.activate(name, library.sources[name].patch)
        synchronize(device)
        times.append(time.perf_counter() - start)
    weights.restore()
    return {"voices": voices, "rank": rank, "switch_seconds_median": statistics.median(times),
            "switch_seconds_all": times, "adapter_bytes_per_voice": statistics.mean(patch_bytes),
            "speaker_bytes_per_voice": statistics.mean(speaker_bytes),
            "resident_bytes_per_voice": added / voices, "kept_base_bytes_once": weights.kept_bytes}


def subtraction_drift(gpt, patch: WeightPatch, rounds: int = 20) -> float:
    """Largest |W - W0| after ``rounds`` of adding and subtracting the delta in the model's dtype."""
    name, low_rank = next(iter(patch.low_rank.items()))
    weight = dict(gpt.named_parameters())[name].detach()
    original, current = weight.clone(), weight.clone()
    delta = low_rank.delta().to(weight.device, weight.dtype)
    for _ in range(rounds):
        current = (current + delta) - delta
    return float((current.float() - original.float()).abs().max())


def step_seconds(gpt, batch: int, repeats: int, device: torch.device) -> float:
    """Median seconds of one GPT-2 forward over one new token per row (the weights dominate a decode step)."""
    embeddings = torch.randn(batch, 1, gpt.model_dim, device=device, dtype=next(gpt.parameters()).dtype)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            synchronize(device)
            start = time.perf_counter()
            gpt.gpt(inputs_embeds=embeddings, use_cache=False)
            synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def bench_per_row_lora(gpt, rank: int, repeats: int, device: torch.device) -> dict:
    """A decode-like step on the plain base vs with PEFT's unmerged LoRA layers (wraps ``gpt`` in place)."""
    merged = {batch: step_seconds(gpt, batch, repeats, device) for batch in (1, 8)}
    add_lora(gpt, make_lora_config(rank, 2 * rank, 0.0))
    unmerged = {batch: step_seconds(gpt, batch, repeats, device) for batch in (1, 8)}
    return {f"batch{b}": {"merged_step_seconds": merged[b], "unmerged_lora_step_seconds": unmerged[b],
                          "unmerged_overhead": unmerged[b] / merged[b] - 1.0} for b in merged}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "1.5", "1.0"], default="1.5")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", help="fp32 | bf16 | fp16 | auto (fp16 on CUDA)")
    parser.add_argument("--voices", type=int, default=4, help="fake adapters added to the base")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (train.yaml default: 16)")
    parser.add_argument("--switches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timed decode-like steps per setting")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    torch.set_grad_enabled(False)
    gpt = random_gpt(args.size, device, dtype_of(precision))
    switching = bench_switching(gpt, args.voices, args.rank, args.switches, device)
    drift = subtraction_drift(gpt, fake_patch(gpt, args.rank, 0))
    per_row = bench_per_row_lora(gpt, args.rank, args.repeats, device)
    results = {"size": args.size, "device": str(device), "precision": precision, "threads": torch.get_num_threads(),
               "machine": platform.processor() or platform.machine(),
               "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "switching": switching, "unmerge_by_subtraction_max_drift_after_20": drift, "per_row_lora": per_row}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
