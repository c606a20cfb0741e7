"""``indextts-webui``: start the web UI (flags: ``indextts.webui.app.build_parser``; docs/webui.md)."""

from __future__ import annotations

import sys

from indextts.cli import configure_logging, run_command


def main(argv: list[str] | None = None) -> int:
    """Serve the page until interrupted; user errors print one message and exit 2."""
    from indextts.webui.app import build_parser, serve  # Gradio loads only when the page is built

    args = build_parser().parse_args(argv)
    configure_logging()
    return run_command(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
