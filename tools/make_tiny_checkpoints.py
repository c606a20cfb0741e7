"""Checkout path of ``python -m indextts.cli.tiny``: a small random-weight IndexTTS checkpoint folder.

    python tools/make_tiny_checkpoints.py checkpoints/tiny            # tiny, seconds on a CPU
    python tools/make_tiny_checkpoints.py /tmp/rand15 --release 1.5   # release sizes, for benchmarks
"""

import sys

from indextts.cli.tiny import main

if __name__ == "__main__":
    sys.exit(main())
