"""Merge a training run's LoRA adapter into the base GPT and write a complete checkpoint folder.

    python tools/export_merged.py runs/my_voice OUTPUT_DIR [--model_dir checkpoints]

OUTPUT_DIR gets gpt.pth ({"model": state_dict}, the official format the reference IndexTTS loads
unchanged), config.yaml, bpe.model, dvae.pth, bigvgan_generator.pth, and the run's
speakers.safetensors + speakers.json (learned conditions and vocoder reference mels).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from indextts.errors import IndexTTSError
from indextts.lora import export_merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="training run folder written by train.py (runs/<name>)")
    parser.add_argument("output_dir", type=Path, help="folder to write the merged checkpoint into")
    parser.add_argument("--model_dir", type=Path, default=Path("checkpoints"),
                        help="base checkpoint folder the run was trained from (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = export_merged(args.run_dir, args.model_dir, args.output_dir)
    except IndexTTSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.getLogger("export_merged").info("Wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
