"""benchmarks/bench_v2_reference.py: the plumbing of the IndexTTS-2 stage benchmark, in --quick mode on this
project's side only (the reference environment is not on CI machines; its side is optional)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_v2_reference as bench  # noqa: E402  (script modules beside the benchmarks, not a package)
import v2_bench_folder  # noqa: E402
from v2_bench_stages import QUICK  # noqa: E402


@pytest.fixture(autouse=True)
def suite_thread_count():
    """``bench.main`` sets torch's thread count for its run (``--threads``); the suite's process keeps its
    own, or later tests that compare in-process results with subprocesses differ in the last bits."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return v2_bench_folder.ensure_folder(tmp_path_factory.mktemp("v2") / "tiny", "tiny", seed=0)


def test_quick_run_times_every_stage_and_says_why_the_reference_did_not_run(tiny_folder, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert bench.main(["--quick", "--folder", str(tiny_folder), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report["stages"]) == ["semantic", "gpt_b1", "s2mel", "vocoder_exact"]
    for row in report["stages"].values():
        assert row["ours"]["seconds"]["median"] > 0 and "reference" not in row
    assert report["stages"]["gpt_b1"]["ours"]["units_per_call"] == QUICK.gpt_codes  # exactly that many codes
    assert "tiny size" in report["reference"]["why_not"]
    assert "reference: not run (the tiny size" in capsys.readouterr().out


def test_gpt_stage_decodes_every_row_of_a_batch(tiny_folder):
    inputs = bench.make_inputs(bench.OmegaConf.load(tiny_folder / "config.yaml"), QUICK, seed=1)
    stages = bench.OurStages(tiny_folder, inputs, groups=("gpt",))
    _, units, codes = stages.run("gpt_b3")
    assert units == 3 * QUICK.gpt_codes and codes.shape == (QUICK.gpt_codes,)


def test_folder_is_reused_and_completed_with_w2v_bert_when_asked(tmp_path):
    folder = v2_bench_folder.ensure_folder(tmp_path / "f", "tiny", seed=0, with_w2v_bert=False)
    assert not (folder / v2_bench_folder.W2V_DIR).exists()
    gpt_written = (folder / "gpt.pth").stat().st_mtime_ns
    v2_bench_folder.ensure_folder(folder, "tiny", seed=0, with_w2v_bert=False)
    assert (folder / "gpt.pth").stat().st_mtime_ns == gpt_written
    v2_bench_folder.ensure_folder(folder, "tiny", seed=0)
    assert (folder / v2_bench_folder.W2V_DIR / "model.safetensors").is_file()


def test_speed_ratios_are_ours_over_the_reference_for_both_kinds_of_figure():
    # (seconds, units) per round; ours twice as fast in round 1 and as fast in round 2, for both figures.
    ours, reference = [(1.0, 10.0), (2.0, 10.0)], [(2.0, 10.0), (2.0, 10.0)]
    assert bench.speed_ratios("gpt", ours, reference) == {"median": 1.5, "min": 1.0, "max": 2.0}
    assert bench.speed_ratios("vocoder", ours, reference) == {"median": 1.5, "min": 1.0, "max": 2.0}


def test_agreement_compares_codes_exactly_and_audio_by_snr():
    codes = torch.tensor([3, 1, 4])
    assert bench.agreement("gpt_b1", codes, codes.clone()) == {"codes_equal": True}
    assert bench.agreement("semantic", codes, torch.tensor([3, 1, 5])) == {"codes_equal": False}
    wave = torch.ones(100)
    assert bench.agreement("vocoder_exact", wave, wave.clone()) == {"snr_db": None, "equal": True}
    assert bench.agreement("s2mel", wave + 0.1, wave)["snr_db"] == pytest.approx(10 * math.log10(1 / 0.01), abs=0.1)
    assert bench.agreement("s2mel", wave[:5], wave)["same_shape"] is False


def test_reference_is_optional_and_names_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "REFERENCE_ROOT", tmp_path / "no-checkout")
    assert "no index-tts v2.0.0 checkout" in bench.reference_unavailable("release", True)
    assert bench.reference_unavailable("release", False) == "not asked for (--no_reference)"


def test_reference_on_a_gpu_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "report.json"
    folder = tmp_path / "folder"
    assert bench.main(["--device", "cuda", "--folder", str(folder), "--json", str(out)]) == 2
    message = capsys.readouterr().err
    assert "--no_reference" in message and "Traceback" not in message
    assert not out.exists() and not folder.exists()
