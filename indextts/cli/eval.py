"""Command line of ``indextts-eval`` (also ``python -m indextts.evaluation``): parse flags, run, print the summary."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

from indextts.cli import configure_logging, run_command
from indextts.errors import EvaluationError
from indextts.evaluation.pipeline import (
    DEFAULT_ASR,
    DEFAULT_EPSILON,
    DEFAULT_SIM,
    EvalSettings,
    evaluate_run,
)
from indextts.evaluation.report import summary_csv
from indextts.evaluation.scoring import ANY_LANGUAGE
from indextts.inference import SynthesisOptions

_LANGUAGE_PREFIX = re.compile(r"^([A-Za-z][\w-]*)=(.+)$")
"""``key=spec``: any word before "=" is a language key (unknown ones are refused, not read as a spec)."""


def parse_asr_specs(specs: list[str] | None) -> dict[str, str]:
    """``["en=pocketsphinx", "whisper:x"]`` -> {"en": "pocketsphinx", "*": "whisper:x"}; default: auto for all."""
    routes: dict[str, str] = {}
    for spec in specs or [DEFAULT_ASR]:
        match = _LANGUAGE_PREFIX.match(spec)
        language, backend = (match.group(1), match.group(2)) if match else (ANY_LANGUAGE, spec)
        if language in routes:
            raise EvaluationError(f"--asr gives two backends for {'every language' if language == '*' else language}: "
                                  f"'{routes[language]}' and '{backend}'. Give one per language (en=..., zh=...).")
        routes[language] = backend
    return routes


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag documented in --help)."""
    parser = argparse.ArgumentParser(
        prog="indextts-eval",
        description="Score a training run's checkpoints by intelligibility (ASR error rate) and speaker "
                    "similarity on held-out sentences, write runs/<name>/eval/, and pick the best checkpoint.",
)
    parser.add_argument("--run_dir", "--run", dest="run", required=True, type=Path,
                        help="training run folder (runs/<name>)")
    parser.add_argument("--checkpoints", nargs="+",
                        help="checkpoints to score: step numbers, step_XXXXXXXX names or 'final' (default: all)")
    parser.add_argument("--asr", action="append", metavar="[LANG=]SPEC",
                        help=f"ASR backend, for every language or one (LANG: en or zh; mixed text is zh); "
                             f"repeatable. Specs: auto[:<whisper path or hub id>] (per language, a backend that knows "
                             f"it: Whisper, Paraformer for zh when installed, PocketSphinx for en offline), "
                             f"whisper:<path or hub id>, pocketsphinx, paraformer[:<model>] (default {DEFAULT_ASR})")
    parser.add_argument("--sim", default=DEFAULT_SIM,
                        help="speaker encoder: auto (WavLM-Base-Plus-SV when it can be loaded here, else the offline "
                             "resemblyzer), wavlm:<path or hub id> or resemblyzer (default %(default)s)")
    parser.add_argument("--texts", type=Path, help="extra sentences (UTF-8, one a line) said by every speaker")
    parser.add_argument("--max_per_speaker", type=int, help="most validation rows per speaker (default: all)")
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON,
                        help="SIM tolerance of the selection rule: lowest error rate among checkpoints within "
                             "epsilon of the best SIM (default %(default)s)")
    parser.add_argument("--promote", action="store_true",
                        help="copy the chosen checkpoint over the run's final adapter (atomically)")
    parser.add_argument("--seed", type=int, default=0, help="base seed; each sentence gets a fixed seed from it (default %(default)s)")
    parser.add_argument("--max_mel_tokens", type=int, default=SynthesisOptions().generation.max_new_tokens,
                        help="most codes generated per sentence (default %(default)s)")
    parser.add_argument("--model_dir", type=Path, help="base checkpoint folder (default: model_dir of the run config)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: first GPU if any)")
    parser.add_argument("--verbose", action="store_true", help="log progress details")
    return parser


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    """EvalSettings from parsed command-line arguments."""
    if args.epsilon < 0:
        raise EvaluationError(f"--epsilon must be >= 0 (got {args.epsilon}); it is a SIM tolerance such as 0.02.")
    synthesis = SynthesisOptions()
    synthesis = replace(synthesis, generation=replace(synthesis.generation, max_new_tokens=args.max_mel_tokens))
    return EvalSettings(asr=parse_asr_specs(args.asr), sim=args.sim, seed=args.seed, device=args.device,
                        model_dir=args.model_dir, texts=args.texts, max_per_speaker=args.max_per_speaker,
                        synthesis=synthesis, epsilon=args.epsilon)


def main(argv: list[str] | None = None) -> int:
    """Entry point; user errors print one message and exit 2."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_command(lambda: _evaluate(args))


def _evaluate(args: argparse.Namespace) -> None:
    result = evaluate_run(args.run, settings_from_args(args), args.checkpoints, args.promote)
    print(summary_csv(result.summary), end="")
    print(f"best checkpoint: {result.best}" + (" (promoted to the final adapter)" if result.promoted else ""))
    print(f"results: {result.eval_dir}")


if __name__ == "__main__":
    sys.exit(main())
