"""Write a small seeded random-weight IndexTTS checkpoint folder in the official formats.

    python -m indextts.cli.tiny checkpoints/tiny                 # tiny, seconds on a CPU
    python -m indextts.cli.tiny /tmp/rand15 --release 1.5        # release sizes, for benchmarks

The folder holds config.yaml, gpt.pth, dvae.pth, bigvgan_generator.pth and bpe.model, loadable by
every tool that takes --model_dir. The weights are random: the speech is noise, not words.
``python tools/make_tiny_checkpoints.py`` in a checkout runs the same command.
"""

from __future__ import annotations

import argparse
import sys

from indextts.cli import run_command
from indextts.tiny import RELEASES, write_tiny_checkpoints

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m indextts.cli.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the checkpoint files into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    parser.add_argument(
        "--release", choices=RELEASES, default="tiny",
        help="model sizes: tiny, or random weights of the IndexTTS 1.5 / 1.0 release sizes (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def write() -> None:
        out_dir = write_tiny_checkpoints(args.out_dir, seed=args.seed, release=args.release)
        print(f"Wrote {args.release} checkpoint folder {out_dir}")

    return run_command(write)


if __name__ == "__main__":
    sys.exit(main())
