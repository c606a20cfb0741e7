"""Fine-tuning learns a voice: teacher-student recovery on the tiny model, through the public API (issue 26).

A teacher (the base plus a random LoRA and a random condition per voice) "records" greedy codes for
60 texts per voice; extraction's own writers store them as extracted data (12 rows per voice held
out by extraction's split); ``run_training`` trains a student on two voices in one run; the student
speaks through ``IndexTTS.from_run`` by speaker name, then through the folder ``export_merged`` writes.
The loss going down proves none of this: a label shift, a condition that never reaches the GPT or
an export that drops the LoRA B matrices all fail here (docs/training.md, "Learning test").

The tiny teacher is made easier than the issue's first hand measurement, not the gates weaker
(constants and reasons in benchmarks/learning_recovery.py): smooth mel positions (inference embeds
the k-th code one position later than training, as the reference does; with the plain tiny model's
random positions a student cannot fit codes it will be asked for in another layout), a mel head
scaled x3, block weights x0.5 and a weak previous-code embedding (one wrong code does not derail
the rest), and a rank-2 teacher LoRA instead of the default 16 (not recovered in CPU test time).
The student itself is the packaged config (LoRA rank 16, learned conditions, warm-up + cosine) with
CPU-sized batches and learning rates (``SHORT_TRAINING``).

The shared code lives in benchmarks/learning_recovery.py, because it is a measurement harness and no
part of the product; benchmarks/bench_learning.py runs the same check at release size on a GPU.
"""

from __future__ import annotations

import sys

import pytest
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from learning_recovery import PRESETS, run_recovery  # noqa: E402  (a benchmark module, not a package)

HELDOUT_MIN = 0.6
HELDOUT_OVER_BASE = 3.0
TRAIN_MIN = 0.9
CONDITION_SHIFT_MIN = 1e-3  # relative change; a frozen condition gives exactly 0 (a trained one ~2e-2)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """One recovery run (two voices in one training run), shared by the tests below."""
    return run_recovery(PRESETS["tiny"], tmp_path_factory.mktemp("learning"))


def test_student_agrees_with_its_teacher_on_heldout_texts(report):
    assert 0.0 < report["training"]["teacher_forced_heldout"] <= 1.0  # reported beside the free-running figures
    for name, figures in report["per_voice"].items():
        assert figures["student_heldout"] >= HELDOUT_MIN, (name, figures)
        assert figures["student_heldout"] >= HELDOUT_OVER_BASE * figures["base_heldout"], (name, figures)


def test_student_memorises_its_training_texts(report):
    for name, figures in report["per_voice"].items():
        assert figures["student_train"] >= TRAIN_MIN, (name, figures)


def test_exported_folder_speaks_exactly_like_the_adapter(report):
    for name, figures in report["per_voice"].items():
        assert figures["export_equals_adapter"], (name, figures)
        assert figures["export_heldout"] == figures["student_heldout"], (name, figures)


def test_each_student_voice_is_closest_to_its_own_teacher(report):
    for name, figures in report["per_voice"].items():
        assert figures["other_teachers_heldout"], f"{name}: the voices were given different held-out texts"
        for other, agreement in figures["other_teachers_heldout"].items():
            assert figures["student_heldout"] > agreement, (name, other, figures)


def test_training_moves_each_speaker_condition(report):
    # The agreement gates cannot see a condition left at its medoid start: here the medoid is the teacher's
    # condition plus small noise, and the tiny GPT's codes depend weakly on it (docs/training.md).
    for name, figures in report["per_voice"].items():
        assert figures["condition_shift"] > CONDITION_SHIFT_MIN, (name, figures)
