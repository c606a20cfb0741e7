"""The "Data" tab: recordings -> preparation job -> clip review (listen, fix, drop) -> audio list."""

from __future__ import annotations

import gradio as gr

from indextts.webui import backend
from indextts.webui.workspace import Workspace, job_panel, reporting_errors, started

KEEP, CLIP, TRANSCRIPT = 0, 1, 6
"""Column positions in backend.REVIEW_TABLE_COLUMNS."""


def _preparation_section(workspace: Workspace) -> None:
    settings = workspace.settings
    with gr.Row():
        uploads = gr.File(file_count="multiple", label="Upload recordings", elem_id="data-uploads")
        paths = gr.Textbox(lines=4, label="...or files and folders on this machine, one per line",
                           elem_id="data-paths")
    with gr.Row():
        speaker = gr.Textbox(label="Speaker name", info="default: one speaker per subfolder, else the file name")
        asr = gr.Textbox("auto", label="ASR backend",
                         info="auto (one that knows the language), whisper:<path or hub id>, pocketsphinx "
                              "(English, offline), paraformer")
        language = gr.Textbox(label="Language", info="ISO 639-1 (en, zh, ...); empty: Whisper detects it")
        output_dir = gr.Textbox(str(settings.prepared_dir), label="Output folder", elem_id="data-output")
    panel = job_panel(workspace, "prepare", "data", "Run preparation")

    @reporting_errors(outputs=1)
    def prepare(files, typed: str, name: str, backend_spec: str, spoken: str, out: str):
        paths = workspace.paths
        named = [str(f) for f in files or []] + backend.nonempty_lines(typed)
        inputs = [paths.check(path, "The recording") for path in named]
        job = backend.start_prepare(workspace.board, inputs, paths.check(out, "The output folder", write=True), name,
                                    paths.check_backend(backend_spec, "The ASR model"), str(settings.model_dir),
                                    spoken)
        return started(job)

    panel.start.click(prepare, [uploads, paths, speaker, asr, language, output_dir], panel.message)


def _review_section(workspace: Workspace) -> None:
    settings = workspace.settings
    with gr.Row():
        list_path = gr.Textbox(str(settings.prepared_dir / "<speaker>.lst"), label="Audio list to review",
                               elem_id="data-list", scale=4)
        load = gr.Button("Load clips", elem_id="data-load", scale=1)
    table = gr.Dataframe(headers=backend.REVIEW_TABLE_COLUMNS, interactive=True, elem_id="data-table",
                         datatype=["bool", "str", "number", "str", "str", "str", "str"],
                         column_count=(len(backend.REVIEW_TABLE_COLUMNS), "fixed"), wrap=True)
    player = gr.Audio(label="Selected clip", type="numpy", interactive=False, elem_id="data-player")
    with gr.Row():
        export_path = gr.Textbox(str(settings.prepared_dir / "reviewed.lst"), label="Export kept clips to",
                                 elem_id="data-export-path", scale=4)
        export = gr.Button("Export audio list", elem_id="data-export", scale=1)
    message = gr.Markdown(elem_id="data-review-message")

    paths = workspace.paths

    @reporting_errors(outputs=2)
    def load_clips(path: str):
        rows = backend.review_table(paths.check(path, "The audio list"))
        return rows, f"{len(rows)} clips. Click a row to listen; edit a transcript in place; untick **keep** to drop."

    @reporting_errors(outputs=2)
    def play(rows, event: gr.SelectData):
        clip = paths.check(rows.iloc[event.index[0], CLIP], "The clip")
        return backend.read_clip(clip), f"Playing {clip}"

    @reporting_errors(outputs=1)
    def export_list(rows, target: str):
        kept = [(paths.check(row[CLIP], "The clip"), str(row[TRANSCRIPT])) for row in rows.values.tolist() if row[KEEP]]
        path = backend.write_audio_list(paths.new_file(target, "The list to export"), kept)
        paths.remember(path)
        return f"Wrote {len(kept)} clips to {path}; use it as an audio list on the next tab."

    load.click(load_clips, list_path, [table, message])
    table.select(play, table, [player, message])
    export.click(export_list, [table, export_path], message)


def build(workspace: Workspace) -> None:
    """Lay out the tab's components and wire their events (inside an open gr.Blocks)."""
    gr.Markdown("### Prepare long recordings\nSlices at pauses, normalises loudness and transcribes "
                "(`indextts-prepare`); writes `<output>/<speaker>.lst` and `review.csv`.")
    _preparation_section(workspace)
    gr.Markdown("### Review clips")
    _review_section(workspace)
