"""The "Evaluate" tab: score a run's checkpoints (indextts-eval), show the summary and plot, promote one."""

from __future__ import annotations

import gradio as gr

from indextts.webui import backend
from indextts.webui.workspace import Workspace, job_panel, reporting_errors, started


def _run_section(workspace: Workspace) -> tuple[gr.Textbox, gr.Button]:
    with gr.Row():
        run_dir = gr.Textbox(str(workspace.settings.runs_dir / "voice"), label="Run folder", elem_id="eval-run", scale=3)
        asr = gr.Textbox(label="ASR backend", scale=2, elem_id="eval-asr",
                         info="empty: the library's default (Whisper); e.g. en=pocketsphinx for offline English")
        sim = gr.Textbox(label="Speaker encoder", scale=2, elem_id="eval-sim",
                         info="empty: the library's default (WavLM); resemblyzer works offline")
    panel = job_panel(workspace, "evaluate", "eval", "Evaluate checkpoints")
    refresh = gr.Button("Show results", elem_id="eval-refresh")

    @reporting_errors(outputs=1)
    def evaluate(folder: str, asr_spec: str, sim_spec: str):
        paths = workspace.paths
        job = backend.start_evaluation(workspace.board, paths.check(folder, "The run folder", write=True),
                                       paths.check_backend(asr_spec, "The ASR model"),
                                       paths.check_backend(sim_spec, "The speaker encoder model"))
        return started(job)

    panel.start.click(evaluate, [run_dir, asr, sim], panel.message)
    return run_dir, refresh


def build(workspace: Workspace) -> None:
    """Lay out the tab's components and wire their events (inside an open gr.Blocks)."""
    gr.Markdown("### Which checkpoint sounds best?\nEach kept checkpoint speaks held-out sentences; an ASR model "
                "scores intelligibility (WER/CER) and a speaker encoder the similarity (SIM) to real recordings.")
    run_dir, refresh = _run_section(workspace)
    with gr.Row():
        table = gr.Dataframe(label="Summary (eval/summary.csv)", interactive=False, elem_id="eval-summary", scale=3)
        plot = gr.Image(label="WER and SIM by step", type="filepath", interactive=False, elem_id="eval-plot", scale=2)
    with gr.Row():
        checkpoint = gr.Dropdown([], label="Checkpoint to promote", elem_id="eval-checkpoint", scale=3)
        promote = gr.Button("Promote to final adapter", elem_id="eval-promote", scale=1)
    result = gr.Markdown(elem_id="eval-result")

    @reporting_errors(outputs=4)
    def show(folder: str):
        folder = workspace.paths.check(folder, "The run folder")
        rows, plot_path = backend.read_eval_summary(folder)
        names = [path.name for path in backend.checkpoint_folders(folder)]
        note = "" if rows else "No evaluation results in this run yet: press 'Evaluate checkpoints'."
        frame = [list(r.values()) for r in rows]
        headers = list(rows[0].keys()) if rows else ["checkpoint"]
        choice = gr.Dropdown(choices=names, value=names[-1] if names else None)
        return gr.Dataframe(value=frame, headers=headers), plot_path, choice, note

    @reporting_errors(outputs=1)
    def promote_checkpoint(folder: str, name: str):
        return backend.promote(workspace.paths.check(folder, "The run folder", write=True), name)

    refresh.click(show, run_dir, [table, plot, checkpoint, result])
    promote.click(promote_checkpoint, [run_dir, checkpoint], result)
