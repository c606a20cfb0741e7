"""``python -m indextts.evaluation`` = ``indextts-eval``: score a run's checkpoints (see indextts.evaluation.pipeline)."""

import sys

from indextts.cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
