"""LoRA training throughput, MFU and peak memory of the real training step at several token budgets.

    python benchmarks/bench_train.py --device cpu --size tiny --json out.json
    python benchmarks/bench_train.py --device cuda --size 1.5 --budgets 4k,16k,auto --json out.json
    python benchmarks/bench_train.py --device cuda --family 2 --size release --json out.json

The model is ``--family``'s GPT with random weights at the chosen size, wrapped exactly as train.py
wraps it (``TrainingModel`` with its family, PEFT LoRA r=16 on the four GPT-2 projections, learned
speaker conditions, LoRA+ AdamW, fused on CUDA), and each optimizer step runs through
``indextts.training.step.TrainStepRunner`` (the trainer's own step: device-side losses, OOM split,
clipping, schedule). Sizes: IndexTTS 1.5's UnifiedVoice at tiny (indextts.tiny) or release size
(``1.5`` or ``release``: indextts/configs/indextts-1.5.yaml); IndexTTS-2/2.5's UnifiedVoiceV2 at tiny
(indextts.v2.tiny's sizes) or release size (2: indextts/configs/indextts-2.yaml; 2.5: the config the
state-dict manifest derives, as benchmarks/v2_bench_folder.py reads it). Batches are synthetic,
length-bucketed (lengths spread between 60% and 100% of ``--text_len``/``--codes_len``) and fill the
budget; IndexTTS-2/2.5 batches carry random emotion vectors, 2.5's random language ids.

Figures per budget: ``tokens_per_s`` (real, unpadded sequence positions per second, the family's
conditioning prefix counted: 32 rows for 1.5, 34 for IndexTTS-2, 3 for 2.5),
``step_s``, ``peak_memory_mib`` (CUDA: max allocated; CPU: peak RSS of the process) and ``mfu``.

MFU counts the FLOPs a LoRA step really needs, not 6 x params x tokens (that would count weight
gradients of the frozen base, which are never computed). Per real token of a row of length S:

    4 * P_frozen        forward (2 per weight) + input gradient (2) of every frozen GPT-2 block matmul
    6 * P_lora          forward, input gradient and weight gradient of the LoRA A and B matrices
    12 * layers * d * S attention scores and values, forward + backward (PaLM-style, no causal discount)
                        (S counts the family's prefix rows)
    4 * d * V_head      the text head on text positions, the mel head on mel positions (frozen: no weight grad)

MFU = FLOPs per second / peak dense bf16 (or fp32) FLOPs of the device (known GPUs, or --peak_tflops).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

from dataclasses import dataclass

import torch
from omegaconf import OmegaConf

from indextts.config import RELEASE_CONFIGS, load_config
from indextts.dims import GPTDims
from indextts.families import FAMILIES, Family
from indextts.gpt.model import UnifiedVoice
from indextts.lora import LearnedConditions, add_lora, make_lora_config
from indextts.runtime import DistributedContext, resolve_precision, reuse_freed_host_memory
from indextts.tiny import BPE_VOCAB_SIZE, TINY_MODEL_CONFIG
from indextts.training.config import load_train_config
from indextts.training.data import CONDITION_LATENTS, Batch, sequence_length, v2_defaults
from indextts.training.memory import auto_token_budget
from indextts.training.model import TrainingModel, build_optimizer, build_scheduler, prefix_rows
from indextts.training.progress import LossWindow
from indextts.training.step import TrainStepRunner, compute_loss
from indextts.v2.gpt.dims import GPTV2Dims
from indextts.v2.gpt.model import UnifiedVoiceV2
from indextts.v2.tiny import SIZES_FILE as V2_SIZES_FILE
from indextts.v2.tiny import tiny_model_config
from v2_bench_folder import release_config  # a sibling script module (benchmarks/ is on sys.path when run)

BENCH_FAMILIES = ("1.5", "2", "2.5")

PEAK_TFLOPS = {"H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}, "H200": {"bf16": 989.0, "fp16": 989.0,
                                                                                "fp32": 67.0},
               "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}}


@dataclass(frozen=True)
class BenchModel:
    """The GPT under test and what the figures need of it."""

    family: Family
    gpt: UnifiedVoice
    """UnifiedVoice (IndexTTS 1.5) or UnifiedVoiceV2 (IndexTTS-2/2.5), random weights."""
    condition_rows: int
    """Rows of one speaker's condition: 32 latents, or 2.5's one CAMPPlus row."""
    max_text_tokens: int
    max_mel_tokens: int

    @property
    def prefix_rows(self) -> int:
        return prefix_rows(self.family, self.condition_rows)


def model_config(family: Family, size: str):
    """The whole model config of ``family`` at ``size`` (tiny, or release: "1.5" or "release")."""
    if family.generation == 2:
        if size == "tiny":
            return tiny_model_config(OmegaConf.load(V2_SIZES_FILE), family, BPE_VOCAB_SIZE)
        return OmegaConf.create(release_config(family.version))
    if size == "tiny":
        cfg = OmegaConf.create(TINY_MODEL_CONFIG)
        cfg.gpt.number_text_tokens = BPE_VOCAB_SIZE  # the tiny tokenizer's size, filled in when it is trained
        return cfg
    return load_config(RELEASE_CONFIGS["IndexTTS-1.5"])


def build_model(family: Family, size: str) -> BenchModel:
    """``family``'s GPT at ``size`` with random weights (seeded by the caller)."""
    cfg = model_config(family, size)
    if family.generation == 2:
        dims = GPTV2Dims.from_config(cfg)
        gpt, rows = UnifiedVoiceV2(dims), 1 if dims.uses_campplus else dims.condition_num_latent
    else:
        gpt, rows = UnifiedVoice(GPTDims.from_section(cfg.gpt)), CONDITION_LATENTS
    return BenchModel(family, gpt, rows, int(cfg.gpt.max_text_tokens), int(cfg.gpt.max_mel_tokens))


