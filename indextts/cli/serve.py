"""``indextts-serve``: serve base models (one per family) and their fine-tuned voices over an
OpenAI-compatible HTTP API.

    indextts-serve --model_dir checkpoints --adapter runs/a --adapter narrator=runs/b --port 8000
    indextts-serve --model_dir checkpoints --model_dir checkpoints/v2 --adapter runs/a --adapter runs/v2_voice

See docs/serving.md for the endpoints, the request fields and examples.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from indextts.cli import configure_logging, run_command
from indextts.cli.options import (
    add_runtime_options,
    add_synthesis_options,
    runtime_kwargs,
    synthesis_options_from_args,
)
from indextts.checkpoint_folder.layout import DEFAULT_MODEL_DIR
from indextts.errors import ConfigError

logger = logging.getLogger(__name__)

API_KEY_VARIABLE = "INDEXTTS_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    """Every flag of ``indextts-serve`` (documented in --help)."""
    from indextts.serving.app import ServerSettings

    settings = ServerSettings()
    parser = argparse.ArgumentParser(prog="indextts-serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     description="Serve IndexTTS voices over an OpenAI-compatible speech API.")
    model = parser.add_argument_group("model and voices")
    model.add_argument("--model_dir", type=Path, action="append", default=[],
                       help=f"a base checkpoint folder; repeat for one base per family (each run speaks on its own "
                            f"base: docs/serving.md). Default: {DEFAULT_MODEL_DIR} when no run is given")
    model.add_argument("--run_dir", "--adapter", dest="adapter", action="append", default=[], metavar="[NAME=]RUN_DIR",
                       help="a training run whose speakers become voices NAME:speaker (NAME defaults to the "
                            "run folder's name); repeat for more runs")
    model.add_argument("--allow_base_mismatch", action="store_true",
                       help="load runs trained on another base or tokenizer (with a warning)")
    add_synthesis_options(parser)
    add_runtime_options(parser)
    network = parser.add_argument_group("network")
    network.add_argument("--host", default="127.0.0.1",
                         help="address to bind; the default answers this machine only (0.0.0.0: every interface)")
    network.add_argument("--port", type=int, default=8000)
    network.add_argument("--api_key", default=os.environ.get(API_KEY_VARIABLE),
                         help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_VARIABLE}, else none)")
    queueing = parser.add_argument_group("queue")
    queueing.add_argument("--max_queue", type=int, default=settings.max_queue,
                          help="most requests queued or running; more answer 503")
    queueing.add_argument("--max_batch", type=int, default=settings.max_batch,
                          help="most concurrent requests synthesised in one batch")
    queueing.add_argument("--batch_wait_ms", type=float, default=settings.batch_wait * 1000,
                          help="how long the model thread waits for more requests to batch")
    queueing.add_argument("--request_timeout", type=float, default=settings.request_timeout,
                          help="seconds before a request answers 504")
    queueing.add_argument("--max_input_chars", type=int, default=settings.max_input_chars,
                          help="longest input accepted; longer answers 413")
    queueing.add_argument("--max_emotion_audio_bytes", type=int, default=settings.max_emotion_audio_bytes,
                          help="largest emotion clip (emotion_audio_base64, decoded) accepted; 0 refuses clips")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def adapters_from_args(values: list[str]) -> dict[str, Path]:
    """``[NAME=]RUN_DIR`` values -> {name: run folder}; a name used twice raises ConfigError."""
    adapters: dict[str, Path] = {}
    for value in values:
        name, separator, path = value.partition("=")
        if not separator or "/" in name or os.sep in name:
            path = value
            name = Path(value.rstrip("/" + os.sep)).name
        if name in adapters:
            raise ConfigError(f"Two --adapter runs are both named '{name}' ({adapters[name]} and {path}). "
                              f"Name them explicitly, e.g. --adapter {name}2={path}.")
        adapters[name] = Path(path)
    return adapters


def _check_settings(args: argparse.Namespace) -> None:
    problems = [f"--{flag} must be >= 1 (got {getattr(args, flag)})"
                for flag in ("max_queue", "max_batch", "max_input_chars", "num_beams") if getattr(args, flag) < 1]
    problems += [f"--{flag} must be > 0 (got {getattr(args, flag)})"
                 for flag in ("request_timeout",) if getattr(args, flag) <= 0]
    problems += [f"--{flag} must be >= 0 (got {getattr(args, flag)})"
                 for flag in ("batch_wait_ms", "max_emotion_audio_bytes") if getattr(args, flag) < 0]
    if problems:
        raise ConfigError("Invalid server settings: " + "; ".join(problems) + ". Fix them and start again.")


def _warn_if_exposed(host: str, api_key: str | None) -> None:
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback and not api_key:
        logger.warning("Serving on %s without --api_key: anyone who can reach this address can use the "
                       "server. Set --api_key (or $%s) unless the network is trusted.", host, API_KEY_VARIABLE)


def load_tts(args: argparse.Namespace):
    """The VoiceRouter the arguments describe: each base once with its runs, device, precision and vocoder mode."""
    from indextts.serving.bases import load_router, plan_bases

    plans = plan_bases(args.model_dir, adapters_from_args(args.adapter))
    for plan in plans:
        logger.info("Base %s (%s) with runs: %s", plan.model_dir, plan.family, ", ".join(plan.runs) or "none")
    return load_router(plans, allow_base_mismatch=args.allow_base_mismatch, **runtime_kwargs(args))


def serve(args: argparse.Namespace) -> None:
    """Load the base and the runs once, then serve until interrupted."""
    import uvicorn

    from indextts.serving.app import ServerSettings, create_app

    _check_settings(args)
    tts = load_tts(args)
    options = synthesis_options_from_args(args)
    settings = ServerSettings(api_key=args.api_key, max_queue=args.max_queue, max_batch=args.max_batch,
                              batch_wait=args.batch_wait_ms / 1000, request_timeout=args.request_timeout,
                              max_input_chars=args.max_input_chars, options=options,
                              max_emotion_audio_bytes=args.max_emotion_audio_bytes)
    _warn_if_exposed(args.host, args.api_key)
    logger.info("Serving %d voice(s) on http://%s:%d", len(tts.voices), args.host, args.port)
    uvicorn.run(create_app(tts, settings), host=args.host, port=args.port,
                log_level="warning" if args.quiet else "info")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``indextts-serve``; user errors print one message and exit 2."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=not args.quiet)
    return run_command(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
