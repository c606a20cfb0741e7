"""Training throughput of the LoRA setup on a synthetic batch (random weights; no data or checkpoint needed).

    python benchmarks/bench_train.py                          # tiny and release size, fp32 and bf16, CPU or GPU
    python benchmarks/bench_train.py --sizes release --precisions bf16 --batch_size 16 --steps 20

Each configuration builds UnifiedVoice from its config (tiny: indextts.tiny; release:
indextts/configs/indextts-1.5.yaml) with random weights, adds LoRA (r=16 on the four GPT-2 projections) and
learnable speaker conditions exactly as train.py does, and times full optimizer steps (forward,
backward, LoRA+ AdamW). Reports real tokens/s (sequence positions), samples/s and peak memory
(CUDA: max allocated; CPU: peak resident set size of the process).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from contextlib import nullcontext

import torch
from omegaconf import OmegaConf
from peft.optimizers import create_loraplus_optimizer

from indextts.config import RELEASE_CONFIGS, load_config
from indextts.data import Batch
from indextts.gpt.model import UnifiedVoice
from indextts.lora import LearnedConditions, add_lora, make_lora_config
from indextts.tiny import BPE_VOCAB_SIZE, TINY_MODEL_CONFIG
from indextts.trainer import TrainingModel

RELEASE_CONFIG = str(RELEASE_CONFIGS["IndexTTS-1.5"])


def gpt_config(size: str):
    if size == "release":
        return load_config(RELEASE_CONFIG).gpt
    cfg = OmegaConf.create(TINY_MODEL_CONFIG).gpt
    cfg.number_text_tokens = BPE_VOCAB_SIZE  # the tiny tokenizer's size, filled in when it is trained
    return cfg


def synthetic_batch(cfg, batch_size: int, text_len: int, codes_len: int, generator: torch.Generator) -> Batch:
    """Random ids with lengths spread between 60% and 100% of the maxima (like a length-bucketed batch)."""
    text_len = min(text_len, int(cfg.max_text_tokens))
    codes_len = min(codes_len, int(cfg.max_mel_tokens))
    fractions = torch.linspace(0.6, 1.0, batch_size)
    return Batch(
        text_ids=torch.randint(2, int(cfg.number_text_tokens), (batch_size, text_len), generator=generator),
        text_lengths=(fractions * text_len).long().clamp(min=1),
        codes=torch.randint(0, int(cfg.number_mel_codes) - 2, (batch_size, codes_len), generator=generator),
        code_lengths=(fractions * codes_len).long().clamp(min=1),
        speaker_ids=torch.arange(batch_size) % 2,
    )


def bench(size: str, precision: str, device: torch.device, batch_size: int, text_len: int, codes_len: int,
          steps: int, warmup: int, checkpointing: bool) -> dict:
    torch.manual_seed(0)
    cfg = gpt_config(size)
    gpt = UnifiedVoice(**cfg)
    gpt.set_gradient_checkpointing(checkpointing)
    peft_model = add_lora(gpt, make_lora_config(16, 32, 0.1))
    speakers = LearnedConditions(["a", "b"], torch.randn(2, 32, int(cfg.model_dim)) * 0.1)
    model = TrainingModel(peft_model, speakers).to(device).train()
    optimizer = create_loraplus_optimizer(peft_model, torch.optim.AdamW, lr=1e-4, loraplus_lr_ratio=8.0)
    optimizer.add_param_group({"params": [speakers.latents], "lr": 1e-4, "weight_decay": 0.0})
    batch = synthetic_batch(cfg, batch_size, text_len, codes_len, torch.Generator().manual_seed(0)).to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        with autocast:
            output = model(batch)
        loss = 0.1 * output.text_loss + 0.9 * output.mel_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - started
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"size": size, "precision": precision, "device": str(device), "batch_size": batch_size,
            "text_len": int(batch.text_ids.shape[1]), "codes_len": int(batch.codes.shape[1]),
            "gradient_checkpointing": checkpointing, "steps": steps,
            "step_s": round(elapsed / steps, 4), "tokens_per_s": round(steps * batch.num_tokens / elapsed, 1),
            "samples_per_s": round(steps * batch_size / elapsed, 2), "peak_memory_mib": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "release"], choices=["tiny", "release"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=8, help="utterances per batch")
    parser.add_argument("--text_len", type=int, default=60, help="longest text in tokens")
    parser.add_argument("--codes_len", type=int, default=250, help="longest code sequence (~10 s of audio)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--gradient_checkpointing", action="store_true", help="recompute GPT-2 blocks in backward")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    for size in args.sizes:
        for precision in args.precisions:
            print(json.dumps(bench(size, precision, device, args.batch_size, args.text_len, args.codes_len,
                                   args.steps, args.warmup, args.gradient_checkpointing)), flush=True)


if __name__ == "__main__":
    main()