def synthetic_batch(model: BenchModel, rows: int, text_len: int, codes_len: int,
                    generator: torch.Generator) -> Batch:
    """Random ids, lengths spread between 60% and 100% of the maxima (like a length-bucketed batch);
    IndexTTS-2/2.5: random emotion vectors (rows, D), 2.5: random language ids."""
    gpt, fractions = model.gpt, torch.linspace(0.6, 1.0, rows)
    emotions, languages, conditions = v2_defaults(rows)
    if model.family.generation == 2:
        emotions = 0.1 * torch.randn(rows, gpt.model_dim, generator=generator)
    if model.family.multilingual:
        languages = torch.randint(0, gpt.lang_embedding.num_embeddings, (rows,), generator=generator)
    return Batch(
        text_ids=torch.randint(2, gpt.text_vocab_size, (rows, text_len), generator=generator),
        text_lengths=(fractions * text_len).long().clamp(min=1),
        codes=torch.randint(0, gpt.mel_head.out_features - 2, (rows, codes_len), generator=generator),
        code_lengths=(fractions * codes_len).long().clamp(min=1),
        speaker_ids=torch.arange(rows) % 2, example_indices=torch.arange(rows),
        emotions=emotions, languages=languages, conditions=conditions)


def step_flops(model: BenchModel, frozen_block_params: int, lora_params: int, batch: Batch) -> float:
    """Model FLOPs of one forward + backward of ``batch`` under LoRA (see the module docstring)."""
    gpt = model.gpt
    layers, dim = len(gpt.gpt.h), gpt.model_dim
    condition = sequence_length(0, 0, model.prefix_rows)  # conditioning prefix + start/stop tokens
    total = 0.0
    for text, codes in zip(batch.text_lengths.tolist(), batch.code_lengths.tolist()):
        length = condition + text + codes
        total += length * (4 * frozen_block_params + 6 * lora_params + 12 * layers * dim * length)
        total += 4 * dim * ((text + 1) * gpt.text_vocab_size + (codes + 1) * gpt.mel_head.out_features)
    return total


def build_runner(model: BenchModel, device: torch.device, precision: str, checkpointing: bool):
    """(TrainStepRunner over the LoRA-wrapped ``model``, frozen block params, LoRA params), as train.py builds it."""
    settings = load_train_config().train
    gpt = model.gpt
    gpt.set_gradient_checkpointing(checkpointing)
    frozen = sum(p.numel() for n, p in gpt.gpt.h.named_parameters() if p.dim() == 2)
    peft_model = add_lora(gpt, make_lora_config(16, 32, 0.1))
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    speakers = LearnedConditions(["a", "b"], torch.randn(2, model.condition_rows, gpt.model_dim) * 0.1)
    training = TrainingModel(peft_model, speakers, model.family).to(device).train()
    optimizer = build_optimizer(peft_model, speakers, settings, device)
    context = DistributedContext(0, 1, device)
    runner = TrainStepRunner(training, training, training, context, precision, settings.text_weight,
                             settings.grad_clip, optimizer, build_scheduler(optimizer, settings, 10_000),
                             torch.amp.GradScaler(device.type, enabled=precision == "fp16"), LossWindow(device), [])
    return runner, frozen, lora


