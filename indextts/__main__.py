"""``python -m indextts <verb> …`` is ``indextts <verb> …`` (see :mod:`indextts.cli.verbs`)."""

import sys

from indextts.cli.verbs import main

sys.exit(main())
