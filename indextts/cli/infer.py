"""``indextts-infer``: speak text with IndexTTS, zero-shot from a reference or with fine-tuned voices.

    indextts-infer --model_dir checkpoints --adapter runs/kaishu --speaker kaishu_30min \\
        --text "今天天气不错。" --output out.wav
    indextts-infer --reference_audio prompt.wav --text_file lines.txt --output out_dir/
    indextts-infer --adapter runs/a --adapter runs/b --speaker b:narrator --list test.lst --output out_dir/

``python -m indextts.infer`` and ``python indextts/infer.py`` run the same command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from indextts.cli import configure_logging, run_command
from indextts.cli.options import (
    add_runtime_options,
    add_synthesis_options,
    runtime_kwargs,
    synthesis_options_from_args,
)
from indextts.cli.utterance_lists import read_list_file, read_text_file
from indextts.checkpoint_folder.layout import CONFIG_FILENAME, DEFAULT_MODEL_DIR
from indextts.errors import IndexTTSError, InferenceError
from indextts.inference import IndexTTS, SynthesisResult
from indextts.run_folder import RunFolder
from indextts.runtime import resolve_device
from indextts.inference.synthesis import SynthesisOptions, check_writable


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults only for options that have a meaningful one."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model and voice")
    model.add_argument("--model_dir", help=f"base folder with {CONFIG_FILENAME}, gpt.pth, bigvgan_generator.pth, "
                       f"bpe.model (default: the run's model_dir with --adapter, else {DEFAULT_MODEL_DIR})")
    model.add_argument("--run_dir", "--adapter", dest="adapter", action="append", default=[],
                       help="training run folder (runs/<name>) whose voices to load; repeat for several runs")
    model.add_argument("--speaker", help="voice: a speaker name, or run:speaker when several runs share it "
                       "(default: the only loaded voice)")
    model.add_argument("--reference_audio",
                       help="reference recording: the zero-shot voice, or with --speaker the vocoder's reference")
    model.add_argument("--allow_base_mismatch", action="store_true",
                       help="load runs trained on other base weights or another bpe.model (with a warning)")


def _add_text_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("text and output")
    inputs = group.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--text", help="the text to speak; --output is a .wav file")
    inputs.add_argument("--text_file", type=Path,
                        help="UTF-8 file, one utterance per line; --output is a folder of <line>.wav files")
    inputs.add_argument("--list", type=Path, dest="list_file",
                        help="file of 'uid|prompt_text|prompt_wav|target_text' lines; --output is a "
                             "folder of <uid>.wav files; prompt_wav is the voice when no --speaker is given")
    group.add_argument("--output", type=Path, required=True, help="output .wav file, or folder for --text_file/--list")
    group.add_argument("--sample_rate", type=int, help="sample rate of the written wavs, resampled once "
                       "(default: the model's, 24000 for IndexTTS 1.x, 22050 for IndexTTS-2/2.5)")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag documented in --help)."""
    parser = argparse.ArgumentParser(
        prog="indextts-infer", formatter_class=_HelpFormatter,
        description="Synthesise speech with IndexTTS, zero-shot from a reference recording or with "
                    "fine-tuned LoRA runs' voices.")
    _add_model_arguments(parser)
    _add_text_arguments(parser)
    add_synthesis_options(parser)
    runtime = add_runtime_options(parser)
    runtime.add_argument("--verbose", action="store_true", help="print per-stage times and the real-time factor")
    return parser


def load_model(args: argparse.Namespace) -> IndexTTS:
    """The IndexTTS the arguments describe (base folder, runs, device, precisions)."""
    resolve_device(args.device)  # an unusable device fails before any weights load
    model_dir = args.model_dir or (RunFolder(args.adapter[0]).model_dir() if args.adapter else DEFAULT_MODEL_DIR)
    runs = {Path(run).expanduser().resolve().name: run for run in args.adapter}
    return IndexTTS.from_pretrained(model_dir, adapters=runs, allow_base_mismatch=args.allow_base_mismatch,
                                    **runtime_kwargs(args))


def _batch_output_dir(path: Path) -> Path:
    if path.suffix.lower() == ".wav" or path.is_file():
        raise InferenceError(
            f"With --text_file or --list, --output is a folder for the numbered wavs, not the file "
            f"{path}. Give a folder, e.g. --output {path.with_suffix('')}/.")
    return path


def _synthesize_lines(args: argparse.Namespace, options: SynthesisOptions) -> int:
    """--text_file / --list: one wav per line; a bad line is reported and the others still run."""
    output_dir = _batch_output_dir(args.output)
    if args.text_file is not None:
        utterances, problems = read_text_file(args.text_file, output_dir), []
    else:
        utterances, problems = read_list_file(args.list_file, output_dir)
    if not utterances and not problems:
        raise InferenceError(f"{args.text_file or args.list_file} holds no text. Put one utterance per line.")
    tts = load_model(args)
    written = 0
    for utterance in tqdm(utterances, desc="utterances", unit="line", disable=len(utterances) < 2):
        # A per-line prompt wav is the voice only in zero-shot mode; a chosen speaker or an explicit
        # --reference_audio wins.
        reference = args.reference_audio or (None if args.speaker else utterance.reference_audio)
        try:
            result = tts.synthesize_to_file(utterance.text, utterance.output, args.speaker, reference, options,
                                            args.sample_rate)
        except IndexTTSError as error:
            problems.append(f"line {utterance.line_number}: {error}")
            continue
        written += 1
        _report(args, utterance.output, result)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} line(s) failed; {written} wav(s) written to {output_dir}.",
              file=sys.stderr)
    return 2 if problems else 0


def run_cli(args: argparse.Namespace) -> int:
    """Run the command line; returns the exit status (0 ok, 2 when any utterance failed)."""
    options = synthesis_options_from_args(args)
    if args.sample_rate is not None and args.sample_rate < 1:
        raise InferenceError(f"--sample_rate must be a positive number of samples per second (got {args.sample_rate}); "
                             "leave it out to write the model's own rate.")
    if args.text is None:
        return _synthesize_lines(args, options)
    check_writable(args.output)  # before the slow model load
    result = load_model(args).synthesize_to_file(args.text, args.output, args.speaker, args.reference_audio, options,
                                                 args.sample_rate)
    _report(args, args.output, result)
    return 0


def _report(args: argparse.Namespace, output: Path, result: SynthesisResult) -> None:
    print(f"{output}  ({result.timings.audio_seconds:.2f} s, {len(result.sentences)} sentence(s))")
    if args.verbose:
        print(result.timings.summary())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``indextts-infer``; user errors print one message and exit 2."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_command(lambda: run_cli(args))


if __name__ == "__main__":
    sys.exit(main())
