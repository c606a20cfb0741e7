"""Write a small seeded random-weight IndexTTS checkpoint folder in the official formats.

    python tools/make_tiny_checkpoints.py checkpoints/tiny            # tiny, seconds on a CPU
    python tools/make_tiny_checkpoints.py /tmp/rand15 --release 1.5   # release sizes, for benchmarks

The folder holds config.yaml, gpt.pth, dvae.pth, bigvgan_generator.pth and bpe.model, loadable by
every tool that takes --model_dir. The weights are random: the speech is noise, not words.
"""

from __future__ import annotations

import argparse
import sys

from indextts.errors import IndexTTSError
from indextts.tiny import RELEASES, write_tiny_checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the checkpoint files into (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)")
    parser.add_argument(
        "--release", choices=RELEASES, default="tiny",
        help="model sizes: tiny, or random weights of the IndexTTS 1.5 / 1.0 release sizes (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        out_dir = write_tiny_checkpoints(args.out_dir, seed=args.seed, release=args.release)
    except IndexTTSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {args.release} checkpoint folder {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
