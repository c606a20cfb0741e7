"""Fetch an IndexTTS release into the folder layout the toolkit reads, each file verified.

    indextts download 1.5                       # IndexTTS-1.5 into checkpoints/ (the default model_dir)
    indextts download 2.5 --dir models/v25      # IndexTTS-2.5 with its auxiliary models (hf_cache/)

Resumable: run the same command again after an interruption. Files already in the hub cache
(HF_HUB_CACHE) are copied from there; HF_ENDPOINT and HF_HUB_OFFLINE are honoured. The layout:
docs/installation.md.
"""

from __future__ import annotations

import argparse

from indextts.cli import configure_logging, run_command
from indextts.releases import RELEASES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indextts download", description=__doc__.splitlines()[0],
                                     epilog="\n".join(__doc__.splitlines()[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("version", help="the release: " + ", ".join(
        f"{key} ({release.name}, default --dir {release.default_dir})" for key, release in RELEASES.items()))
    parser.add_argument("--model_dir", "--dir", dest="dir",
                        help="the base folder to fill (created if missing; default: the release's, above)")
    parser.add_argument("--revision", help="a branch, tag or commit of the release repository (default: main); "
                                           "the auxiliary models always come from their main branch")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(verbose=False)

    def download() -> None:
        from indextts.download import download_release

        download_release(args.version, args.dir, args.revision)

    return run_command(download)


if __name__ == "__main__":
    raise SystemExit(main())
