"""Write a long recording made of demo utterances and pauses, to try `indextts-prepare` on.

    python tools/make_long_recording.py --out demo_out/raw/demo_speaker_a.wav

It generates the eSpeak demo speech set, joins one speaker's utterances with pauses of 0.5-1.5 s
and writes the wav plus `<out>.segments.tsv` (start, end, text of every utterance in seconds).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from demo_data import SAMPLE_RATE, SENTENCES, make_demo_dataset
from indextts.errors import IndexTTSError
from indextts.prepare.demo_recording import build_long_recording


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="wav file to write")
    parser.add_argument("--speaker_index", type=int, default=0, choices=(0, 1), help="demo speaker (default: 0)")
    parser.add_argument("--sentences", type=int, default=12, help=f"utterances, 1-{len(SENTENCES)} (default: 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentences and pauses (default: 0)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as demo_dir:
            lists = make_demo_dataset(demo_dir, sentences_per_speaker=args.sentences, seed=args.seed)
            rng = random.Random(args.seed)
            pauses = [rng.uniform(0.5, 1.5) for _ in range(args.sentences - 1)]
            segments = build_long_recording(lists[args.speaker_index], args.out, pauses, SAMPLE_RATE)
    except IndexTTSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = "".join(f"{s.start:.3f}\t{s.end:.3f}\t{s.text}\n" for s in segments)
    args.out.with_suffix(".segments.tsv").write_text(rows, encoding="utf-8")
    print(f"Wrote {args.out} ({segments[-1].end + 0.5:.1f} s, {len(segments)} utterances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
