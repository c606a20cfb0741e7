"""Upstream-style path of ``indextts-extract`` (kept so the seed's commands still work).

    python tools/extract_codec.py --audio_list finetune_data/kaishu_30min.lst --extract_condition
    torchrun --nproc_per_node=4 tools/extract_codec.py --audio_list a.lst --extract_condition
"""

import sys

from indextts.cli.extract import main

if __name__ == "__main__":
    sys.exit(main())
