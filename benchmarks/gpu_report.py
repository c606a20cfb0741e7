"""The markdown table of ``benchmarks/gpu_check.py``: figures from its JSON report against the issue targets.

Decoding, vocoder and end-to-end figures come from bench_infer.py's JSON and are checked against the
targets of issue 11 as issue 28 made them fair (decode codes/s without the prompt pass; the RTF target
for greedy batch 1, the reference default reported beside it; latency to the first audio sample); training (bench_train.py, bench_train_e2e.py) and extraction (bench_extraction.py)
against those of issue 12. The targets are for one H100 at IndexTTS-1.5 size, so every row says
"not judged" on other runs (a CPU smoke run, the tiny size, a shorter set). The IndexTTS-2 figures
(LoRA training, the bench_v2_reference stages) have no target yet: they are recorded.
"""

from __future__ import annotations

DECODE_TARGETS = {("greedy", 1): 1000.0, ("greedy", 16): 10000.0, ("default", 1): 400.0}
"""codes/s on one H100 at IndexTTS-1.5 size, with the CUDA graph (issue 11)."""
VOCODER_TARGET = 300.0
RTF_TARGET = 0.02
FIRST_CHUNK_TARGET = 0.150
TRAIN_TOKENS_TARGET = 20_000.0
MFU_TARGET = 0.40
E2E_SECONDS_TARGET = 30.0
E2E_WORKLOAD = (30.0, 10)  # minutes of speech, epochs
EXTRACTION_TARGET = 100.0  # steady utterances/s in fp16
EXTRACTION_MIN_UTTERANCES = 1000  # the steady rate is judged only over at least this many


def _decode_row(rows: list[dict], mode: str, batch: int, variant: str) -> dict:
    for row in rows:
        if row.get("mode") == mode and row.get("batch") == batch and row.get("variant", _variant_of(row)) == variant:
            return row
    return {}


def _variant_of(row: dict) -> str:
    """The step variant of a row written before bench_infer named it."""
    return "graph" if row.get("cuda_graph") else "eager"


def _decode_table(infer: dict, verdict) -> list[str]:
    rows = infer.get("generation", [])
    lines = ["| decode codes/s (median of 3, prompt pass excluded) | greedy, graph | greedy, eager | default, graph "
             "| default, eager | graphs captured while timing | target |", "|---|---|---|---|---|---|---|"]
    for batch in sorted({row["batch"] for row in rows}):
        cells = [_decode_row(rows, mode, batch, variant).get("decode_codes_per_s")
                 for mode in ("greedy", "default") for variant in ("graph", "eager")]
        captures = sum(row.get("captures_during_timing", 0) for row in rows if row["batch"] == batch)
        targets = [f"{mode} >= {target:g}: {verdict(cells[2 * i], target)}"
                   for i, mode in enumerate(("greedy", "default"))
                   if (target := DECODE_TARGETS.get((mode, batch))) is not None]
        shown = ["-" if cell is None else f"{cell:g}" for cell in cells]
        lines.append(f"| batch {batch} | " + " | ".join(shown) + f" | {captures} (0 expected) | "
                     f"{'; '.join(targets) or '-'} |")
    for row in rows:
        if row.get("variant") == "graph+inductor":
            value = row.get("decode_codes_per_s", row.get("error"))
            lines.append(f"| {row['mode']} batch {row['batch']}, graph + inductor | {value} | | | | "
                         f"{row.get('captures_during_timing', '-')} | - |")
    helps = (infer.get("inductor") or {}).get("speedup_over_graph")
    if helps is not None:
        lines += ["", f"Inductor-compiled step inside the graph: {helps:g}x the plain graph (greedy, batch 1)."]
    return lines


def _end_to_end_lines(infer: dict, verdict) -> list[str]:
    """RTF (target for greedy batch 1, i.e. the one-sentence 10 s text) and first-audio latency (greedy)."""
    lines = []
    for row in infer.get("end_to_end", []):
        if "skipped" in row:
            lines.append(f"| end to end | not run: {row['skipped']} | - |")
            continue
        target, mode = row["target_seconds"], row.get("mode", "default")
        greedy = mode == "greedy"
        rtf_target = f"<= {RTF_TARGET}: {verdict(row['rtf'], RTF_TARGET, False)}" if greedy and target == 10 else "-"
        lines.append(f"| end-to-end RTF, {target:g} s text, {mode} | {row['rtf']} | {rtf_target} |")
        first_audio = row.get("first_audio_seconds")
        audio_target = f"<= {FIRST_CHUNK_TARGET}: {verdict(first_audio, FIRST_CHUNK_TARGET, False)}" if greedy else "-"
        lines.append(f"| first audio sample, streamed within the sentence, {target:g} s text, {mode} (s) | "
                     f"{first_audio if first_audio is not None else '-'} | {audio_target} |")
        first_sentence = row.get("first_sentence_seconds", row.get("first_chunk_seconds"))
        lines.append(f"| first whole sentence, {target:g} s text, {mode} (s) | {first_sentence} | - |")
    return lines


