"""``indextts-extract``: turn audio lists into the fine-tuning features (codes, speaker conditions).

IndexTTS 1.0/1.5 folders give DVAE codes and conformer latents; IndexTTS-2/2.5 folders semantic codes,
speaker conditions and emotion vectors (the folder decides; see docs/extraction.md).

    indextts-extract --audio_list finetune_data/kaishu_30min.lst --extract_condition
    torchrun --nproc_per_node=4 -m indextts.cli.extract --audio_list a.lst --audio_list b.lst --extract_condition

Each list line is `audio_path<TAB>transcript` (or `audio_path|transcript`); one list holds one
speaker. Outputs go to --output_dir (see docs/extraction.md). Bad lines are skipped with a reason
in <speaker>/skipped.jsonl; re-running the same command after an interruption reuses every
finished utterance.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from indextts.cli import configure_logging, run_command
from indextts.checkpoint_folder.layout import CONFIG_FILENAME, DEFAULT_MODEL_DIR
from indextts.extraction.pipeline import (
    CONDITION_BATCHING,
    DEFAULT_OUTPUT_DIR,
    ExtractionOptions,
    default_num_workers,
    run_extraction,
)
from indextts.extraction.speaker_stats import DISTANCE_METRICS
from indextts.runtime import PRECISIONS
from indextts.runtime import world_size as torchrun_world_size

logger = logging.getLogger(__name__)


def _add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio_list", action="append", required=True, type=Path, metavar="LIST",
                        help="UTF-8 list of `audio_path<TAB>transcript` lines (or `|` as separator); "
                             "relative paths resolve from the list's folder. Repeat for several speakers.")
    parser.add_argument("--speaker", action="append", metavar="NAME",
                        help="speaker name for the matching --audio_list (default: the list file's stem); "
                             "give it once per list, in the same order")
    parser.add_argument("--extract_condition", action="store_true",
                        help="also save each utterance's condition (32 latents, or one CAMPPlus row for "
                             "IndexTTS-2.5) and, for IndexTTS-2/2.5, its emotion vector, and the speaker's "
                             "medoids (needed for training)")
    parser.add_argument("--model_dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help=f"base folder: IndexTTS 1.0/1.5 ({CONFIG_FILENAME}, dvae.pth, gpt.pth, bpe.model) or "
                             "IndexTTS-2/2.5 (its release and auxiliary files) (default: %(default)s)")
    parser.add_argument("--output_dir", type=Path, default=DEFAULT_OUTPUT_DIR,
                        help="root of the extracted data; one folder per speaker plus speaker_info.json "
                             "(default: %(default)s)")


def _add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto, cpu, cuda or cuda:N; under torchrun the local rank is added to the GPU "
                             "index (default: %(default)s = cuda when available)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="code model precision (DVAE, or w2v-BERT + semantic codec); bf16/fp16 (CUDA) are checked against fp32 on every batch and a "
                             "batch with any differing code keeps its fp32 codes. auto = fp16 on CUDA, fp32 "
                             "on the CPU. Conditions are always fp32 (default: %(default)s)")
    parser.add_argument("--precision_check_batches", type=int, default=None, metavar="N",
                        help="check only the first N batches of bf16/fp16 codes against fp32 (later ones run "
                             "once, in fp32 after any disagreement): faster, the equality is then sampled "
                             "(default: every batch)")
    parser.add_argument("--condition_batching", choices=CONDITION_BATCHING, default="auto",
                        help="compute conditions for a whole padded batch (batched) or one clip at a time "
                             "(single, byte-identical whatever --batch_size); auto = batched on CUDA "
                             "(default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=16,
                        help="utterances per model batch, grouped by length (default: %(default)s)")
    parser.add_argument("--num_workers", type=int, default=default_num_workers(),
                        help="processes decoding audio in parallel; 0 decodes in the main process "
                             "(default: the CPU count up to 8, here %(default)s)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def _add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1234, help="seed of the train/valid split (default: %(default)s)")
    parser.add_argument("--min_duration", type=float, default=0.5,
                        help="skip utterances shorter than this many seconds (default: %(default)s)")
    parser.add_argument("--max_duration", type=float, default=None,
                        help="skip utterances longer than this many seconds (default: only the model's "
                             "limits gpt.max_mel_tokens and gpt.max_text_tokens apply)")
    parser.add_argument("--valid_ratio", type=float, default=0.1,
                        help="share of each speaker's utterances held out for validation, at least one "
                             "(default: %(default)s)")
    parser.add_argument("--distance_metric", choices=DISTANCE_METRICS, default="euclidean",
                        help="distance used to pick the medoid condition (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indextts-extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_input_arguments(parser)
    _add_compute_arguments(parser)
    _add_selection_arguments(parser)
    return parser


def options_from(args: argparse.Namespace) -> ExtractionOptions:
    return ExtractionOptions(
        audio_lists=args.audio_list, speakers=args.speaker, model_dir=args.model_dir,
        output_dir=args.output_dir, extract_condition=args.extract_condition, device=args.device,
        precision=args.precision, precision_check_batches=args.precision_check_batches,
        condition_batching=args.condition_batching, batch_size=args.batch_size,
        num_workers=args.num_workers, seed=args.seed, min_duration=args.min_duration,
        max_duration=args.max_duration, valid_ratio=args.valid_ratio, distance_metric=args.distance_metric,
        progress=not args.no_progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    is_main = torchrun_world_size() <= 1 or int(os.environ.get("RANK", "0")) == 0
    configure_logging(verbose=True, main_process=is_main)

    def work() -> None:
        summary = run_extraction(options_from(args))
        if summary is not None:
            print(summary.format())

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
