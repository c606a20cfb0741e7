"""Write the embedded two-speaker bilingual demo speech set (eSpeak NG, no downloads).

    python tools/make_demo_data.py finetune_data/demo
    python tools/extract_codec.py --audio_list finetune_data/demo/demo_speaker_a.lst --audio_list ...

Each speaker gets a folder of 22,050 Hz wav files and an audio list ``<OUT_DIR>/<speaker>.lst``.
"""

from __future__ import annotations

import argparse
import sys

from demo_data import DEFAULT_SENTENCES_PER_SPEAKER, SENTENCES, make_demo_dataset
from indextts.errors import IndexTTSError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the speaker folders and audio lists into")
    parser.add_argument(
        "--sentences", type=int, default=DEFAULT_SENTENCES_PER_SPEAKER,
        help=f"sentences per speaker, 1 to {len(SENTENCES)} (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0,
        help="seed choosing the sentences and eSpeak's voicing noise (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        list_paths = make_demo_dataset(
            args.out_dir, sentences_per_speaker=args.sentences, seed=args.seed
        )
    except IndexTTSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for list_path in list_paths:
        print(f"Wrote audio list {list_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
