"""``indextts-export``: merge a training run's LoRA adapter into the base GPT and write a complete
checkpoint folder that speaks the run's voices by name.

    indextts-export runs/my_voice OUTPUT_DIR [--model_dir checkpoints]
    indextts-infer --model_dir OUTPUT_DIR --speaker <name> --text "..." --output out.wav

OUTPUT_DIR becomes a base folder of the run's family: gpt.pth ({"model": state_dict}, the official
format the reference IndexTTS of that family loads unchanged), config.yaml, the tokenizer, the
base's other model files (1.0/1.5: dvae.pth, bigvgan_generator.pth; IndexTTS-2/2.5: s2mel.pth,
the w2v-BERT statistics, feat1.pt/feat2.pt, 2.5's codec.pth and the hf_cache/ models), the run's
speakers.safetensors + speakers.json (learned conditions and reference prompts) and export.json.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from indextts.inference.export import export_merged
from indextts.run_folder import RunFolder
from indextts.cli import configure_logging, run_command

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indextts-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, metavar="RUN_DIR OUTPUT_DIR",
                        help="the run folder and the output folder, when not given as --run_dir / --output_dir")
    parser.add_argument("--run_dir", type=Path, help="training run folder written by indextts-train (runs/<name>)")
    parser.add_argument("--output_dir", type=Path, help="folder to write the merged checkpoint into")
    parser.add_argument("--model_dir", type=Path,
                        help="base checkpoint folder the run was trained from (default: model_dir in the run's config)")
    parser.add_argument("--allow_base_mismatch", action="store_true",
                        help="merge even when the run was trained on other base weights or another bpe.model")
    return parser


def _folders(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Fill ``run_dir`` and ``output_dir`` from the flags, then from the positional folders in that order."""
    positional = list(args.folders)
    for name in ("run_dir", "output_dir"):
        if getattr(args, name) is None and positional:
            setattr(args, name, positional.pop(0))
    if positional or args.run_dir is None or args.output_dir is None:
        parser.error("give the run folder and the output folder once each: `indextts-export RUN_DIR OUTPUT_DIR` "
                     "or `--run_dir RUN_DIR --output_dir OUTPUT_DIR`")
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``indextts-export``; user errors print one message and exit 2."""
    parser = build_parser()
    args = _folders(parser, parser.parse_args(argv))
    configure_logging()

    def work() -> None:
        model_dir = args.model_dir or RunFolder(args.run_dir).model_dir()
        out = export_merged(args.run_dir, model_dir, args.output_dir, allow_base_mismatch=args.allow_base_mismatch)
        logger.info("Wrote %s", out)

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