def _infer_lines(infer: dict) -> list[str]:
    why_not = f"{infer.get('device')}, size {infer.get('size')}"

    def verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
        return _judged(_on_target_machine(infer), why_not, value, target, higher_is_better)

    lines = _decode_table(infer, verdict) + ["", "| figure | value | target |", "|---|---|---|"]
    vocoder = infer.get("vocoder", {}).get("audio_per_second")
    lines.append(f"| BigVGAN audio s per s | {vocoder} | >= {VOCODER_TARGET:g}: {verdict(vocoder, VOCODER_TARGET)} |")
    lines += _end_to_end_lines(infer, verdict)
    peak = infer.get("peak_memory_bytes")
    lines.append(f"| peak memory, inference (GiB) | {round(peak / 2**30, 2) if peak else '-'} | - |")
    return lines


def _judged(applies: bool, why_not: str, value: float | None, target: float, higher_is_better: bool = True) -> str:
    """met / missed where the target applies to this run, else why it is not judged; "-" without a figure."""
    if value is None:
        return "-"
    if not applies:
        return f"not judged ({why_not})"
    return "met" if (value >= target if higher_is_better else value <= target) else "missed"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _on_target_machine(result: dict) -> bool:
    return str(result.get("device", "")).startswith("cuda") and result.get("size") == "1.5"


def _train_lines(result: dict) -> list[str]:
    applies = _on_target_machine(result) and result.get("precision") == "bf16"
    why_not = f"{result.get('device')}, size {result.get('size')}, {result.get('precision')}"
    lines = [f"Precision {result.get('precision')}, compile {result.get('compile')}.", "",
             "| budget | max tokens | tokens/s | MFU | peak memory (MiB) | target |", "|---|---|---|---|---|---|"]
    for row in result.get("results", []):
        verdicts = [f"tokens/s >= {TRAIN_TOKENS_TARGET:,.0f}: "
                    f"{_judged(applies, why_not, row.get('tokens_per_s'), TRAIN_TOKENS_TARGET)}"]
        if row.get("budget") == "auto":
            verdicts.append(f"MFU >= {MFU_TARGET:.0%}: {_judged(applies, why_not, row.get('mfu'), MFU_TARGET)}")
        mfu = "-" if row.get("mfu") is None else row["mfu"]
        lines.append(f"| {row.get('budget')} | {row.get('max_tokens')} | {row.get('tokens_per_s')} | {mfu} | "
                     f"{row.get('peak_memory_mib')} | {'; '.join(verdicts)} |")
    return lines


def _train_e2e_lines(result: dict) -> list[str]:
    workload = (float(result.get("minutes", 0)), int(result.get("epochs", 0)))
    applies = _on_target_machine(result) and workload == E2E_WORKLOAD
    why_not = f"{result.get('device')}, size {result.get('size')}, {workload[0]:g} min x {workload[1]} epochs"
    verdict = _judged(applies, why_not, result.get("wall_s"), E2E_SECONDS_TARGET, False)
    return ["| figure | value | target |", "|---|---|---|",
            f"| {workload[0]:g} min x {workload[1]} epochs, {result.get('optimizer_steps')} steps, wall (s) | "
            f"{result.get('wall_s')} | <= {E2E_SECONDS_TARGET:g} s: {verdict} |",
            f"| peak memory (MiB) | {result.get('peak_memory_mib')} | - |"]


