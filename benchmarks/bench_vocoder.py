"""CPU BigVGAN: ours (exact and fused activations) against the reference implementation, same run.

    python benchmarks/bench_vocoder.py --frames 300 --repeats 3 --threads 2 --json vocoder.json
    python benchmarks/bench_vocoder.py --size tiny --frames 40 --repeats 2        # smoke run

The reference is IndexTTS v1.5.0's ``indextts/BigVGAN`` package, imported from ``--reference``
(a checkout of the reference repository; nothing of it is copied here). Both models get the same
seeded random weights: the reference is built, its weight norm removed as its inference does,
and its state dict loaded into ours. Every model first runs once at the timed shape (the fused
mode compiles there); then the reference, ours exact and ours fused run in turn, A B C A B C,
``--repeats`` rounds. Reports per model the median and the spread (min, max) of the seconds, the
speed ratio reference / ours (median of the per-round ratios), whether each output equals the
reference's bit for bit, and otherwise its SNR against it.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch
from omegaconf import OmegaConf

from indextts.atomic_files import write_json_atomic
from indextts.checkpoints import build_model
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.dims import BigVGANDims
from indextts.tiny import TINY_MODEL_CONFIG

REFERENCE_ROOT = Path(os.environ.get("INDEXTTS_REFERENCE", "/work/ref/v1.5.0"))
"""A checkout of the reference repository (IndexTTS v1.5.0), holding indextts/BigVGAN."""
REFERENCE_PACKAGE = "indextts.BigVGAN"
UNUSED_REFERENCE_IMPORTS = ("torchaudio",)
"""Imported by the reference's nnet/CNN.py but never used there; an empty module stands in when absent."""


def reference_available(root: Path = REFERENCE_ROOT) -> bool:
    return (root / "indextts" / "BigVGAN" / "models.py").is_file()


def import_reference_models(root: Path = REFERENCE_ROOT):
    """The reference's ``indextts.BigVGAN.models`` module, loaded from ``root`` under its own name.

    Our ``indextts`` has no ``BigVGAN`` subpackage, so the name is free: the reference package is
    registered as ``indextts.BigVGAN`` and its absolute imports resolve inside ``root``.
    """
    for name in UNUSED_REFERENCE_IMPORTS:
        if importlib.util.find_spec(name) is None:
            sys.modules.setdefault(name, types.ModuleType(name))
    if REFERENCE_PACKAGE not in sys.modules:
        folder = root / "indextts" / "BigVGAN"
        spec = importlib.util.spec_from_file_location(REFERENCE_PACKAGE, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[REFERENCE_PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{REFERENCE_PACKAGE}.models")


def matched_vocoders(cfg, seed: int = 0, root: Path = REFERENCE_ROOT) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(reference BigVGAN, ours) in eval mode with the same seeded random weights, weight norm folded."""
    hyper = OmegaConf.create(OmegaConf.to_container(cfg.bigvgan, resolve=True))
    torch.manual_seed(seed)
    reference = import_reference_models(root).BigVGAN(hyper).eval()
    with torch.no_grad():
        for name, tensor in reference.named_parameters():
            if name.endswith(("alpha", "beta")):
                tensor.normal_(0.0, 0.3)  # the reference initialises them all to zero (log-scale 1)
    reference.remove_weight_norm()
    ours = build_model(BigVGANDims.from_config(cfg)).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def snr_db(reference: torch.Tensor, other: torch.Tensor) -> float:
    """10 log10(|reference|^2 / |reference - other|^2); inf when equal."""
    noise = (reference.double() - other.double()).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(reference.double().pow(2).sum().item() / noise)


def timed(call) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def compare(cfg, frames: int, repeats: int) -> dict:
    """Interleaved timing of the reference, ours exact and ours fused on ``frames`` latent frames."""
    reference, ours = matched_vocoders(cfg)
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(1, frames, int(cfg.bigvgan.gpt_dim), generator=generator)
    mel = torch.randn(1, 200, int(cfg.bigvgan.num_mels), generator=generator) - 4
    embedding = ours.embed_speaker(mel)

    def run_ours(mode: str):
        ours.set_activation_mode(mode)
        return ours(latents, speaker_embedding=embedding)

    calls = {"reference": lambda: reference(latents, mel)[0], "exact": lambda: run_ours("exact"),
             "fused": lambda: run_ours("fused")}
    times = {name: [] for name in calls}
    with torch.inference_mode():
        outputs = {name: call() for name, call in calls.items()}  # warm-up at the timed shape
        for round_index in range(repeats):
            for name, call in calls.items():
                seconds, outputs[name] = timed(call)
                times[name].append(seconds)
            print(f"round {round_index + 1}: " + ", ".join(f"{name} {times[name][-1]:.3f} s" for name in calls),
                  flush=True)
    return summary(times, outputs, frames * int(cfg.gpt.mel_length_compression) / int(cfg.dataset.sample_rate))


def summary(times: dict, outputs: dict, audio_seconds: float) -> dict:
    """Medians, spreads, per-round speed ratios against the reference, and SNRs."""
    report = {"audio_seconds": round(audio_seconds, 3), "models": {}}
    for name, seconds in times.items():
        snr = snr_db(outputs["reference"], outputs[name])
        ratios = [ref / own for ref, own in zip(times["reference"], seconds)]
        report["models"][name] = {
            "median_seconds": round(statistics.median(seconds), 4),
            "min_seconds": round(min(seconds), 4), "max_seconds": round(max(seconds), 4),
            "speed_vs_reference": round(statistics.median(ratios), 3),
            "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3),
            "equal_to_reference": torch.equal(outputs["reference"], outputs[name]),
            "snr_db": None if math.isinf(snr) else round(snr, 1),
        }
    return report


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("1.5", "tiny"), default="1.5", help="model layout")
    parser.add_argument("--frames", type=int, default=300, help="latent frames vocoded per call")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not reference_available():
        print(f"bench_vocoder: the reference BigVGAN is not under {REFERENCE_ROOT}/indextts/BigVGAN; set "
              "INDEXTTS_REFERENCE to a checkout of IndexTTS v1.5.0.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = (OmegaConf.create(TINY_MODEL_CONFIG) if args.size == "tiny"
           else load_config(RELEASE_CONFIGS["IndexTTS-1.5"]))
    report = {"size": args.size, "frames": args.frames, "repeats": args.repeats, "threads": args.threads,
              "torch": torch.__version__, **compare(cfg, args.frames, args.repeats)}
    for name, row in report["models"].items():
        print(f"{name:>9}: median {row['median_seconds']:.3f} s (min {row['min_seconds']:.3f}, max "
              f"{row['max_seconds']:.3f}), x{row['speed_vs_reference']:.2f} the reference "
              f"(rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f}), "
              + ("equal bit for bit" if row["equal_to_reference"] else f"SNR {row['snr_db']} dB"), flush=True)
    if args.json:
        write_json_atomic(args.json, report, sync=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
