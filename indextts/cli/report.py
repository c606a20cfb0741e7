"""``indextts report``: the report of a prepared, trained and evaluated voice (report.html + report.md).

    indextts report --run voices/kaishu/run --prepared voices/kaishu/prepared/kaishu \\
        --features voices/kaishu/features --out voices/kaishu

``indextts voice build`` writes it as its last stage. The run must have been evaluated (indextts-eval).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from indextts.cli import configure_logging, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indextts report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", "--run", dest="run", type=Path, required=True,
                        help="the evaluated training run folder")
    parser.add_argument("--prepared", type=Path, action="append", default=[],
                        help="an indextts-prepare output folder (its review.csv); repeatable")
    parser.add_argument("--features", type=Path, required=True, help="the indextts-extract output folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for report.html, report.md, report_files/")
    parser.add_argument("--commands", type=Path, help="a text file of the commands that made the voice, one a line")
    parser.add_argument("--device", default="cpu", help="device of the report's syntheses (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()

    def work() -> None:
        from indextts.report import write_report

        commands = [line for line in args.commands.read_text(encoding="utf-8").splitlines()
                    if line and not line.startswith("#")] if args.commands else []
        html, markdown = write_report(prepared_dirs=args.prepared, features_dir=args.features, run_dir=args.run,
                                      out_dir=args.out, commands=commands, device=args.device)
        print(f"Report: {html}\n        {markdown}")

    return run_command(work)


if __name__ == "__main__":
    sys.exit(main())
