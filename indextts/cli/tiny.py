"""Write a small seeded random-weight IndexTTS checkpoint folder in the official formats.

    python -m indextts.cli.tiny checkpoints/tiny                 # tiny IndexTTS-1.5, seconds on a CPU
    python -m indextts.cli.tiny /tmp/rand15 --release 1.5        # release sizes, for benchmarks
    python -m indextts.cli.tiny checkpoints/tiny2 --release 2    # tiny IndexTTS-2 (or 2.5), all parts

The 1.x folders hold config.yaml, gpt.pth, dvae.pth, bigvgan_generator.pth and bpe.model; the
IndexTTS-2 / 2.5 folders the release files plus tiny auxiliary models under hf_cache/ (w2v-BERT,
semantic codec, CAMPPlus, BigVGAN v2) and must go to a new or empty folder. Every tool that takes
--model_dir loads them. The weights are random: the speech is noise, not words.
``python tools/make_tiny_checkpoints.py`` in a checkout runs the same command.
"""

from __future__ import annotations

import argparse
import sys

from indextts.cli import run_command
from indextts.tiny import RELEASES, write_tiny_checkpoints
from indextts.v2.tiny import VERSIONS as V2_VERSIONS
from indextts.v2.tiny import write_tiny_v2_folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m indextts.cli.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the checkpoint files into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    parser.add_argument(
        "--release", choices=RELEASES + V2_VERSIONS, default="tiny",
        help="tiny (IndexTTS-1.5 layout, tiny sizes); 1.5 / 1.0: random weights of those release sizes; "
             "2 / 2.5: a tiny IndexTTS-2 / 2.5 folder with all its parts (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def write() -> None:
        if args.release in V2_VERSIONS:
            out_dir = write_tiny_v2_folder(args.out_dir, version=args.release, seed=args.seed)
            print(f"Wrote tiny IndexTTS-{args.release} checkpoint folder {out_dir}")
            return
        out_dir = write_tiny_checkpoints(args.out_dir, seed=args.seed, release=args.release)
        print(f"Wrote {args.release} checkpoint folder {out_dir}")

    return run_command(write)


if __name__ == "__main__":
    sys.exit(main())
