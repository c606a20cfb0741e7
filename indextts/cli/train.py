"""``indextts-train``: LoRA fine-tuning of the IndexTTS GPT on data from ``indextts-extract``.

One GPU (or CPU):
    indextts-train [key=value ...]                  e.g. run_dir=runs/my_voice train.epochs=3 train.lora.r=8
Several GPUs on one machine (DDP, NCCL; gloo on CPU):
    torchrun --standalone --nproc_per_node=4 -m indextts.cli.train [key=value ...]
Resume a killed or finished run from its latest complete checkpoint:
    indextts-train --resume run_dir=runs/my_voice   (same as train.resume=auto; overrides may follow the flags)

Every key, its default and its meaning: indextts/configs/train.yaml (docs/training.md).
"""

from __future__ import annotations

import argparse
import os
import sys

from indextts.cli import configure_logging, run_command


def build_parser() -> argparse.ArgumentParser:
    from indextts.training.config import DEFAULT_CONFIG

    parser = argparse.ArgumentParser(prog="indextts-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (dotlist), e.g. train.epochs=3")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="training config YAML merged over the packaged defaults (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest complete checkpoint in run_dir (train.resume=auto)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # overrides on either side of the flags
    configure_logging(verbose=not args.quiet, main_process=os.environ.get("RANK", "0") == "0")

    def work() -> None:
        from indextts.training import load_train_config, run_training

        overrides = list(args.overrides) + (["train.resume=auto"] if args.resume else [])
        run_training(load_train_config(args.config, overrides))

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
