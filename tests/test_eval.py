"""indextts-eval end to end on a tiny trained run: files, columns, resume, selection, --promote, errors.

The run is real (demo eSpeak speech -> extraction -> 4 LoRA steps on the tiny random checkpoints),
so the pipeline reads the same folder layout train.py writes. ASR and SIM use tiny random Whisper
and WavLM models built from transformers configs: these are plumbing tests, their scores are
meaningless; test_eval_backends.py runs real offline models.
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import train_tiny_eval_run, write_tiny_wavlm, write_tiny_whisper

from indextts.errors import EvaluationError
from indextts.asr.backends import ASRError
from indextts.cli.eval import main, parse_asr_specs
from indextts.evaluation.pipeline import EvalSettings, evaluate_checkpoint, evaluate_run
from indextts.evaluation.report import COLUMNS
from indextts.evaluation.selection import choose_best
from indextts.gpt.generation import GenerationConfig
from indextts.inference import SynthesisOptions

STEPS = 4
FAST = SynthesisOptions(GenerationConfig(max_new_tokens=8, num_beams=1), pause_seconds=0.05)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A finished tiny run with checkpoints at steps 2 and 4 and one validation row per speaker."""
    return train_tiny_eval_run(tmp_path_factory.mktemp("eval_run"), tiny_model_dir, STEPS)


