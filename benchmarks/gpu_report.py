"""The markdown table of ``benchmarks/gpu_check.py``: figures from its JSON report against the issue targets.

Decoding, vocoder and end-to-end figures come from bench_infer.py's JSON (known layout) and are checked
against the targets of issue 11. The training and extraction scripts belong to other parts of the
project, so their JSON is shown as found: every numeric figure whose name says what it measures
(tokens/s, MFU, utterances/s, seconds, memory), next to the targets of issue 12.
"""

from __future__ import annotations

DECODE_TARGETS = {("greedy", 1): 1000.0, ("greedy", 16): 10000.0, ("default", 1): 400.0}
"""codes/s on one H100 at IndexTTS-1.5 size, with the CUDA graph (issue 11)."""
VOCODER_TARGET = 300.0
RTF_TARGET = 0.02
FIRST_CHUNK_TARGET = 0.150
OTHER_TARGETS = {
    "bench_train": "LoRA training >= 20,000 tokens/s in bf16; MFU >= 40% at the auto budget",
    "bench_train_e2e": "30 min x 10 epochs end to end in <= 30 s",
    "bench_extraction": "fp16 extraction >= 100 utterances/s",
}
FIGURE_WORDS = ("per_s", "mfu", "seconds", "memory", "rtf", "hours", "budget", "tokens")
MAX_FIGURES = 24


def _mark(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "-"
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "missed"


def _decode_rate(rows: list[dict], mode: str, batch: int, graph: bool) -> float | None:
    for row in rows:
        if row.get("mode") == mode and row.get("batch") == batch and row.get("cuda_graph") == graph:
            return row.get("codes_per_s")
    return None


def _decode_table(infer: dict) -> list[str]:
    rows = infer.get("generation", [])
    lines = ["| decode codes/s (prompt pass included) | greedy, graph | greedy, eager | default, graph "
             "| default, eager | target |", "|---|---|---|---|---|---|"]
    for batch in sorted({row["batch"] for row in rows}):
        cells = [_decode_rate(rows, mode, batch, graph) for mode in ("greedy", "default") for graph in (True, False)]
        targets = [f"{mode} >= {DECODE_TARGETS[(mode, batch)]:g}: {_mark(cells[2 * i], DECODE_TARGETS[(mode, batch)])}"
                   for i, mode in enumerate(("greedy", "default")) if (mode, batch) in DECODE_TARGETS]
        shown = ["-" if cell is None else f"{cell:g}" for cell in cells]
        lines.append(f"| batch {batch} | " + " | ".join(shown) + f" | {'; '.join(targets) or '-'} |")
    return lines


def _infer_lines(infer: dict) -> list[str]:
    lines = _decode_table(infer) + ["", "| figure | value | target |", "|---|---|---|"]
    vocoder = infer.get("vocoder", {}).get("audio_per_second")
    lines.append(f"| BigVGAN audio s per s | {vocoder} | >= {VOCODER_TARGET:g}: {_mark(vocoder, VOCODER_TARGET)} |")
    for row in infer.get("end_to_end", []):
        if "skipped" in row:
            lines.append(f"| end to end | not run: {row['skipped']} | - |")
            continue
        target = row["target_seconds"]
        rtf_target = f"<= {RTF_TARGET}: {_mark(row['rtf'], RTF_TARGET, False)}" if target == 10 else "-"
        lines.append(f"| end-to-end RTF, {target:g} s text | {row['rtf']} | {rtf_target} |")
        chunk_target = (f"<= {FIRST_CHUNK_TARGET}: {_mark(row['first_chunk_seconds'], FIRST_CHUNK_TARGET, False)}"
                        if target >= 60 else "-")
        lines.append(f"| first chunk latency, {target:g} s text (s) | {row['first_chunk_seconds']} | {chunk_target} |")
    peak = infer.get("peak_memory_bytes")
    lines.append(f"| peak memory, inference (GiB) | {round(peak / 2**30, 2) if peak else '-'} | - |")
    return lines


def _figures(data, path: str = "") -> list[tuple[str, float]]:
    """Numeric leaves of a JSON value whose key names a measured quantity, with their dotted paths."""
    if isinstance(data, dict):
        found = []
        for key, value in data.items():
            found += _figures(value, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(data, list):
        return [item for index, value in enumerate(data) for item in _figures(value, f"{path}[{index}]")]
    if isinstance(data, (int, float)) and not isinstance(data, bool):
        key = path.rsplit(".", 1)[-1].lower()
        return [(path, data)] if any(word in key for word in FIGURE_WORDS) else []
    return []


def _other_lines(name: str, step: dict) -> list[str]:
    lines = [f"### {name}", f"Target: {OTHER_TARGETS[name]}. Status: {step.get('status')}.", ""]
    figures = _figures(step.get("result", {}))[:MAX_FIGURES]
    if figures:
        lines += ["| figure | value |", "|---|---|"] + [f"| {path} | {value:g} |" for path, value in figures]
    return lines


def _header(report: dict) -> list[str]:
    machine = report.get("machine", {})
    lines = [f"# GPU check, {report.get('date')}", "",
             f"Device {report.get('device')} ({machine.get('gpu', 'no GPU')}), size {report.get('size')}, "
             f"torch {machine.get('torch')} (CUDA {machine.get('cuda')}), transformers {machine.get('transformers')}, "
             f"flash attention {machine.get('flash_attention', '-')}; {report.get('seconds')} s in all.", "",
             "| step | status | seconds |", "|---|---|---|"]
    for name, step in report.get("steps", {}).items():
        counts = step.get("counts")
        status = step.get("status", "") + (f" {counts}" if counts else "")
        lines.append(f"| {name} | {status} | {step.get('seconds', '-')} |")
    return lines


def markdown_report(report: dict) -> str:
    """The whole table as markdown text."""
    steps = report.get("steps", {})
    lines = _header(report) + ["", "## Inference (bench_infer.py)", ""]
    infer = steps.get("bench_infer", {}).get("result")
    lines += _infer_lines(infer) if infer else [f"not run: {steps.get('bench_infer', {}).get('status')}"]
    for name in OTHER_TARGETS:
        lines += [""] + _other_lines(name, steps.get(name, {}))
    return "\n".join(lines) + "\n"
