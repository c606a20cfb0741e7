"""``python -m indextts <verb> …`` is ``indextts <verb> …`` (see :mod:`indextts.cli.verbs`)."""

import sys

from indextts.cli.verbs import main

if __name__ == "__main__":  # importing the module (e.g. the GPU check's preflight) runs nothing
    sys.exit(main())
