"""IndexTTS-2 stages: this project against the reference implementation, interleaved in one run.

    PYTHONPATH=. python benchmarks/bench_v2_reference.py --json v2_reference.json       # release size, ~10 min
    PYTHONPATH=. python benchmarks/bench_v2_reference.py --quick                        # smoke run, ours only
    PYTHONPATH=. python benchmarks/bench_v2_reference.py --device cuda --no_reference --gpt_batch_sizes 1 16

Both sides load one seeded random folder in the official formats (benchmarks/v2_bench_folder.py;
release size: indextts/configs/indextts-2.yaml, written once into ``--folder``) and run the same
stages on the same inputs (benchmarks/v2_bench_stages.py): w2v-BERT + semantic codec (codes/s), GPT
greedy (codes/s), S2Mel with 25 steps (RTF) and BigVGAN v2 (RTF; ours with the reference's
activation operations, ``exact``, and compiled, ``fused``). The reference (index-tts v2.0.0) runs in
its own environment through benchmarks/v2_reference_runner.py, in a second process that waits while
ours runs. Every stage first runs once on each side at the timed shape; then, ``--repeats`` rounds,
each stage's calls alternate (reference first in odd rounds, ours first in even ones).

Reported per stage: each side's median seconds and spread, and the speed ratio ours / reference
(ours codes/s over the reference's, or the reference's RTF over ours; > 1: ours faster): the median,
min and max of the per-round ratios. Also whether both sides' codes are equal and the SNR of our mel
and waveform against the reference's. No absolute figure is claimed from a shared CPU: quote ratios.
The reference is optional: without its checkout and environment (or at the tiny size, whose widths
the reference hard-codes) only ours runs, and the report says why.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from v2_bench_folder import ensure_folder  # noqa: E402
from v2_bench_stages import FULL, QUICK, UNIT, OurStages, make_inputs  # noqa: E402

from indextts.atomic_files import write_json_atomic  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).resolve().parent / "v2_reference_runner.py"
REFERENCE_ROOT = Path(os.environ.get("INDEXTTS2_REFERENCE", "/work/ref/v2.0.0"))
"""A checkout of index-tts at tag v2.0.0."""
REFERENCE_PYTHON = Path(os.environ.get("INDEXTTS2_REFERENCE_PYTHON", "/work/ref/venv2/bin/python"))
"""The reference's environment (tools/conformance_v2/README.md, "Environment")."""
WORKLOAD_NOTE = ("Short inputs so that a 2-core CPU run of both sides stays under 15 minutes: speed ratios, not "
                 "absolute speeds; the GPT text is fixed random token ids (no tokenizer) and decoding is held to "
                 "exactly gpt_codes codes on both sides (stop code suppressed until then).")


class ReferenceSide:
    """The reference runner process: loads the folder, then times one stage per request."""

    def __init__(self, folder: Path, inputs: Path, scratch: Path, threads: int):
        self.outputs, self.log = scratch / "reference_outputs.safetensors", scratch / "reference.log"
        env = {"PYTHONPATH": str(REFERENCE_ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
        command = [str(REFERENCE_PYTHON), str(RUNNER), "--folder", str(folder), "--inputs", str(inputs),
                   "--outputs", str(self.outputs), "--threads", str(threads)]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            text=True, env=env, cwd=REFERENCE_ROOT)
        self.ready = self._answer()

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text()[-3000:]
            raise RuntimeError(f"The reference runner stopped (exit {self.process.wait()}); its log ends:\n{tail}")
        return json.loads(line)

    def run(self, stage: str) -> tuple[float, float, None]:
        self.process.stdin.write(stage + "\n")
        self.process.stdin.flush()
        answer = self._answer()
        return answer["seconds"], answer["units"], None

    def close(self) -> dict[str, torch.Tensor]:
        """Stop the runner; its last output of each stage."""
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=120)
        return load_file(str(self.outputs)) if self.outputs.is_file() else {}


