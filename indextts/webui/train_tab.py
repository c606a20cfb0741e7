"""The "Extract & train" tab: extraction and training as background jobs, live curves, stop and resume."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.runtime import PRECISIONS
from indextts.webui import backend
from indextts.webui.workspace import (
    REFRESH_SECONDS,
    Workspace,
    job_panel,
    reporting_errors,
    started,
)

CURVES = (("train", "loss", "train loss"), ("train", "mel_loss", "train mel loss"),
          ("valid", "mel_loss", "validation mel loss"), ("valid", "text_loss", "validation text loss"))
CURVE_COLOURS = dict(zip([name for _, _, name in CURVES], ["#2563eb", "#93c5fd", "#dc2626", "#fca5a5"]))


def curve_figure(records: list[dict]) -> Figure | None:
    """Loss curves from metrics.jsonl records (None before the first step is logged).

    Uses matplotlib's object API (no pyplot state), so refreshes in parallel sessions stay apart.
    """
    if not records:
        return None
    figure = Figure(figsize=(10, 3.2), layout="constrained")
    axes = figure.add_subplot()
    for kind, key, name in CURVES:
        points = [(r["step"], r[key]) for r in records if r.get("kind") == kind and key in r]
        if points:
            steps, values = zip(*points)
            axes.plot(steps, values, marker="o", markersize=5 if kind == "valid" else 3, label=name,
                      color=CURVE_COLOURS[name])
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title(curve_title(records))
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right")
    return figure


def curve_title(records: list[dict]) -> str:
    steps = [r["step"] for r in records if r.get("kind") == "train"]
    return f"Training curves up to step {steps[-1]}" if steps else "Training curves"


def curve_caption(records: list[dict]) -> str:
    """One line under the plot: what has been logged so far."""
    train = [r for r in records if r.get("kind") == "train"]
    valid = [r for r in records if r.get("kind") == "valid"]
    if not train:
        return "No training steps logged yet."
    text = f"Logged up to step {train[-1]['step']}: loss {train[-1]['loss']:.4f}"
    if valid:
        text += f"; validation mel loss {valid[-1]['mel_loss']:.4f} at step {valid[-1]['step']}"
    return text + f" ({len(train)} training records, {len(valid)} validations)."


def _extraction_section(workspace: Workspace) -> dict:
    settings = workspace.settings
    with gr.Row():
        model_dir = gr.Textbox(str(settings.model_dir), label="Base checkpoint folder", elem_id="base-model-dir",
                               info=f"{CONFIG_FILENAME}, gpt.pth, dvae.pth, bpe.model, ...")
        device = gr.Textbox(settings.device, label="Device", info="auto, cpu, cuda, cuda:1, ...")
    audio_lists = gr.Textbox(label="Audio lists, one per line (one speaker each: path<TAB>transcript)", lines=3,
                             elem_id="extract-audio-lists",
                             value=str(settings.prepared_dir / "<speaker>.lst"))
    output_dir = gr.Textbox(str(settings.extracted_dir), label="Extracted data folder", elem_id="extract-output")
    panel = job_panel(workspace, "extract", "extract", "Extract")

    @reporting_errors(outputs=1)
    def extract(lists, model, out, dev):
        paths = workspace.paths
        return started(backend.start_extraction(workspace.board, paths.check_lines(lists, "The audio list"),
                                                paths.check(model, "The base checkpoint folder"),
                                                paths.check(out, "The extracted data folder", write=True), dev))

    panel.start.click(extract, [audio_lists, model_dir, output_dir, device], panel.message)
    return model_dir


def _training_options(workspace: Workspace) -> dict:
    settings, defaults = workspace.settings, backend.training_defaults()
    with gr.Row():
        speaker_info = gr.Textbox(str(settings.extracted_dir / "speaker_info.json"), label="Speakers (speaker_info.json)",
                                  elem_id="train-speaker-info")
        run_dir = gr.Textbox(str(settings.runs_dir / "voice"), label="Run folder", elem_id="train-run-dir")
    with gr.Row():
        epochs = gr.Number(defaults["epochs"], label="Epochs", precision=0, minimum=1, elem_id="train-epochs")
        max_steps = gr.Number(0, label="Max steps (0: by epochs)", precision=0, minimum=0, elem_id="train-max-steps")
        lr = gr.Number(defaults["lr"], label="Learning rate", elem_id="train-lr")
        rank = gr.Number(defaults["lora_r"], label="LoRA r (alpha = 2r)", precision=0, minimum=1, elem_id="train-rank")
        budget = gr.Textbox(defaults["token_budget"], label="Token budget per batch", elem_id="train-budget",
                            info="padded positions per micro-batch, or auto")
        precision = gr.Dropdown(list(PRECISIONS), value=defaults["precision"], label="Precision", elem_id="train-precision")
    with gr.Accordion("More options", open=False, elem_id="train-more"):
        extra = gr.Textbox(label="Config overrides, one key=value per line (see configs/train.yaml)", lines=3,
                           elem_id="train-extra")
    return {"speaker_info": speaker_info, "run_dir": run_dir, "epochs": epochs, "max_steps": max_steps,
            "lr": lr, "rank": rank, "budget": budget, "precision": precision, "extra": extra}


def _training_section(workspace: Workspace, model_dir: gr.Textbox) -> None:
    options = _training_options(workspace)
    panel = job_panel(workspace, "train", "train", "Start training", resume=True, follow=False)
    plot = gr.Plot(label="Training curves", elem_id="train-curves")
    caption = gr.Markdown("No training steps logged yet.", elem_id="train-curve-caption")
    with gr.Accordion("Log", open=False):
        log = gr.Textbox(lines=12, max_lines=12, show_label=False, elem_id="train-log", autoscroll=True)
    fields = [model_dir] + [options[k] for k in ("speaker_info", "run_dir", "epochs", "max_steps", "lr",
                                                 "rank", "budget", "precision", "extra")]

    def launcher(resume_run: bool):
        @reporting_errors(outputs=1)
        def launch(model, speaker_info, run, *options):
            paths = workspace.paths
            *numbers, extra = options
            choices = backend.TrainingChoices(
                paths.check(model, "The base checkpoint folder"), paths.check(speaker_info, "The speaker list"),
                paths.check(run, "The run folder", write=True), *numbers, paths.check_overrides(extra))
            return started(backend.start_training(workspace.board, choices, resume=resume_run))
        return launch

    panel.start.click(launcher(False), fields, panel.message)
    panel.resume.click(launcher(True), fields, panel.message)
    _refresh_on_timer(workspace, options["run_dir"], panel.status, plot, caption, log)


def _refresh_on_timer(workspace: Workspace, run_dir, status, plot, caption, log) -> None:
    """Every second: job status with ETA, and the curves when metrics.jsonl has grown."""
    reader = gr.State(None)

    def refresh(folder: str, metrics: backend.MetricsReader | None):
        job = workspace.board.get("train")
        tail = "\n".join(job.log_text().splitlines()[-40:]) if job is not None else ""
        if metrics is None or str(metrics.run_dir) != folder.strip():
            metrics = backend.MetricsReader(Path(folder.strip()))
        if not workspace.paths.may_read(folder) or not metrics.read():
            return workspace.board.summary("train"), gr.skip(), gr.skip(), tail, metrics
        records = metrics.records
        return workspace.board.summary("train"), curve_figure(records), curve_caption(records), tail, metrics

    gr.Timer(REFRESH_SECONDS).tick(refresh, [run_dir, reader], [status, plot, caption, log, reader],
                                   show_progress="hidden")


def build(workspace: Workspace) -> None:
    """Lay out the tab's components and wire their events (inside an open gr.Blocks)."""
    gr.Markdown("### 1. Extract codes and speaker conditions\nOne audio list per speaker; the list's file name "
                "is the speaker's name.")
    model_dir = _extraction_section(workspace)
    gr.Markdown("### 2. Train LoRA adapters and speaker conditions")
    _training_section(workspace, model_dir)