@pytest.fixture(scope="module")
def tiny_backends(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny_backends")
    return {"asr": f"whisper:{write_tiny_whisper(root / 'whisper')}", "sim": f"wavlm:{write_tiny_wavlm(root / 'wavlm')}"}


def settings(backends: dict, **changes) -> EvalSettings:
    return EvalSettings(asr={"*": backends["asr"]}, sim=backends["sim"], device="cpu", synthesis=FAST, **changes)


def copy_run(run_dir: Path, target: Path) -> Path:
    shutil.copytree(run_dir, target)
    return target


def without_timings(line: str) -> dict:
    return {k: v for k, v in json.loads(line).items() if k not in ("synthesis_seconds", "rtf")}


def read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_plumbing_writes_jsonl_summary_plot_and_tensorboard(trained_run, tiny_backends, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    result = evaluate_run(run_dir, settings(tiny_backends))
    eval_dir = run_dir / "eval"
    names = {"step_00000002", "step_00000004", "final", "real"}
    assert {p.stem for p in eval_dir.glob("*.jsonl")} == names
    rows = [json.loads(line) for line in (eval_dir / "step_00000002.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 and {r["speaker"] for r in rows} == {"demo_speaker_a", "demo_speaker_b"}
    for row in rows:
        assert row["step"] == 2 and row["audio_seconds"] > 0 and row["rtf"] > 0 and -1.0 <= row["sim"] <= 1.0
        assert isinstance(row["transcript"], str) and row["tokens_mixed"] > 0 and row["asr"] == tiny_backends["asr"]
    summary = read_csv(eval_dir / "summary.csv")
    assert tuple(summary[0]) == COLUMNS
    assert {(r["checkpoint"], r["speaker"]) for r in summary} == {
        (name, speaker) for name in names for speaker in ("demo_speaker_a", "demo_speaker_b", "all")}
    real = [r for r in summary if r["checkpoint"] == "real"]
    assert all(r["rtf"] == "" and r["sim"] != "" and r["mer"] != "" for r in real)
    assert [r["checkpoint"] for r in summary if r["best"] == "1" and r["speaker"] == "all"] == [result.best]
    assert (eval_dir / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((eval_dir / "best.json").read_text())["best"] == result.best
    assert any((run_dir / "tensorboard").iterdir()) and not (eval_dir / ".partial").exists()


def test_second_run_reuses_complete_results_and_final_reuses_its_step(trained_run, tiny_backends, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    final_step = json.loads((run_dir / "speakers.json").read_text())["step"]
    assert final_step in (2, STEPS)  # the final adapter is the step with the best validation loss
    chosen = [str(final_step), "final"]
    evaluate_run(run_dir, settings(tiny_backends), checkpoints=chosen)
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "eval").glob("*.jsonl")}
    evaluate_run(run_dir, settings(tiny_backends), checkpoints=chosen)
    assert {p.name: p.stat().st_mtime_ns for p in (run_dir / "eval").glob("*.jsonl")} == before

    def rows(name: str) -> list[dict]:
        lines = (run_dir / "eval" / f"{name}.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k not in ("checkpoint", "step")} for line in lines]

    # Same weights, so the rows are copied, timings included, instead of synthesised again.
    assert rows(f"step_{final_step:08d}") == rows("final")


def test_interrupted_checkpoint_resumes_from_its_partial_rows(trained_run, tiny_backends, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    evaluate_run(run_dir, settings(tiny_backends), checkpoints=["4"])
    complete = (run_dir / "eval" / "step_00000004.jsonl").read_text().splitlines()
    partial = run_dir / "eval" / ".partial" / "step_00000004.jsonl"
    partial.parent.mkdir()
    partial.write_text(complete[0] + "\n" + complete[1][:20], encoding="utf-8")  # a kill mid-write
    (run_dir / "eval" / "step_00000004.jsonl").unlink()
    evaluate_run(run_dir, settings(tiny_backends), checkpoints=["4"])
    resumed = (run_dir / "eval" / "step_00000004.jsonl").read_text().splitlines()
    assert resumed[0] == complete[0]  # kept, not synthesised again
    assert without_timings(resumed[1]) == without_timings(complete[1])  # fixed seed: the same audio and scores


def test_changed_settings_are_evaluated_again(trained_run, tiny_backends, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    path = run_dir / "eval" / "step_00000004.jsonl"
    first = evaluate_checkpoint(run_dir, "4", settings(tiny_backends))
    first_rows = [json.loads(line) for line in path.read_text().splitlines()]
    second = evaluate_checkpoint(run_dir, "4", settings(tiny_backends, seed=7))
    second_rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["seed"] + 7 for r in first_rows] == [r["seed"] for r in second_rows]
    assert first_rows[0]["settings"] != second_rows[0]["settings"]
    assert first["checkpoint"] == second["checkpoint"] == "step_00000004" and second["utterances"] == 2
    assert first["speaker"] == "all" and first["sim"] is not None and first["mer"] is not None


def summary_row(name: str, step: int | None, sim: float | None, mer: float | None) -> dict:
    return {"checkpoint": name, "step": step, "speaker": "all", "sim": sim, "mer": mer}


@pytest.mark.parametrize("rows, epsilon, expected", [
    # lowest error among those within 0.02 of the best SIM (0.80): s2 (0.79) and s3 (0.80) qualify
    ([("s1", 1, 0.70, 0.05), ("s2", 2, 0.79, 0.10), ("s3", 3, 0.80, 0.20)], 0.02, "s2"),
    ([("s1", 1, 0.70, 0.05), ("s2", 2, 0.79, 0.10), ("s3", 3, 0.80, 0.20)], 0.0, "s3"),
    ([("s1", 1, 0.70, 0.05), ("s2", 2, 0.79, 0.10), ("s3", 3, 0.80, 0.20)], 0.2, "s1"),
    # ties on error: higher SIM, then the later step; the real recordings never compete
    ([("s1", 1, 0.79, 0.10), ("s2", 2, 0.80, 0.10), ("real", None, 0.95, 0.0)], 0.05, "s2"),
    ([("s1", 1, 0.80, 0.10), ("final", 2, 0.80, 0.10)], 0.05, "final"),
    # no ASR score anywhere: the highest SIM; no SIM: never chosen
    ([("s1", 1, 0.70, None), ("s2", 2, 0.75, None), ("s3", 3, None, 0.0)], 0.1, "s2"),
])
def test_selection_rule(rows, epsilon, expected):
    summary = [summary_row(*row) for row in rows] + [{**summary_row("s1", 1, 0.0, 0.0), "speaker": "x"}]
    assert choose_best(summary, epsilon) == expected


def test_promote_copies_the_chosen_checkpoint_over_the_final_adapter(trained_run, tiny_backends, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    chosen = "step_00000002"
    assert main(["--run", str(run_dir), "--checkpoints", "2", "--asr", tiny_backends["asr"], "--sim",
                 tiny_backends["sim"], "--device", "cpu", "--max_mel_tokens", "8", "--epsilon", "1", "--promote"]) == 0
    assert json.loads((run_dir / "eval" / "best.json").read_text())["best"] == chosen
    source = run_dir / "checkpoints" / chosen
    for name in ("adapter/adapter_model.safetensors", "adapter/adapter_config.json", "speakers.safetensors",
                 "speakers.json"):
        assert (run_dir / name).read_bytes() == (source / name).read_bytes(), name
    assert not (run_dir / ".promote.tmp").exists() and not (run_dir / ".adapter.old").exists()


def test_python_module_and_console_script_share_main():
    import indextts.evaluation.__main__

    assert indextts.evaluation.__main__.main is main


def test_asr_specs_route_by_language():
    assert parse_asr_specs(["en=pocketsphinx", "whisper:openai/whisper-large-v3"]) == {
        "en": "pocketsphinx", "*": "whisper:openai/whisper-large-v3"}
    with pytest.raises(EvaluationError, match="two backends for en"):
        parse_asr_specs(["en=pocketsphinx", "en=whisper:x"])


def test_clear_errors(trained_run, tiny_backends, tmp_path, capsys):
    assert main(["--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.yaml").write_text((trained_run / "config.yaml").read_text())
    with pytest.raises(EvaluationError, match="no checkpoint to evaluate"):
        evaluate_run(empty, settings(tiny_backends))
    with pytest.raises(EvaluationError, match="Checkpoint '9' is not in"):
        evaluate_run(trained_run, settings(tiny_backends), checkpoints=["9"])
    run_dir = copy_run(trained_run, tmp_path / "run")
    with pytest.raises(EvaluationError, match="Unknown speaker encoder 'xvector'"):
        evaluate_run(run_dir, replace(settings(tiny_backends), sim="xvector"), checkpoints=["2"])
    with pytest.raises(ASRError, match="Unknown ASR backend 'vosk'"):
        evaluate_run(run_dir, replace(settings(tiny_backends), asr={"*": "vosk"}), checkpoints=["2"])


def test_real_offline_backends_route_by_language_and_extra_texts_are_spoken(trained_run, tmp_path):
    """pocketsphinx (English only) and resemblyzer run inside the pipeline; zh rows get SIM but no transcript.

    Real models on the tiny run's noise-like output: this proves the routing, not IndexTTS quality.
    """
    run_dir = copy_run(trained_run, tmp_path / "run")
    texts = tmp_path / "texts.txt"
    texts.write_text("Good morning to you.\n\n今天下雨了。\n", encoding="utf-8")
    chosen = EvalSettings(asr={"en": "pocketsphinx"}, sim="resemblyzer", device="cpu", synthesis=FAST, texts=texts)
    result = evaluate_run(run_dir, chosen, checkpoints=["final"])
    rows = [json.loads(line) for line in (run_dir / "eval" / "final.jsonl").read_text().splitlines()]
    assert len(rows) == 2 + 2 * 2  # one validation row and two texts per speaker
    assert {r["uid"] for r in rows if r["real_audio"] is None} == {"text_0001", "text_0003"}
    for row in rows:
        english = row["language"] == "en"
        assert (row["asr"] == "pocketsphinx") == english and isinstance(row["transcript"], str) == english
        assert row["sim"] is not None
    real = [json.loads(line) for line in (run_dir / "eval" / "real.jsonl").read_text().splitlines()]
    assert {r["uid"] for r in real} == {r["uid"] for r in rows if r["real_audio"] is not None}
    assert result.best == "final"


def test_a_larger_eval_set_scores_only_the_new_sentences(trained_run, tiny_backends, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    evaluate_run(run_dir, settings(tiny_backends), checkpoints=["2"])
    before = (run_dir / "eval" / "step_00000002.jsonl").read_text().splitlines()
    texts = tmp_path / "texts.txt"
    texts.write_text("One more sentence.\n", encoding="utf-8")
    evaluate_run(run_dir, settings(tiny_backends, texts=texts), checkpoints=["2"])
    after = (run_dir / "eval" / "step_00000002.jsonl").read_text().splitlines()
    assert len(after) == len(before) + 2 and after[:len(before)] == before  # old rows kept byte for byte


def test_an_unknown_asr_language_key_is_refused_before_anything_runs(trained_run, tmp_path, capsys):
    run_dir = copy_run(trained_run, tmp_path / "run")
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    assert main(["--run", str(run_dir), "--asr", "xx=pocketsphinx", "--sim", "resemblyzer", "--device", "cpu"]) == 2
    message = capsys.readouterr().err
    assert "'xx'" in message and "en=SPEC, zh=SPEC" in message and "Traceback" not in message
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written
    with pytest.raises(EvaluationError, match="'english'"):
        evaluate_run(run_dir, EvalSettings(asr={"english": "pocketsphinx"}, sim="resemblyzer"))


def test_a_backend_without_a_language_scores_the_others_and_notes_it(trained_run, tmp_path, caplog):
    """`--asr pocketsphinx` (English only) on English and Chinese rows: zh rows get SIM only, with a note."""
    run_dir = copy_run(trained_run, tmp_path / "run")
    texts = tmp_path / "texts.txt"
    texts.write_text("Good morning to you.\n今天下雨了。\n", encoding="utf-8")
    assert main(["--run", str(run_dir), "--asr", "pocketsphinx", "--sim", "resemblyzer", "--device", "cpu",
                 "--checkpoints", "final", "--texts", str(texts), "--max_mel_tokens", "8"]) == 0
    rows = [json.loads(line) for line in (run_dir / "eval" / "final.jsonl").read_text().splitlines()]
    note = "zh: pocketsphinx recognises en only, SIM only"
    for row in rows:
        english = row["language"] == "en"
        assert (row["transcript"] is not None) == english and row["sim"] is not None
        assert row["asr_skipped"] == (None if english else note)
    pooled = [r for r in read_csv(run_dir / "eval" / "summary.csv") if r["speaker"] == "all"]
    assert {r["checkpoint"]: r["note"] for r in pooled}["final"] == note
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and note in r.getMessage()]
    with pytest.raises(EvaluationError, match="recognises en only, not zh"):
        evaluate_run(run_dir, EvalSettings(asr={"zh": "pocketsphinx"}, sim="resemblyzer", device="cpu",
                                           synthesis=FAST, texts=texts), checkpoints=["final"])


def test_summary_plot_without_asr_scores_says_so_and_counts_steps_in_integers(tmp_path):
    import warnings

    from indextts.evaluation.report import plot_summary, summarise, summary_figure

    rows = [{"checkpoint": f"step_{step:08d}", "step": step, "speaker": "a", "sim": sim, "transcript": None}
            for step, sim in ((2, 0.5), (4, 0.6))]
    summary = summarise(rows)
    figure = summary_figure(summary, "step_00000004")
    error_panel, sim_panel = figure.axes
    assert [text.get_text() for text in error_panel.texts] == ["no ASR scores"]
    assert error_panel.get_legend() is None and sim_panel.get_legend() is not None
    for axes in figure.axes:
        assert all(float(tick).is_integer() for tick in axes.get_xticks())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_summary(tmp_path / "summary.png", summary, "step_00000004")
    assert not caught, [str(w.message) for w in caught]