def reference_unavailable(size: str, wanted: bool) -> str | None:
    """Why the reference side cannot run here, or None."""
    if not wanted:
        return "not asked for (--no_reference)"
    if size != "release":
        return "the tiny size shrinks widths the reference hard-codes; it runs at release size only"
    if not (REFERENCE_ROOT / "indextts" / "infer_v2.py").is_file():
        return f"no index-tts v2.0.0 checkout at {REFERENCE_ROOT} (set INDEXTTS2_REFERENCE)"
    if not REFERENCE_PYTHON.is_file():
        return f"no reference environment at {REFERENCE_PYTHON} (set INDEXTTS2_REFERENCE_PYTHON)"
    return None


def stage_variants(groups: list[str], batch_sizes: list[int], vocoder_modes: list[str]) -> dict[str, list[str]]:
    """Stage group -> our stage names."""
    variants = {"semantic": ["semantic"], "gpt": [f"gpt_b{size}" for size in batch_sizes], "s2mel": ["s2mel"],
                "vocoder": [f"vocoder_{mode}" for mode in vocoder_modes]}
    return {group: variants[group] for group in groups}


def interleaved(ours: OurStages, reference: ReferenceSide | None, variants: dict, repeats: int) -> tuple[dict, dict]:
    """Warm-up, then ``repeats`` alternating rounds: (call name -> [(seconds, units)], our last outputs)."""
    calls = {group: [(f"ours:{stage}", ours.run, stage) for stage in stages]
             + ([(f"reference:{group}", reference.run, group)] if reference else [])
             for group, stages in variants.items()}
    records = {name: [] for group in calls.values() for name, _, _ in group}
    outputs = {}
    for round_index in range(repeats + 1):
        for group, group_calls in calls.items():
            for name, call, stage in (group_calls if round_index % 2 else group_calls[::-1]):
                seconds, units, output = call(stage)
                if output is not None:
                    outputs[stage] = output.detach().float().cpu()
                if round_index:  # round 0 is the warm-up at the timed shape
                    records[name].append((seconds, units))
        if round_index:
            print(f"round {round_index}: " + ", ".join(f"{name} {rows[-1][0]:.2f} s" for name, rows in records.items()),
                  flush=True)
    return records, outputs


def rate(group: str, seconds: float, units: float) -> float:
    """codes/s, or the real-time factor (seconds of compute per second of audio)."""
    return units / seconds if UNIT[group] == "codes/s" else seconds / units


def spread(values: list[float], digits: int = 4) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def side_figures(group: str, rows: list[tuple[float, float]]) -> dict:
    return {"seconds": spread([s for s, _ in rows]), UNIT[group]: spread([rate(group, s, u) for s, u in rows]),
            "units_per_call": rows[0][1]}


def speed_ratios(group: str, ours: list, reference: list) -> dict:
    """Per-round speed of ours over the reference's (> 1: ours faster)."""
    higher_is_faster = UNIT[group] == "codes/s"
    ratios = [rate(group, *own) / rate(group, *ref) if higher_is_faster else rate(group, *ref) / rate(group, *own)
              for own, ref in zip(ours, reference)]
    return spread(ratios, 3)


def agreement(stage: str, ours: torch.Tensor, reference: torch.Tensor) -> dict:
    """Codes: equal or not; mel and waveform: SNR (dB) of ours against the reference."""
    if ours.shape != reference.shape:
        return {"same_shape": False, "ours": list(ours.shape), "reference": list(reference.shape)}
    if stage.startswith(("semantic", "gpt")):
        return {"codes_equal": torch.equal(ours.long(), reference.long())}
    noise = (ours.double() - reference.double()).pow(2).sum().item()
    snr = math.inf if noise == 0 else 10 * math.log10(reference.double().pow(2).sum().item() / noise)
    return {"snr_db": None if math.isinf(snr) else round(snr, 1), "equal": noise == 0}


def stage_report(variants: dict, records: dict, ours_out: dict, reference_out: dict) -> dict:
    report = {}
    for group, stages in variants.items():
        reference = records.get(f"reference:{group}")
        for stage in stages:
            own = records[f"ours:{stage}"]
            row = {"unit": UNIT[group], "ours": side_figures(group, own)}
            if reference:
                row["reference"] = side_figures(group, reference)
                row["speed_ours_over_reference"] = speed_ratios(group, own, reference)
                if stage in ours_out and group in reference_out:
                    row["agreement"] = agreement(stage, ours_out[stage], reference_out[group])
            report[stage] = row
    return report


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "load_average": [round(x, 2) for x in os.getloadavg()]}


