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
from indextts.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    from indextts.training.config import DEFAULT_CONFIG

    parser = argparse.ArgumentParser(prog="indextts-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (dotlist), e.g. train.epochs=3")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="training config YAML merged over the packaged defaults (default: %(default)s)")
    parser.add_argument("--model_dir", help="the base checkpoint folder (the config key model_dir)")
    parser.add_argument("--run_dir", help="the run folder to write (the config key run_dir)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest complete checkpoint in run_dir (train.resume=auto)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    return parser


def _with_folder_flags(args: argparse.Namespace) -> list[str]:
    """The overrides plus ``--model_dir`` / ``--run_dir`` as keys; a flag and its key must agree."""
    overrides = list(args.overrides)
    for key in ("model_dir", "run_dir"):
        flag = getattr(args, key)
        given = [item.partition("=")[2] for item in overrides if item.partition("=")[0] == key]
        if flag is not None and any(value != flag for value in given):
            raise ConfigError(f"--{key} {flag} and {key}={given[0]} disagree. Give the folder once (the flag or "
                              "the key).")
        overrides += [f"{key}={flag}"] if flag is not None and not given else []
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # overrides on either side of the flags
    configure_logging(verbose=not args.quiet, main_process=os.environ.get("RANK", "0") == "0")

    def work() -> None:
        from indextts.training import load_train_config, run_training

        overrides = _with_folder_flags(args) + (["train.resume=auto"] if args.resume else [])
        run_training(load_train_config(args.config, overrides))

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
