"""Helpers shared by the test modules: where the conformance data lives, and tiny extracted data sets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CONFORMANCE = REPO_ROOT.parent / "shared" / "conformance"
MANIFEST_FILE = SHARED_CONFORMANCE / "state_dict_manifest.json"
RELEASES = ("IndexTTS-1.5", "IndexTTS-1.0")


def conformance_folders(marker_file: str) -> list[Path]:
    """Every golden folder holding ``marker_file``: those in ../shared/conformance plus the ones
    listed in INDEXTTS_CONFORMANCE_DIRS (os.pathsep-separated)."""
    roots = [SHARED_CONFORMANCE] if SHARED_CONFORMANCE.is_dir() else []
    extra = [Path(p) for p in os.environ.get("INDEXTTS_CONFORMANCE_DIRS", "").split(os.pathsep) if p]
    found: list[Path] = []
    for root in roots:
        found += sorted(p.parent for p in root.glob(f"*/{marker_file}"))
    for folder in extra:
        if (folder / marker_file).is_file():
            found.append(folder)
        else:
            found += sorted(p.parent for p in folder.glob(f"*/{marker_file}"))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


TEXTS = ["Hello there, how are you today?", "The quick brown fox jumps over the lazy dog.",
         "We are testing the training loop.", "Small models learn simple patterns quickly.",
         "今天天气很好。", "Please read this sentence slowly."]


def write_extracted_data(root: Path, model_dim: int, speakers=("alice", "bob"), train_rows: int = 6,
                         valid_rows: int = 2, num_mel_codes: int = 256, seed: int = 0) -> Path:
    """Write extraction output in the documented layout; returns speaker_info.json.

    Each speaker's codes follow a simple speaker-specific pattern, so a few steps can learn them.
    """
    rng = np.random.default_rng(seed)
    entries = []
    for s, speaker in enumerate(speakers):
        folder = root / speaker
        (folder / "codes").mkdir(parents=True)
        (folder / "conditions").mkdir()
        (folder / "wavs").mkdir()
        rows = []
        for i in range(train_rows + valid_rows):
            uid = f"{speaker}_{i:03d}"
            num_codes = int(rng.integers(8, 30))
            codes = ((np.arange(num_codes) * (s + 2) + s) % min(num_mel_codes, 13)).astype(np.int32)
            np.save(folder / "codes" / f"{uid}.npy", codes)
            np.save(folder / "conditions" / f"{uid}.npy", rng.standard_normal((32, model_dim)).astype(np.float32))
            soundfile.write(folder / "wavs" / f"{uid}.wav", rng.uniform(-0.3, 0.3, 24000 // 2).astype(np.float32), 24000)
            rows.append({"uid": uid, "speaker": speaker, "audio": f"wavs/{uid}.wav", "text": TEXTS[i % len(TEXTS)],
                         "codes": f"codes/{uid}.npy", "condition": f"conditions/{uid}.npy",
                         "duration": num_codes * 1024 / 24000, "num_codes": num_codes, "num_text_tokens": 0})
        for name, subset in (("metadata.jsonl", rows), ("metadata_train.jsonl", rows[:train_rows]),
                             ("metadata_valid.jsonl", rows[train_rows:])):
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in subset), encoding="utf-8")
        np.save(folder / "medoid_condition.npy", np.load(folder / "conditions" / f"{speaker}_000.npy"))
        (folder / "medoid_info.json").write_text(json.dumps(
            {"uid": f"{speaker}_000", "audio": f"wavs/{speaker}_000.wav", "condition": f"conditions/{speaker}_000.npy",
             "metric": "cosine"}), encoding="utf-8")
        entries.append({"speaker": speaker, "avg_duration": 1.0, "sample_num": len(rows),
                        "total_duration_in_seconds": 1.0, "total_duration_in_minutes": 0.1,
                        "total_duration_in_hours": 0.01, "train_jsonl": f"{speaker}/metadata_train.jsonl",
                        "valid_jsonl": f"{speaker}/metadata_valid.jsonl",
                        "medoid_condition": f"{speaker}/medoid_condition.npy"})
    info = root / "speaker_info.json"
    info.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return info


def tiny_overrides(model_dir: Path, speaker_info: Path, run_dir: Path, *extra: str) -> list[str]:
    """Fast CPU settings for the tiny model."""
    return [f"model_dir={model_dir}", f"speaker_info={speaker_info}", f"run_dir={run_dir}",
            "data.num_workers=0", "data.max_tokens=400", "data.max_batch_size=4", "data.min_duration=0.1",
            "train.device=cpu", "train.precision=fp32", "train.grad_accum=1", "train.epochs=2",
            "train.optimizer.lr=3e-3", "train.speaker_conditions.lr=3e-3", "train.lora.dropout=0.1",
            "train.scheduler.warmup_ratio=0.0", "train.save_every_steps=0", "train.deterministic=true", *extra]


def file_digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (to prove a refused command changed nothing)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
