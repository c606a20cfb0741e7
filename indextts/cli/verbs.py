"""``indextts <verb> …``: one entry point for every command, beside the ``indextts-*`` scripts.

``indextts train run_dir=runs/a`` runs exactly what ``indextts-train run_dir=runs/a`` runs: each verb
hands its arguments to the same command module's ``main``. The verb table is static, so
``indextts --help`` answers without importing torch.
"""

from __future__ import annotations

import importlib
import sys

from indextts.cli import EXIT_USER_ERROR

VERBS: dict[str, tuple[str, str]] = {
    "prepare": ("indextts.cli.prepare", "long recordings -> clips, transcripts, an audio list and review.csv"),
    "extract": ("indextts.cli.extract", "audio lists -> codes, speaker conditions, manifests, speaker_info.json"),
    "train": ("indextts.cli.train", "LoRA fine-tuning on extracted data (key=value overrides, --resume)"),
    "eval": ("indextts.cli.eval", "WER/CER and speaker similarity per checkpoint; --promote the best"),
    "infer": ("indextts.cli.infer", "speak text with the base model or fine-tuned voices"),
    "serve": ("indextts.cli.serve", "OpenAI-compatible speech server (/v1/audio/speech)"),
    "export": ("indextts.cli.export", "merge a run's adapter into a complete checkpoint folder"),
    "webui": ("indextts.cli.webui", "the web page: prepare, train, evaluate and listen"),
    "download": ("indextts.cli.download", "fetch a release (1.5, 1.0, 2, 2.5) into a verified model folder"),
    "voice": ("indextts.cli.voice", "voice build: recordings -> prepared, trained, evaluated voice and report"),
    "report": ("indextts.cli.report", "report.html / report.md of a prepared, trained and evaluated voice"),
    "tiny": ("indextts.cli.tiny", "write a tiny random-weight checkpoint folder (tests, demos)"),
}
"""verb -> (command module with ``main(argv)``, one-line summary)."""


def usage() -> str:
    """The text of ``indextts --help``: the verbs, one line each."""
    width = max(map(len, VERBS))
    lines = [f"  {verb.ljust(width)}  {summary}" for verb, (_, summary) in VERBS.items()]
    return ("usage: indextts <verb> [arguments]\n\nverbs:\n" + "\n".join(lines) +
            "\n\n`indextts <verb> --help` shows a verb's arguments; the verbs run the same code as the indextts-* "
            "commands (indextts-train, ...).")


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv[0]`` to its command; ``--help`` (or nothing) prints the verbs."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if arguments else EXIT_USER_ERROR
    verb, rest = arguments[0], arguments[1:]
    if verb not in VERBS:
        print(f"error: 'indextts {verb}' is not a command. The verbs are: {', '.join(VERBS)}. "
              "Run `indextts --help` for what each does.", file=sys.stderr)
        return EXIT_USER_ERROR
    return importlib.import_module(VERBS[verb][0]).main(rest)
