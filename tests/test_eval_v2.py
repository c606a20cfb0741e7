"""indextts-eval on an IndexTTS-2 run: the same WER/CER + SIM rows and selection as for 1.5, and --promote.

The run is real (demo eSpeak speech -> IndexTTS-2 extraction -> 4 LoRA steps on the tiny IndexTTS-2
folder); ASR and SIM are the tiny random Whisper and WavLM of test_eval.py (plumbing, not quality).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import train_tiny_eval_run, write_tiny_wavlm, write_tiny_whisper

from indextts.cli.eval import main
from indextts.run_folder import RunFolder

pytestmark = pytest.mark.slow

STEPS = 4


@pytest.fixture(scope="module")
def v2_run(tmp_path_factory, tiny_v2_dirs) -> Path:
    """A finished tiny IndexTTS-2 run with checkpoints at steps 2 and 4 and one validation row per speaker."""
    return train_tiny_eval_run(tmp_path_factory.mktemp("eval_v2_run"), tiny_v2_dirs["2"], STEPS)


@pytest.fixture(scope="module")
def tiny_backends(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("eval_v2_backends")
    return ["--asr", f"whisper:{write_tiny_whisper(root / 'whisper')}",
            "--sim", f"wavlm:{write_tiny_wavlm(root / 'wavlm')}"]


def test_an_indextts2_run_is_scored_and_its_chosen_checkpoint_promoted(v2_run, tiny_backends, tmp_path):
    run_dir = shutil.copytree(v2_run, tmp_path / "run")
    assert str(RunFolder(run_dir).config().model.family) == "2"
    chosen = "step_00000002"
    assert main(["--run", str(run_dir), "--checkpoints", "2", "4", *tiny_backends, "--device", "cpu",
                 "--max_mel_tokens", "8", "--epsilon", "1", "--promote"]) == 0
    eval_dir = run_dir / "eval"
    for name in (chosen, "step_00000004"):
        rows = [json.loads(line) for line in (eval_dir / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert {r["speaker"] for r in rows} == {"demo_speaker_a", "demo_speaker_b"}
        for row in rows:
            assert "error" not in row, row
            assert row["audio_seconds"] > 0 and -1.0 <= row["sim"] <= 1.0 and row["tokens_mixed"] > 0
    assert json.loads((eval_dir / "best.json").read_text())["best"] == chosen  # epsilon 1: the earliest wins
    source = run_dir / "checkpoints" / chosen
    for name in ("adapter/adapter_model.safetensors", "speakers.safetensors", "speakers.json"):
        assert (run_dir / name).read_bytes() == (source / name).read_bytes(), name
