"""``python -m indextts.webui``: the same as ``indextts-webui``."""

import sys

from indextts.webui import main

sys.exit(main())
