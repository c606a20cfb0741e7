"""Upstream script path of ``indextts-export`` (merge a run's adapter into a complete checkpoint folder).

    python tools/export_merged.py runs/my_voice OUTPUT_DIR [--model_dir checkpoints]
"""

import sys

from indextts.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
