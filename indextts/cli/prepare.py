"""indextts-prepare: long recordings -> clips, transcripts and an audio list ready for extraction.

    indextts-prepare --input recordings/ --output_dir data --speaker alice --language en
    indextts-prepare --input speakers/ --output_dir data    # one speaker per subfolder of speakers/

Writes <output_dir>/<speaker>/*.wav, <output_dir>/<speaker>.lst and <output_dir>/review.csv.
Running it again resumes an interrupted recording at its next clip, reuses every finished one and
keeps your edits of <speaker>.lst (only new clips are added). Flagged clips (low ASR confidence,
unspeakable text) stay out of the list until you approve them in review.csv (approved = yes);
see docs/preparation.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from indextts.cli import configure_logging, run_command
from indextts.prepare.loudness import LoudnessOptions
from indextts.prepare.pipeline import PrepareOptions, run_prepare
from indextts.prepare.slicing import SlicingOptions


def build_parser() -> argparse.ArgumentParser:
    slicing, loudness = SlicingOptions(), LoudnessOptions()
    parser = argparse.ArgumentParser(prog="indextts-prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", action="append", required=True, type=Path, metavar="PATH",
                        help="a recording or a folder of recordings (any format soundfile reads); repeatable")
    parser.add_argument("--output_dir", type=Path, required=True, help="where clips, lists and review.csv go")
    parser.add_argument("--speaker", help="speaker name of all inputs (default: one speaker per subfolder of a "
                                          "single input folder, else the input's name)")
    parser.add_argument("--asr", default="auto",
                        help="'auto[:<whisper path or hub id>]' (a backend that knows the language: Whisper, "
                             "Paraformer for zh when installed, PocketSphinx for en offline), "
                             "'whisper:<path or hub id>', 'pocketsphinx' (offline, English only) or "
                             "'paraformer[:<model>]' (default: %(default)s)")
    parser.add_argument("--language", help="language of the recordings (ISO 639-1, e.g. en, zh); default: Whisper "
                                           "detects it per clip")
    parser.add_argument("--device", default="cpu", help="torch device of the ASR model (default: %(default)s)")
    parser.add_argument("--model_dir", type=Path,
                        help="checkpoint folder to prepare for: its max_mel_tokens caps the clip length and "
                             "its bpe.model checks transcripts (default: the release config's limits)")
    parser.add_argument("--min_seconds", type=float, default=slicing.min_seconds, help="shortest clip (default: %(default)s)")
    parser.add_argument("--max_seconds", type=float, default=slicing.max_seconds, help="longest clip (default: %(default)s)")
    parser.add_argument("--padding", type=float, default=slicing.padding,
                        help="silence kept on each side of the speech, seconds (default: %(default)s)")
    parser.add_argument("--min_pause", type=float, default=slicing.min_pause,
                        help="shortest pause to cut at, seconds (default: %(default)s)")
    parser.add_argument("--vad_threshold", type=float, default=slicing.threshold,
                        help="Silero VAD speech probability threshold (default: %(default)s)")
    parser.add_argument("--target_lufs", type=float, default=loudness.target_lufs,
                        help="loudness every clip is normalised to (default: %(default)s)")
    parser.add_argument("--peak_dbfs", type=float, default=loudness.peak_dbfs,
                        help="sample peak ceiling; louder gains stop here (default: %(default)s)")
    parser.add_argument("--min_snr_db", type=float, default=loudness.min_snr_db,
                        help="flag clips whose SNR estimate is below this (default: %(default)s)")
    parser.add_argument("--min_confidence", type=float, default=0.0,
                        help="flag clips whose ASR confidence is below this, besides the backend's own bar "
                             "(Whisper: 0.5); flagged clips are left out of the list unless "
                             "approved in review.csv or --keep_doubtful (default: %(default)s)")
    parser.add_argument("--keep_doubtful", action="store_true",
                        help="list flagged clips too (they stay marked in review.csv)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    return PrepareOptions(
        inputs=args.input, output_dir=args.output_dir, speaker=args.speaker, asr=args.asr,
        language=args.language, device=args.device, model_dir=args.model_dir,
        slicing=SlicingOptions(min_seconds=args.min_seconds, max_seconds=args.max_seconds, padding=args.padding,
                               min_pause=args.min_pause, threshold=args.vad_threshold),
        loudness=LoudnessOptions(target_lufs=args.target_lufs, peak_dbfs=args.peak_dbfs, min_snr_db=args.min_snr_db),
        min_confidence=args.min_confidence, keep_doubtful=args.keep_doubtful, progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    return run_command(lambda: print(run_prepare(options_from_args(args)).format()))


if __name__ == "__main__":
    sys.exit(main())
