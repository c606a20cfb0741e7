"""What a voice report shows, gathered from the files the stages wrote (no stage is re-run).

- data: ``review.csv`` of each prepared folder (clips kept and dropped, and why) and the
  extraction manifests (seconds per speaker, clip lengths);
- training: the run's metrics file (loss curves);
- evaluation: ``eval/summary.csv`` and ``eval/best.json`` written by indextts-eval;
- listening: per voice, held-out sentences as recorded and as the chosen adapter speaks them.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from indextts.contracts.manifests import read_manifest
from indextts.errors import DataError
from indextts.run_folder import RunFolder

SAMPLES_PER_VOICE = 2


@dataclass
class SpeakerData:
    """One speaker's clips: kept / dropped counts, drop reasons, and the extracted clip lengths (s)."""

    kept: int = 0
    dropped: int = 0
    reasons: Counter = field(default_factory=Counter)
    train_seconds: list[float] = field(default_factory=list)
    valid_seconds: list[float] = field(default_factory=list)


@dataclass
class Sample:
    """A held-out sentence of one voice: its text, the real recording and the synthesis (wav bytes)."""

    speaker: str
    text: str
    recording: bytes
    synthesis: bytes


@dataclass
class ReportContent:
    data: dict[str, SpeakerData]
    metrics: list[dict]
    summary: list[dict]
    best: dict
    samples: list[Sample]
    commands: list[str]
    environment: dict[str, str]


def read_review(prepared_dirs, speakers: dict[str, SpeakerData]) -> None:
    """Add the kept / dropped clips of every ``review.csv`` to ``speakers``."""
    for folder in prepared_dirs:
        path = Path(folder) / "review.csv"
        if not path.is_file():
            continue
        for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))):
            data = speakers.setdefault(row["speaker"], SpeakerData())
            if row["in_list"] in ("1", "True", "true", "yes"):
                data.kept += 1
            else:
                data.dropped += 1
                data.reasons.update(row["flags"].split(";") if row["flags"] else ["removed from the list"])


def read_manifests(features_dir: Path, speakers: dict[str, SpeakerData]) -> None:
    """Clip lengths per speaker from the extraction's train and valid manifests."""
    for manifest in sorted(Path(features_dir).glob("*/metadata_*.jsonl")):
        split = manifest.stem.removeprefix("metadata_")
        if split not in ("train", "valid"):
            continue
        for row in read_manifest(manifest):
            data = speakers.setdefault(row.speaker, SpeakerData())
            (data.train_seconds if split == "train" else data.valid_seconds).append(row.duration)


def read_evaluation(run_dir: Path) -> tuple[list[dict], dict]:
    """The rows of ``eval/summary.csv`` and ``eval/best.json``; DataError when the run was not evaluated."""
    eval_dir = RunFolder(run_dir).eval_dir
    summary, best = eval_dir / "summary.csv", eval_dir / "best.json"
    if not summary.is_file() or not best.is_file():
        raise DataError(f"The run {run_dir} has no evaluation ({summary} and {best}). Run `indextts-eval --run "
                        f"{run_dir}` first; the report shows its table.")
    return list(csv.DictReader(io.StringIO(summary.read_text(encoding="utf-8")))), json.loads(best.read_text())


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.float32), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def listening_samples(run_dir: Path, features_dir: Path, device: str) -> list[Sample]:
    """Per voice, the first held-out sentences as recorded and as the run (promoted adapter) speaks them."""
    from dataclasses import replace

    from indextts.inference import IndexTTS
    from indextts.inference.synthesis import SynthesisOptions

    tts = IndexTTS.from_run(run_dir, device=device)
    options = SynthesisOptions()
    options = replace(options, generation=replace(options.generation, seed=0))
    samples = []
    for manifest in sorted(Path(features_dir).glob("*/metadata_valid.jsonl")):
        for row in read_manifest(manifest)[:SAMPLES_PER_VOICE]:
            if row.audio is None or not row.audio.is_file():
                continue
            spoken = tts.synthesize(row.text, voice=row.speaker, options=options)
            samples.append(Sample(row.speaker, row.text, row.audio.read_bytes(),
                                  wav_bytes(spoken.waveform, spoken.sample_rate)))
    return samples


def environment(device: str) -> dict[str, str]:
    """Versions and the device the report (and its syntheses) ran with."""
    import peft
    import torch
    import transformers

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "platform": platform.platform(),
            "device": device, "synthesis precision": "auto (fp32 on CPU, fp16 GPT on CUDA)"}


def gather(prepared_dirs, features_dir: Path, run_dir: Path, commands, device: str) -> ReportContent:
    speakers: dict[str, SpeakerData] = {}
    read_review(prepared_dirs, speakers)
    read_manifests(features_dir, speakers)
    summary, best = read_evaluation(Path(run_dir))
    return ReportContent(speakers, RunFolder(run_dir).read_metrics(), summary, best,
                         listening_samples(Path(run_dir), Path(features_dir), device), list(commands),
                         environment(device))