def print_report(report: dict) -> None:
    if report["reference"]["why_not"]:
        print(f"reference: not run ({report['reference']['why_not']})")
    for stage, row in report["stages"].items():
        ours = row["ours"][row["unit"]]["median"]
        line = f"{stage:>14}: ours {row['unit']} {ours:.4g}"
        if "speed_ours_over_reference" in row:
            ratio = row["speed_ours_over_reference"]
            line = (f"{stage:>14}: ours / reference speed x{ratio['median']:.2f} (rounds {ratio['min']:.2f}-"
                    f"{ratio['max']:.2f}), {json.dumps(row.get('agreement', {}))}")
        print(line, flush=True)


def measure(args: argparse.Namespace, folder: Path, scratch: Path) -> dict:
    """Load both sides, run the interleaved rounds, and build the report."""
    cfg = OmegaConf.load(folder / "config.yaml")
    work = QUICK if args.quick else FULL
    save_file(make_inputs(cfg, work, args.seed), str(scratch / "inputs.safetensors"))
    inputs = load_file(str(scratch / "inputs.safetensors"))
    why_not = reference_unavailable(args.size, not args.no_reference)
    variants = stage_variants(args.stages, args.gpt_batch_sizes, args.vocoder_modes)
    start = time.perf_counter()
    reference = None if why_not else ReferenceSide(folder, scratch / "inputs.safetensors", scratch, args.threads)
    ours = OurStages(folder, inputs, args.device, tuple(variants))
    print(f"models loaded in {time.perf_counter() - start:.1f} s", flush=True)
    records, ours_out = interleaved(ours, reference, variants, args.repeats)
    reference_out = reference.close() if reference else {}
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "size": args.size,
            "device": args.device, "threads": args.threads, "repeats": args.repeats, "seed": args.seed,
            "workload": asdict(work), "note": WORKLOAD_NOTE,
            "ours": {"torch": torch.__version__},
            "reference": {"why_not": why_not, "root": str(REFERENCE_ROOT),
                          "torch": reference.ready.get("torch") if reference else None},
            "stages": stage_report(variants, records, ours_out, reference_out)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny size, tiny inputs, one round, ours only")
    parser.add_argument("--size", choices=("release", "tiny"), help="model size (default: release; tiny with --quick)")
    parser.add_argument("--folder", type=Path, help="the random folder (made there once; default .cache/bench_v2_SIZE)")
    parser.add_argument("--stages", nargs="+", choices=tuple(UNIT), default=list(UNIT), help="stage groups to time")
    parser.add_argument("--gpt_batch_sizes", nargs="+", type=int, default=[1], help="GPT rows (the reference: 1)")
    parser.add_argument("--vocoder_modes", nargs="+", choices=("exact", "fused"), help="our BigVGAN activation modes")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3; 1 with --quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, each side")
    parser.add_argument("--device", default="cpu", help="our side's device (the reference runs on the CPU)")
    parser.add_argument("--no_reference", action="store_true", help="time this project only")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the inputs")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    args.size = args.size or ("tiny" if args.quick else "release")
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.vocoder_modes = args.vocoder_modes or (["exact"] if args.quick or args.device != "cpu" else ["exact", "fused"])
    args.folder = args.folder or REPO_ROOT / ".cache" / f"bench_v2_{args.size}"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device != "cpu" and not args.no_reference:
        print("bench_v2_reference: the reference side runs on the CPU only; give --no_reference with --device "
              f"{args.device}.", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    folder = ensure_folder(args.folder, args.size, args.seed, with_w2v_bert="semantic" in args.stages)
    with tempfile.TemporaryDirectory() as scratch:
        report = measure(args, folder, Path(scratch))
    print_report(report)
    if args.json:
        write_json_atomic(args.json, report, sync=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
