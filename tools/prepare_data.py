"""Turn long recordings into clips and an audio list (same as the `indextts-prepare` command).

    python tools/prepare_data.py --input recordings/ --output_dir data --speaker alice
"""

import sys

from indextts.cli.prepare import main

if __name__ == "__main__":
    sys.exit(main())
