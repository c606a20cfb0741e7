"""Teacher-student recovery at a chosen size: does fine-tuning learn a voice, and how fast does it run?

    python benchmarks/bench_learning.py --size tiny --device cpu --json out.json      # the test's run
    python benchmarks/bench_learning.py --size 1.5 --device cuda --json out.json --budget_s 240   # GPU check, step 6
    python benchmarks/bench_learning.py --size 2 --device cpu --json out.json   # tiny IndexTTS-2 (~5 min on CPU)

The check of tests/test_learning.py (benchmarks/learning_recovery.py): a random teacher voice's
greedy codes are written as extracted data, ``run_training`` trains a student (two voices in one
run), and ``IndexTTS.from_run`` / the exported folder speak the held-out texts. Reported: held-out
greedy agreement with the teacher for the student, the base (chance level) and the export, the
training-text agreement, the teacher-forced held-out accuracy, training tokens/s, training and
total wall time. ``--budget_s`` stops training early when the budget is near (keeping about twice
the recording time, or a quarter of the budget, to measure), and the figures are still reported.

Expected duration: tiny on CPU ~30 s on an idle 2-core machine. 1.5 size on one H100/H200: writing
the random 1.5-size base (~1 GB, on the CPU) ~30-60 s, recording 2 x 60 texts and the measurement
~30 s, 144 training steps well under a minute, the export ~20 s: about 2-3 minutes in all (not yet
measured on a GPU; pass ``--budget_s`` to bound it).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path

from bench_train import emit  # benchmarks/ is on sys.path when this script runs
from learning_recovery import PRESETS, run_recovery
from learning_recovery_v2 import PRESETS_V2, run_recovery_v2


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="tiny", choices=sorted({**PRESETS, **PRESETS_V2}),
                        help="random base of this size; 2 is the tiny IndexTTS-2 folder")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--budget_s", type=float, default=None,
                        help="wall-time budget of the whole run; training stops early to keep it")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the preset's)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the base, data, run and export here")
    parser.add_argument("--json", type=Path, default=None, help="write the report here as well")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # Every recording is cut at a forced length on purpose: the per-sentence "did not finish" warning is noise here.
    logging.getLogger("indextts.inference").setLevel(logging.ERROR)
    preset = {**PRESETS, **PRESETS_V2}[args.size]
    config = dataclasses.replace(preset, device=args.device, budget_s=args.budget_s,
                                 epochs=args.epochs or preset.epochs)
    with tempfile.TemporaryDirectory() as temp:
        work = args.workdir or Path(temp)
        work.mkdir(parents=True, exist_ok=True)
        report = (run_recovery_v2 if args.size in PRESETS_V2 else run_recovery)(config, work)
    return emit({"benchmark": "learning", **report}, args.json)


if __name__ == "__main__":
    main()
