"""The page (five tabs in one gr.Blocks), its command-line settings and the server that serves it
(the ``indextts-webui`` command is :mod:`indextts.cli.webui`)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

from indextts.checkpoint_folder.layout import DEFAULT_MODEL_DIR
from indextts.webui.workspace import Settings, Workspace

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
LOCAL_MONO_FONTS = ["ui-monospace", "monospace"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indextts-webui", description="Start the index-tts-lora web UI.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model_dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help="base checkpoint folder the page starts with")
    parser.add_argument("--workdir", type=Path, default=Path("webui_work"),
                        help="where prepared data, extracted data, runs and job logs go by default")
    parser.add_argument("--allow_dir", type=Path, action="append", default=[],
                        help="another folder the page may read and write (recordings, lists, runs); repeatable. "
                             "Requests naming paths outside --workdir, --model_dir (read only) and these are refused")
    parser.add_argument("--device", default="auto", help="torch device for extraction and speech (auto, cpu, cuda)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on; anything but 127.0.0.1 exposes the page to the network")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    return parser


def build_app(workspace: Workspace):
    """The gr.Blocks page with the Build voice (all stages in one job), Data, Extract & train, Evaluate
    and Listen tabs."""
    import gradio as gr

    from indextts.webui import data_tab, evaluate_tab, speak_tab, train_tab, voice_tab

    with gr.Blocks(title="IndexTTS LoRA") as app:
        gr.Markdown("## IndexTTS LoRA: prepare, train, evaluate, listen")
        with gr.Tab("One step", id="voice"):
            voice_tab.build(workspace)
        with gr.Tab("Data", id="data"):
            data_tab.build(workspace)
        with gr.Tab("Extract & train", id="train"):
            train_tab.build(workspace)
        with gr.Tab("Evaluate", id="evaluate"):
            evaluate_tab.build(workspace)
        # "Listen", not "Speak": the tab's action button is "Speak".
        with gr.Tab("Listen", id="speak"):
            speak_tab.build(workspace)
    return app


def _interrupt(signum, frame) -> None:
    """SIGTERM ends the server like Ctrl-C, so running jobs are stopped rather than orphaned."""
    raise KeyboardInterrupt


def serve(args: argparse.Namespace) -> None:
    """Build the page and serve it until interrupted; stops every background job on the way out."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    workspace = Workspace(Settings(model_dir=args.model_dir, workdir=args.workdir, device=args.device,
                                   allowed_dirs=tuple(args.allow_dir)))
    theme = gr.themes.Soft(font=LOCAL_FONTS, font_mono=LOCAL_MONO_FONTS)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        build_app(workspace).queue().launch(server_name=args.host, server_port=args.port, theme=theme,
                                             share=False, inbrowser=False, footer_links=[])
    finally:
        workspace.board.stop_all()
