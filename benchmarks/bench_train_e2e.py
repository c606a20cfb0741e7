"""Wall time of a whole fine-tuning run: a synthetic 30-minute speaker set, 10 epochs, through train.py.

    python benchmarks/bench_train_e2e.py --device cpu --size tiny --minutes 2 --epochs 1 --json out.json
    python benchmarks/bench_train_e2e.py --device cuda --size 1.5 --json out.json          # the GPU check

The run is the real command (``python train.py ...`` as a subprocess) with its defaults, including
validation after each epoch, checkpoints and the final save; only the data is synthetic: two
speakers whose clips (8 s on average, lengths spread 3-13 s) add up to ``--minutes`` of speech,
with random DVAE codes and conditions, the layout tools/extract_codec.py writes. The base is a
random-weight checkpoint folder of the chosen size (``indextts.tiny.write_tiny_checkpoints``) or
``--model_dir`` (the GPU check passes its one shared folder). ``train.py`` streams its output and
gets SIGKILL when this process dies. Reported: ``wall_s`` (process start to exit), ``train_tokens`` and
``tokens_per_s`` from metrics.jsonl, and the peak memory (CUDA: from train.log; CPU: peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

from bench_train import emit  # benchmarks/ is on sys.path when this script runs
from process_group import die_with_parent

REPO_ROOT = Path(__file__).resolve().parents[1]
CODES_PER_SECOND = 24000 / 1024
SENTENCES = ["Hello there, how are you today?", "The quick brown fox jumps over the lazy dog.",
             "We are testing the training loop.", "Small models learn simple patterns quickly.",
             "今天天气很好。", "Please read this sentence slowly."]


def _write_speaker(folder: Path, name: str, durations: np.ndarray, model_dim: int, mel_codes: int,
                   rng: np.random.Generator) -> dict:
    for sub in ("codes", "conditions"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / "medoid.wav", rng.uniform(-0.3, 0.3, 24000 * 3).astype(np.float32), 24000)
    rows = []
    for index, seconds in enumerate(durations):
        uid, num_codes = f"{name}_{index:05d}", int(seconds * CODES_PER_SECOND)
        np.save(folder / "codes" / f"{uid}.npy", rng.integers(0, mel_codes - 2, num_codes).astype(np.int32))
        np.save(folder / "conditions" / f"{uid}.npy", rng.standard_normal((32, model_dim)).astype(np.float32))
        text = " ".join(SENTENCES[(index + k) % len(SENTENCES)] for k in range(max(1, int(seconds // 3))))
        rows.append({"uid": uid, "speaker": name, "audio": "medoid.wav", "text": text, "codes": f"codes/{uid}.npy",
                     "condition": f"conditions/{uid}.npy", "duration": float(seconds), "num_codes": num_codes})
    split = max(1, len(rows) // 20)
    for file, subset in (("metadata_train.jsonl", rows[split:]), ("metadata_valid.jsonl", rows[:split])):
        (folder / file).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in subset), "utf-8")
    np.save(folder / "medoid_condition.npy", np.load(folder / "conditions" / f"{name}_00000.npy"))
    (folder / "medoid_info.json").write_text(json.dumps({"uid": f"{name}_00000", "audio": "medoid.wav"}), "utf-8")
    total = float(durations.sum())
    return {"speaker": name, "avg_duration": total / len(rows), "sample_num": len(rows),
            "total_duration_in_seconds": total, "total_duration_in_minutes": total / 60,
            "total_duration_in_hours": total / 3600, "train_jsonl": f"{name}/metadata_train.jsonl",
            "valid_jsonl": f"{name}/metadata_valid.jsonl", "medoid_condition": f"{name}/medoid_condition.npy"}


def write_synthetic_set(root: Path, minutes: float, model_dim: int, mel_codes: int, max_codes: int) -> Path:
    """Two speakers, ``minutes`` of clips in all; returns speaker_info.json."""
    rng = np.random.default_rng(0)
    longest = min(13.0, (max_codes - 1) / CODES_PER_SECOND)
    durations = rng.uniform(3.0, longest, int(minutes * 60 / ((3.0 + longest) / 2)) + 2)
    entries = [_write_speaker(root / name, name, part, model_dim, mel_codes, rng)
               for name, part in zip(("spk_a", "spk_b"), np.array_split(durations, 2))]
    info = root / "speaker_info.json"
    info.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return info


def peak_memory_mib(run_dir: Path) -> float:
    """CUDA peak from train.log when the trainer logged one, else the child processes' peak RSS."""
    log = (run_dir / "train.log").read_text(encoding="utf-8") if (run_dir / "train.log").is_file() else ""
    found = re.findall(r"peak GPU memory ([\d.]+) MiB", log)
    if found:
        return float(found[-1])
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def run(args: argparse.Namespace, work: Path) -> dict:
    from indextts.checkpoint_folder.folder import CheckpointFolder
    from indextts.tiny import write_tiny_checkpoints

    model_dir = args.model_dir or write_tiny_checkpoints(work / "model", seed=0, release=args.size)
    gpt_cfg = CheckpointFolder(model_dir).cfg.gpt
    info = write_synthetic_set(work / "data", args.minutes, int(gpt_cfg.model_dim), int(gpt_cfg.number_mel_codes),
                               int(gpt_cfg.max_mel_tokens))
    run_dir = work / "run"
    command = [sys.executable, str(REPO_ROOT / "train.py"), f"model_dir={model_dir}", f"speaker_info={info}",
               f"run_dir={run_dir}", f"train.epochs={args.epochs}", f"train.device={args.device}",
               "data.num_workers=2", *args.overrides]
    started = time.perf_counter()
    # Output streams through (a log shows how far a killed run got); train.py dies with this process.
    result = subprocess.run(command, cwd=REPO_ROOT, preexec_fn=die_with_parent)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"train.py failed (exit {result.returncode}); its output is above.")
    train = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = max(r["step"] for r in train)
    return {"benchmark": "train_e2e", "size": args.size, "device": args.device, "minutes": args.minutes,
            "epochs": args.epochs, "optimizer_steps": steps, "wall_s": round(wall, 2),
            "peak_memory_mib": round(peak_memory_mib(run_dir), 1), "overrides": args.overrides}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "1.5"])
    parser.add_argument("--minutes", type=float, default=30.0, help="minutes of synthetic speech")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--model_dir", default=None, help="a real checkpoint folder instead of random weights")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the data and the run here")
    parser.add_argument("--json", type=Path, default=None, help="write the result here as well")
    parser.add_argument("overrides", nargs="*", help="extra train.py key=value overrides")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as temp:
        work = args.workdir or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        report = run(args, work)
    return emit(report, args.json)


if __name__ == "__main__":
    main()
