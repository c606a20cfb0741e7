"""``python -m indextts.webui``: the same as ``indextts-webui`` (:mod:`indextts.cli.webui`)."""

import sys

from indextts.cli.webui import main

if __name__ == "__main__":
    sys.exit(main())
