"""Per-utterance rows -> summary table (summary.csv), plot (summary.png) and TensorBoard scalars/audio.

Summary columns (one row per checkpoint and speaker, plus speaker "all" pooling every speaker):

    checkpoint, step, speaker   "real" is the real recordings (the ceiling), "final" the run's adapter
    utterances                  rows evaluated; ``failed`` of them could not be synthesised
    asr_scored                  rows with a transcript (a language without an ASR backend has none)
    mer                         mixed error rate: Chinese characters and English words pooled (selection)
    wer_en, cer_zh              the English-word WER and the Chinese-character CER, pooled
    sim                         mean speaker similarity to the speaker's reference recording
    rtf                         synthesis seconds per second of audio (empty for "real")
    best                        1 on the chosen checkpoint's rows
    note                        why some rows have no transcript (e.g. "zh: pocketsphinx recognises en only, SIM only")
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from indextts.atomic_files import write_bytes_atomic
from indextts.evaluation.run_inputs import FINAL

ALL_SPEAKERS = "all"
REAL = "real"
COLUMNS = ("checkpoint", "step", "speaker", "utterances", "failed", "asr_scored", "mer", "wer_en", "cer_zh",
           "sim", "rtf", "best", "note")
_RATE_COLUMNS = {"mer": "mixed", "wer_en": "en", "cer_zh": "zh"}


def _pooled_rate(rows: list[dict], script: str) -> float | None:
    tokens = sum(r.get(f"tokens_{script}") or 0 for r in rows)
    return sum(r.get(f"errors_{script}") or 0 for r in rows) / tokens if tokens else None


def _summary_row(checkpoint: str, step, speaker: str, rows: list[dict]) -> dict:
    """One summary row pooling ``rows`` (error counts summed, SIM averaged, RTF as total time / audio)."""
    sims = [r["sim"] for r in rows if r.get("sim") is not None]
    audio = sum(r.get("audio_seconds") or 0.0 for r in rows)
    row = {"checkpoint": checkpoint, "step": step, "speaker": speaker, "utterances": len(rows),
           "failed": sum(1 for r in rows if "error" in r),
           "asr_scored": sum(1 for r in rows if r.get("transcript") is not None),
           "sim": float(np.mean(sims)) if sims else None,
           "rtf": sum(r.get("synthesis_seconds") or 0.0 for r in rows) / audio if audio else None, "best": 0,
           "note": "; ".join(sorted({r["asr_skipped"] for r in rows if r.get("asr_skipped")})) or None}
    row.update({column: _pooled_rate(rows, script) for column, script in _RATE_COLUMNS.items()})
    return row


def summarise(rows: list[dict]) -> list[dict]:
    """Summary rows per (checkpoint, speaker) and per checkpoint over all speakers, in input order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    steps = {}
    for row in rows:
        steps[row["checkpoint"]] = row["step"]
        groups[(row["checkpoint"], row["speaker"])].append(row)
        groups[(row["checkpoint"], ALL_SPEAKERS)].append(row)
    return [_summary_row(checkpoint, steps[checkpoint], speaker, members)
            for (checkpoint, speaker), members in groups.items()]


def _format(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def summary_csv(summary: list[dict]) -> str:
    """The summary as CSV text with the ``COLUMNS`` header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in summary:
        writer.writerow({column: _format(row[column]) for column in COLUMNS})
    return buffer.getvalue()


def summary_notes(summary: list[dict]) -> list[str]:
    """The distinct notes of the pooled rows (what was not ASR-scored, and why), in order."""
    notes = [r["note"] for r in summary if r["speaker"] == ALL_SPEAKERS and r["note"]]
    return list(dict.fromkeys(part for note in notes for part in note.split("; ")))


def summary_figure(summary: list[dict], best: str | None):
    """Matplotlib Figure: pooled error rate and SIM against the step; real recordings as dashed lines."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(9, 3.6), dpi=100)
    pooled = [r for r in summary if r["speaker"] == ALL_SPEAKERS]
    steps = [r for r in pooled if r["checkpoint"] not in (REAL, FINAL)]
    steps.sort(key=lambda r: r["step"])
    real = next((r for r in pooled if r["checkpoint"] == REAL), None)
    chosen = next((r for r in pooled if r["checkpoint"] == best), None)
    for index, (column, label) in enumerate((("mer", "error rate (WER en / CER zh)"), ("sim", "speaker similarity"))):
        axes = figure.add_subplot(1, 2, index + 1)
        points = [(r["step"], r[column]) for r in steps if r[column] is not None]
        if points:
            axes.plot(*zip(*points), marker="o", label="saved checkpoints")
        if real is not None and real[column] is not None:
            axes.axhline(real[column], linestyle="--", color="gray", label="real recordings")
        if chosen is not None and chosen[column] is not None:
            axes.plot([chosen["step"]], [chosen[column]], marker="*", markersize=14, linestyle="",
                      color="tab:red", label=f"best ({best})")
        if column == "mer" and not any(r["asr_scored"] for r in pooled):
            axes.text(0.5, 0.5, "no ASR scores", transform=axes.transAxes, ha="center", va="center", color="gray")
        axes.set_xlabel("step")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_summary(path: Path, summary: list[dict], best: str | None) -> None:
    """summary.png: see ``summary_figure``."""
    import matplotlib

    matplotlib.use("Agg")
    figure = summary_figure(summary, best)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def log_scalars(writer, summary: list[dict]) -> None:
    """TensorBoard scalars eval/<metric>/<speaker> at each step checkpoint's step."""
    for row in summary:
        if row["checkpoint"] in (REAL, FINAL):
            continue
        for column in ("mer", "wer_en", "cer_zh", "sim", "rtf"):
            if row[column] is not None:
                writer.add_scalar(f"eval/{column}/{row['speaker']}", row[column], row["step"])


def log_audio(writer, key: str, waveform: np.ndarray, sample_rate: int, step: int) -> None:
    """One synthesised sample in TensorBoard under eval_audio/<speaker>/<uid>."""
    import torch

    writer.add_audio(f"eval_audio/{key}", torch.from_numpy(np.clip(waveform, -1.0, 1.0)).unsqueeze(0), step,
                     sample_rate=sample_rate)


def write_reports(eval_dir: Path, summary: list[dict], best: str | None, writer=None) -> None:
    """Mark ``best`` in ``summary`` and write summary.csv, summary.png and (with a writer) TensorBoard scalars."""
    for row in summary:
        row["best"] = int(row["checkpoint"] == best)
    write_bytes_atomic(eval_dir / "summary.csv", summary_csv(summary).encode("utf-8"))
    plot_summary(eval_dir / "summary.png", summary, best)
    if writer is not None:
        log_scalars(writer, summary)
