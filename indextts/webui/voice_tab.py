"""The "Build voice" tab: recordings -> ``indextts voice build`` as one job -> a promoted voice and a report."""

from __future__ import annotations

import gradio as gr

from indextts.webui import backend
from indextts.webui.workspace import Workspace, job_panel, reporting_errors, started


def build(workspace: Workspace) -> None:
    """Lay out the tab's components and wire their events (inside an open gr.Blocks)."""
    settings = workspace.settings
    gr.Markdown("### From recordings to an evaluated voice, in one step\nPrepares, extracts, trains, evaluates "
                "(the best checkpoint is promoted) and writes `report.html` into the project folder, as "
                "`indextts voice build` does. Pressing the button again continues a stopped build and skips "
                "finished stages.")
    with gr.Row():
        uploads = gr.File(file_count="multiple", label="Upload recordings", elem_id="voice-uploads")
        paths = gr.Textbox(lines=4, label="...or files and folders on this machine, one per line",
                           elem_id="voice-paths")
    with gr.Row():
        speakers = gr.Textbox(label="Voice names", elem_id="voice-speakers",
                              info="one name for all recordings, or one per line per recording in order; "
                                   "empty: one voice per subfolder of a single folder")
        language = gr.Textbox(label="Language", elem_id="voice-language",
                              info="ISO 639-1 (en, zh, ...); empty: Whisper detects it")
        asr = gr.Textbox("auto", label="ASR backend", info="auto, whisper:<path or hub id>, pocketsphinx, paraformer")
    project = gr.Textbox(str(settings.workdir / "voices" / "voice"), label="Project folder", elem_id="voice-project")
    panel = job_panel(workspace, "voice", "voice", "Build voice")

    @reporting_errors(outputs=1)
    def build_voice(files, typed: str, names: str, spoken: str, backend_spec: str, folder: str):
        policy = workspace.paths
        recordings = [policy.check(path, "The recording") for path in
                      [str(f) for f in files or []] + backend.nonempty_lines(typed)]
        job = backend.start_voice_build(
            workspace.board, recordings, backend.nonempty_lines(names), str(settings.model_dir),
            policy.check(folder, "The project folder", write=True), spoken,
            policy.check_backend(backend_spec, "The ASR model"), settings.device)
        return started(job)

    panel.start.click(build_voice, [uploads, paths, speakers, language, asr, project], panel.message)
