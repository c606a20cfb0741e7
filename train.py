"""LoRA fine-tuning of the IndexTTS GPT on data from tools/extract_codec.py.

One GPU (or CPU):
    python train.py [key=value ...]                 e.g. run_dir=runs/my_voice train.epochs=3 train.lora.r=8
Several GPUs on one machine (DDP, NCCL; gloo on CPU):
    torchrun --standalone --nproc_per_node=4 train.py [key=value ...]
Several machines (run on each, with its own --node_rank):
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 train.py
Resume a killed or finished run from its latest complete checkpoint:
    python train.py --resume run_dir=runs/my_voice  (same as train.resume=auto)

Defaults and their meaning: configs/train.yaml. The result in run_dir is read by
``indextts.lora.load_trained_run``; tools/export_merged.py writes a merged official gpt.pth.
"""

from __future__ import annotations

import argparse
import logging
import sys

from indextts.errors import IndexTTSError
from indextts.trainer import DEFAULT_CONFIG, load_train_config, run_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="config overrides as key=value (dotlist), e.g. train.epochs=3")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config YAML (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest complete checkpoint in run_dir (train.resume=auto)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides) + (["train.resume=auto"] if args.resume else [])
    try:
        run_training(load_train_config(args.config, overrides))
    except IndexTTSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