def resolve_budget(name: str, runner: TrainStepRunner, model: BenchModel, text_len: int, codes_len: int,
                   cpu_budget: int) -> int:
    """Tokens per micro-batch: a number ("4k", "16000"), or "auto" measured as the trainer measures it."""
    if name != "auto":
        return int(float(name.lower().rstrip("k")) * 1000) if name.lower().endswith("k") else int(name)

    def probe(batch: Batch) -> None:
        loss, _ = compute_loss(runner.model, batch, runner.device, runner.precision, runner.text_weight)
        loss.backward()
        runner.model.zero_grad(set_to_none=True)

    emotion_dim = model.gpt.model_dim if model.family.generation == 2 else 0
    return auto_token_budget(runner.device, probe, text_len, codes_len, 0.7, cpu_budget, emotion_dim, model.prefix_rows)


def peak_flops(device: torch.device, precision: str, override: float | None) -> float | None:
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((table[precision] * 1e12 for key, table in PEAK_TFLOPS.items() if key in name), None)


def measure(runner: TrainStepRunner, batch: Batch, steps: int, warmup: int) -> float:
    """Seconds per optimizer step (one micro-batch per step), after ``warmup`` untimed steps."""
    device = runner.device
    for index in range(warmup + steps):
        if index == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
        runner.window.add_losses(runner.backward(batch, 1.0, True), batch.real_size(runner.model.prefix_rows))
        runner.update()
    runner.window.summary(runner.all_reduce, 1)  # the only host sync, as in training
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / steps


def bench_budget(args, runner: TrainStepRunner, model: BenchModel, frozen: int, lora: int, budget_name: str) -> dict:
    text_len = min(args.text_len, model.max_text_tokens)
    codes_len = min(args.codes_len, model.max_mel_tokens)
    budget = resolve_budget(budget_name, runner, model, text_len, codes_len, args.cpu_budget)
    rows = max(1, budget // sequence_length(text_len, codes_len, model.prefix_rows))
    batch = synthetic_batch(model, rows, text_len, codes_len, torch.Generator().manual_seed(0))
    if runner.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runner.device)
    step_s = measure(runner, batch, args.steps, args.warmup)
    peak = (torch.cuda.max_memory_allocated(runner.device) if runner.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    flops = step_flops(model, frozen, lora, batch) / step_s
    device_peak = peak_flops(runner.device, runner.precision, args.peak_tflops)
    return {"budget": budget_name, "max_tokens": budget, "rows": rows,
            "padded_tokens": batch.padded_size(model.prefix_rows), "step_s": round(step_s, 4),
            "tokens_per_s": round(batch.real_size(model.prefix_rows) / step_s, 1),
            "tflops": round(flops / 1e12, 3), "mfu": round(flops / device_peak, 4) if device_peak else None,
            "peak_memory_mib": round(peak / 2**20, 1)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--family", default="1.5", choices=BENCH_FAMILIES, help="the GPT of IndexTTS 1.5, 2 or 2.5")
    parser.add_argument("--size", default="tiny", choices=["tiny", "release", "1.5"],
                        help="tiny, or the family's release size (1.5: the same, for IndexTTS 1.5 only)")
    parser.add_argument("--precision", default="auto", help="auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16")
    parser.add_argument("--budgets", default="4k,16k,auto", help="comma-separated token budgets: 4k, 16000, auto")
    parser.add_argument("--text_len", type=int, default=60, help="longest text in tokens")
    parser.add_argument("--codes_len", type=int, default=250, help="longest code sequence (~10 s of audio)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per budget")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--cpu_budget", type=int, default=6000, help="what auto means on the CPU")
    parser.add_argument("--gradient_checkpointing", action="store_true", help="recompute GPT-2 blocks in backward")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training model")
    parser.add_argument("--peak_tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as well")
    args = parser.parse_args(argv)
    if args.size == "1.5" and args.family != "1.5":
        parser.error(f"--size 1.5 is IndexTTS 1.5's release size; for --family {args.family} use --size release")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device, cuda_auto="bf16")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        reuse_freed_host_memory()  # as the trainer does on the CPU
    torch.manual_seed(0)
    with device:  # the random weights made where they run (a release-size GPT initialises in seconds on a GPU)
        model = build_model(FAMILIES[args.family], args.size)
    runner, frozen, lora = build_runner(model, device, precision, args.gradient_checkpointing)
    if args.compile:
        runner.forward_model = torch.compile(runner.model)
    results = [bench_budget(args, runner, model, frozen, lora, name) for name in args.budgets.split(",")]
    report = {"benchmark": "train", "family": args.family, "size": args.size, "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "precision": precision, "torch": torch.__version__, "prefix_rows": model.prefix_rows,
              "frozen_block_params": frozen, "lora_params": lora, "compile": args.compile, "results": results}
    return emit(report, args.json)


def emit(report: dict, path: Path | None) -> dict:
    """Print ``report`` as one JSON line (a benchmark reports on stdout) and write it to ``path`` too."""
    print(json.dumps(report), flush=True)
    if path:
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
