"""``python -m indextts.serving`` is ``indextts-serve`` (see :mod:`indextts.cli.serve`)."""

import sys

from indextts.cli.serve import main

if __name__ == "__main__":
    sys.exit(main())
