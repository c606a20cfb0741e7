"""``indextts-webui``: a Gradio page over the same library functions and commands as the CLI.

Four tabs: Data (prepare and review clips), Extract & train (background jobs, live curves),
Evaluate (summary, plot, promote) and Listen (streamed speech, A/B). See docs/webui.md.
Gradio is imported only when the page is built, so ``import indextts.webui`` stays light.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Console script entry point (``indextts-webui``); see ``indextts.webui.app.build_parser``."""
    from indextts.webui.app import main as run

    return run(argv)