def _extraction_lines(result: dict) -> list[str]:
    applies = (_on_target_machine(result) and result.get("precision") == "fp16"
               and int(result.get("steady_utterances") or 0) >= EXTRACTION_MIN_UTTERANCES)
    why_not = (f"{result.get('device')}, size {result.get('size')}, {result.get('precision')}, "
               f"{result.get('steady_utterances')} utterances timed")
    steady, fresh = (_rounded(result.get(key)) for key in ("steady_utterances_per_second", "utterances_per_second"))
    checked = result.get("precision_check_batches")
    peak = result.get("peak_memory_bytes")
    return ["| figure | value | target |", "|---|---|---|",
            f"| steady utterances/s ({result.get('precision')}, batch {result.get('batch_size')}, "
            f"{result.get('steady_utterances')} utterances after the first batch) | {steady} | "
            f">= {EXTRACTION_TARGET:g}: {_judged(applies, why_not, steady, EXTRACTION_TARGET)} |",
            f"| weights loading (s), timed apart | {_rounded(result.get('model_loading_seconds'))} | - |",
            f"| utterances/s of the whole run (loading included) | {fresh} | - |",
            f"| audio hours per hour | {_rounded(result.get('audio_hours_per_hour'))} | - |",
            f"| half-precision batches checked against fp32 | {'every' if checked is None else f'first {checked}'}, "
            f"{result.get('fallback_batches')} of {result.get('batches')} fell back | - |",
            f"| peak memory (GiB) | {round(peak / 2**30, 2) if peak else '-'} | - |"]


def _learning_lines(result: dict) -> list[str]:
    """bench_learning.py's figures as it names them (its own JSON decides what they are)."""
    figures = {key: value for key, value in result.items() if isinstance(value, (int, float, str, bool))}
    return ["| figure | value |", "|---|---|"] + [f"| {key} | {value} |" for key, value in figures.items()]


def _train_v2_lines(result: dict) -> list[str]:
    """bench_train.py --family 2: LoRA training figures of IndexTTS-2 (no target yet: recorded)."""
    lines = [f"IndexTTS-{result.get('family')} at size {result.get('size')}, random weights, device "
             f"{result.get('device')}, precision {result.get('precision')}; tokens count the "
             f"{result.get('prefix_rows')} prefix rows of each example. No target yet.", "",
             "| budget | max tokens | rows | tokens/s | step (s) | MFU | peak memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for row in result.get("results", []):
        mfu = "-" if row.get("mfu") is None else row["mfu"]
        lines.append(f"| {row.get('budget')} | {row.get('max_tokens')} | {row.get('rows')} | "
                     f"{row.get('tokens_per_s')} | {row.get('step_s')} | {mfu} | {row.get('peak_memory_mib')} |")
    return lines


def _v2_lines(result: dict) -> list[str]:
    """bench_v2_reference.py: our medians per IndexTTS-2 stage (no target yet: the figures are recorded)."""
    lines = [f"Release size {result.get('size')}, random weights, device {result.get('device')}, "
             f"{result.get('repeats')} timed rounds; {result.get('note')}", "",
             "| stage | figure | median | min | max |", "|---|---|---|---|---|"]
    for stage, row in result.get("stages", {}).items():
        figure = row["ours"][row["unit"]]
        lines.append(f"| {stage} | {row['unit']} | {figure['median']} | {figure['min']} | {figure['max']} |")
    return lines


OTHER_STEPS = {"bench_train": ("Training (bench_train.py)", _train_lines),
               "bench_learning": ("Learning check (bench_learning.py)", _learning_lines),
               "bench_extraction": ("Extraction (bench_extraction.py)", _extraction_lines),
               "bench_train_e2e": ("Training end to end (bench_train_e2e.py)", _train_e2e_lines),
               "bench_train_v2": ("IndexTTS-2 LoRA training (bench_train.py --family 2)", _train_v2_lines),
               "bench_v2_reference": ("IndexTTS-2 stages (bench_v2_reference.py)", _v2_lines)}


def _other_lines(name: str, step: dict) -> list[str]:
    title, lines_of = OTHER_STEPS[name]
    result = step.get("result")
    return [f"## {title}", ""] + (lines_of(result) if result else [f"not run: {step.get('status')}"])


def _header(report: dict) -> list[str]:
    machine = report.get("machine", {})
    lines = [f"# GPU check, {report.get('date')}", "",
             f"Device {report.get('device')} ({machine.get('gpu', 'no GPU')}), size {report.get('size')}, "
             f"torch {machine.get('torch')} (CUDA {machine.get('cuda')}), transformers {machine.get('transformers')}, "
             f"flash attention {machine.get('flash_attention', '-')}; {report.get('seconds')} s in all.", "",
             "| step | status | seconds |", "|---|---|---|"]
    if report.get("interrupted"):
        lines[2:2] = [f"Interrupted: {report['interrupted']}; the steps below are what had finished.", ""]
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
    for name in OTHER_STEPS:
        lines += [""] + _other_lines(name, steps.get(name, {}))
    return "\n".join(lines) + "\n"
