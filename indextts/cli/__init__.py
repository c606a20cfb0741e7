"""Console scripts (``indextts-*``): argument parsing, logging set-up and one error wrapper.

Each command module holds ``build_parser()`` and ``main(argv)``; ``main`` hands its work to
:func:`run_command`, so every command turns a user error into the same one-paragraph message on
stderr and exit status 2, and an interrupt into exit status 130 with nothing lost.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from indextts.errors import EXIT_INTERRUPTED, EXIT_USER_ERROR, IndexTTSError

__all__ = ["EXIT_INTERRUPTED", "EXIT_USER_ERROR", "configure_logging", "run_command"]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool = True, main_process: bool = True) -> None:
    """INFO (or WARNING when not ``verbose``) on the main process; only warnings from other ranks."""
    level = logging.INFO if verbose and main_process else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)


def run_command(work: Callable[[], int | None]) -> int:
    """Run ``work``; an IndexTTSError prints ``error: <message>`` and returns 2, Ctrl-C returns 130."""
    try:
        status = work()
    except IndexTTSError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to continue.", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if status is None else int(status)
