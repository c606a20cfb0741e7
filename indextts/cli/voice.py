"""``indextts voice build``: raw recordings to an evaluated, promoted voice and a report, in one command.

    indextts voice build recordings/kaishu/ --speaker kaishu --base checkpoints --project voices/kaishu
    indextts voice build alice.wav bob/ --speaker alice --speaker bob --base checkpoints --project voices/ab
    indextts voice build recordings/ --base checkpoints --project voices/all   (one subfolder per speaker)

Runs indextts-prepare, -extract, -train, -eval --promote and the report into --project. Run it
again to continue after a stop: finished stages are skipped, a stopped one resumes (training from
its last checkpoint), and a stage whose inputs changed runs again, saying why.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from indextts.cli import configure_logging, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indextts voice", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="build")
    build = actions.add_parser("build", help="prepare, extract, train, evaluate and report, resumable")
    build.add_argument("recordings", nargs="+", type=Path, help="recording files or folders")
    build.add_argument("--speaker", action="append", default=[], metavar="NAME",
                       help="voice name: once for all recordings, or once per recording (repeatable); omit it "
                            "for one folder holding a subfolder per speaker")
    build.add_argument("--model_dir", "--base", dest="base", type=Path, required=True,
                       help="the base checkpoint folder (release files)")
    build.add_argument("--project", type=Path, required=True, help="the folder everything is written to")
    build.add_argument("--language", help="language of the recordings (ISO 639-1, e.g. en, zh); default: detected")
    build.add_argument("--asr", help="ASR for transcripts and evaluation (default: each stage's own)")
    build.add_argument("--sim", help="speaker encoder of the evaluation (default: indextts-eval's)")
    build.add_argument("--device", help="cpu, cuda, cuda:1 (default: each stage's own, a GPU when there is one)")
    build.add_argument("--train", action="append", default=[], metavar="KEY=VALUE", dest="train_overrides",
                       help="training config override, e.g. --train train.epochs=5 (repeatable)")
    build.add_argument("--max_eval_per_speaker", type=int, help="most held-out sentences scored per voice")
    build.add_argument("--serve", action="store_true", help="start indextts-serve with the new voices at the end")
    build.add_argument("--port", type=int, default=8000, help="port of --serve (default %(default)s)")
    return parser


def next_commands(args: argparse.Namespace, speakers: list[str]) -> list[str]:
    """The commands that use the new voices."""
    run = str(args.project / "run")
    serve = ["indextts-serve", "--model_dir", str(args.base), "--adapter", run, "--port", str(args.port)]
    infer = [["indextts-infer", "--adapter", run, "--speaker", speaker, "--text", "Hello from my new voice.",
              "--output", f"{speaker}.wav"] for speaker in speakers]
    return [shlex.join(serve), *map(shlex.join, infer)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()

    def work() -> int:
        from indextts.voice.build import BuildOptions, build_voice, speaker_inputs

        args.recordings, args.base, args.project = [p.absolute() for p in args.recordings], args.base.absolute(), \
            args.project.absolute()  # the recorded commands then hold wherever the build is run from
        options = BuildOptions(recordings=args.recordings, speakers=args.speaker, base=args.base, project=args.project,
                               language=args.language, asr=args.asr, sim=args.sim, device=args.device,
                               train_overrides=args.train_overrides, max_eval_per_speaker=args.max_eval_per_speaker)
        build_voice(options)
        commands = next_commands(args, list(speaker_inputs(args.recordings, args.speaker)))
        print("Your voices are ready. Serve them, or speak one line:\n  " + "\n  ".join(commands))
        print(f"Report: {args.project / 'report.html'}")
        if args.serve:
            from indextts.cli.serve import main as serve

            return serve(shlex.split(commands[0])[1:])
        return 0

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
