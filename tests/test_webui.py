"""The web UI's plumbing without a browser: background jobs, the library adapter, the tables and curves.

The page itself is driven in Chromium by tests/test_webui_browser.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from indextts.errors import DataError, WebUIError
from indextts.run_folder import METRICS_FILE
from indextts.webui import backend
from indextts.webui.jobs import JobBoard

pytest.importorskip("gradio", reason="the web UI needs the [webui] extra (pip install -e '.[webui]')")


def wait_until_done(job, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while job.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not job.running, f"{job.command} still runs after {seconds} s"


def test_a_failed_job_shows_its_progress_and_the_commands_error_paragraph(tmp_path):
    script = ("import sys; from tqdm import tqdm\n"
              "for _ in tqdm(range(3), mininterval=0): pass\n"
              "print('error: The audio list x.lst is empty. Add lines and run again.', file=sys.stderr)\n"
              "sys.exit(2)")
    board = JobBoard(tmp_path / "logs")
    job = board.start("extract", [sys.executable, "-c", script])
    wait_until_done(job)
    assert job.state() == "failed (exit 2)"
    assert job.error_message() == "The audio list x.lst is empty. Add lines and run again."
    progress = job.progress()
    assert (progress.done, progress.total) == (3, 3)
    assert "3 / 3 (100%)" in board.summary("extract")
    assert board.summary("train") == "**train**: not started"


def test_a_long_log_is_read_from_its_end(tmp_path):
    from indextts.webui.jobs import LOG_TAIL_BYTES

    script = (f"import sys; print('1/9 [00:01<00:08]' + 'x' * {2 * LOG_TAIL_BYTES}, file=sys.stderr)\n"
              "print('7/9 [00:07<00:02]', file=sys.stderr)")
    job = JobBoard(tmp_path).start("train", [sys.executable, "-c", script])
    wait_until_done(job)
    assert len(job.log_text()) <= LOG_TAIL_BYTES
    assert (job.progress().done, job.progress().remaining, job.state()) == (7, "00:02", "finished")


def test_stop_ends_the_job_and_the_workers_it_started(tmp_path):
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
              "print(child.pid, flush=True); time.sleep(120)")
    board = JobBoard(tmp_path / "logs")
    job = board.start("train", [sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not job.log_text().strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(job.log_text().split()[0])
    with pytest.raises(WebUIError, match="already running"):
        board.start("train", [sys.executable, "-c", "pass"])
    assert board.stop("train") == "Stopped the train job; what it finished is kept."
    assert job.state() == "stopped" and job.error_message() is None
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the job's own child process outlived stop"


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False


def test_training_choices_are_overrides_the_training_config_accepts(tmp_path):
    defaults = backend.training_defaults()
    assert defaults["precision"] == "auto" and defaults["epochs"] >= 1
    choices = backend.TrainingChoices(model_dir="ckpt", speaker_info="data/speaker_info.json", run_dir="runs/v",
                                      epochs=3, max_steps=5, lr=1e-4, lora_r=8, token_budget="2000",
                                      precision="fp32", extra="data.num_workers=0\n\ntrain.grad_accum=1\n")
    cfg = backend.load_train_config(choices.overrides())
    assert (cfg.model_dir, cfg.run_dir, cfg.train.epochs, cfg.train.max_steps) == ("ckpt", "runs/v", 3, 5)
    assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.train.optimizer.lr) == (8, 16, 1e-4)
    assert (cfg.data.max_tokens, cfg.train.precision, cfg.data.num_workers, cfg.train.grad_accum) == (2000, "fp32", 0, 1)
    by_epochs = backend.TrainingChoices("a", "b", "c", 2, 0, 1e-4, 8, "auto", "auto")
    assert "train.max_steps" not in " ".join(by_epochs.overrides()) and "data.max_tokens=auto" in by_epochs.overrides()
    with pytest.raises(WebUIError, match="token budget '-5'"):
        backend.TrainingChoices("a", "b", "c", 2, 0, 1e-4, 8, "-5", "auto").overrides()


def test_empty_fields_and_missing_features_are_refused_with_what_to_do(tmp_path):
    board = JobBoard(tmp_path)
    with pytest.raises(WebUIError, match="No audio list given"):
        backend.start_extraction(board, " \n ", "ckpt", "out", "auto")
    with pytest.raises(WebUIError, match="The run folder is empty"):
        backend.start_training(board, backend.TrainingChoices("ckpt", "info.json", " ", 1, 0, 1e-4, 8, "600", "auto"))
    with pytest.raises(WebUIError, match="Widgets is not available.*indextts.no_such_feature.cli"):
        backend._command("indextts.no_such_feature.cli", "Widgets")
    assert board.jobs == {}


def test_metrics_reader_takes_in_only_complete_new_lines_and_restarts_when_cut_back(tmp_path):
    records = [{"kind": "train", "step": 1, "loss": 2.0}, {"kind": "valid", "step": 1, "mel_loss": 1.5}]
    path = tmp_path / "metrics.jsonl"
    reader = backend.MetricsReader(tmp_path)
    assert not reader.read() and reader.records == []
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "train", "st', encoding="utf-8")
    assert reader.read() and reader.records == records
    assert not reader.read()
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('ep": 2, "loss": 1.0}\n')
    assert reader.read() and reader.records[-1] == {"kind": "train", "step": 2, "loss": 1.0}
    path.write_text(json.dumps(records[0]) + "\n", encoding="utf-8")
    assert reader.read() and reader.records == records[:1]


def test_curves_and_caption_follow_the_metrics():
    from indextts.webui.train_tab import curve_caption, curve_figure

    records = [{"kind": "train", "step": s, "loss": 3.0 - s, "mel_loss": 2.5 - s} for s in (1, 2)]
    records.append({"kind": "valid", "step": 2, "mel_loss": 0.75, "text_loss": 1.25})
    axes = curve_figure(records).axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert sorted(lines) == ["train loss", "train mel loss", "validation mel loss", "validation text loss"]
    assert lines["train loss"].get_ydata().tolist() == [2.0, 1.0]
    assert lines["validation mel loss"].get_xdata().tolist() == [2]
    assert axes.get_title() == "Training curves up to step 2"
    assert curve_caption(records) == ("Logged up to step 2: loss 1.0000; validation mel loss 0.7500 at step 2 "
                                      "(2 training records, 1 validations).")
    assert curve_caption([]) == "No training steps logged yet."
    assert curve_figure([]) is None


def _clip(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.full(int(24000 * seconds), 0.1, np.float32), 24000)


def test_review_table_merges_review_csv_flags_bad_lines_and_exports_a_list_extraction_reads(tmp_path):
    from indextts.contracts.audio_list import parse_audio_list

    _clip(tmp_path / "spk" / "a.wav", 1.5)
    _clip(tmp_path / "spk" / "b.wav", 2.0)
    (tmp_path / "spk.lst").write_text("spk/a.wav\tFirst clip.\nspk/b.wav\tSecond clip.\nspk/gone.wav\tLost.\n",
                                      encoding="utf-8")
    (tmp_path / "review.csv").write_text("speaker,clip,duration,lufs,asr_confidence,flags\n"
                                         "spk,spk/a.wav,1.500,-23.00,0.910,low_snr\n", encoding="utf-8")
    rows = backend.review_table(tmp_path / "spk.lst")
    assert [row[0] for row in rows] == [True, True, False]
    assert rows[0][2:6] == [1.5, "-23.00", "0.910", "low_snr"]
    assert rows[1][2:6] == [2.0, "", "", ""]
    assert rows[2][5] == "missing_file"
    rows[1][6] = "Second clip, corrected."
    kept = [(row[1], row[6]) for row in rows if row[0]]
    exported = backend.write_audio_list(tmp_path / "out" / "reviewed.lst", kept)
    parsed = parse_audio_list(exported)
    assert [(u.audio.name, u.text) for u in parsed.utterances] == [("a.wav", "First clip."),
                                                                   ("b.wav", "Second clip, corrected.")]
    with pytest.raises(WebUIError, match="empty or holds a tab"):
        backend.write_audio_list(tmp_path / "bad.lst", [(rows[0][1], "  ")])
    assert backend.read_clip(rows[0][1])[1].dtype == np.int16


def test_evaluation_results_and_checkpoints_are_read_from_the_run(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "summary.csv").write_text("checkpoint,speaker,wer,sim\nstep_00000002,a,0.25,0.8\n")
    for step in (4, 2):
        (tmp_path / "checkpoints" / f"step_{step:08d}").mkdir(parents=True)
    rows, plot = backend.read_eval_summary(tmp_path)
    assert rows == [{"checkpoint": "step_00000002", "speaker": "a", "wer": "0.25", "sim": "0.8"}] and plot is None
    assert [p.name for p in backend.checkpoint_folders(tmp_path)] == ["step_00000002", "step_00000004"]
    with pytest.raises(WebUIError, match="no checkpoint"):
        backend.promote(str(tmp_path), "step_00000009")
    chosen = tmp_path / "checkpoints" / "step_00000002"
    (chosen / "adapter").mkdir()
    for name, text in (("adapter/adapter_config.json", "{}"), ("speakers.safetensors", "s2"), ("speakers.json", "[]")):
        (chosen / name).write_text(text)
    assert backend.promote(str(tmp_path), "step_00000002") == f"Promoted step_00000002 to the final adapter of {tmp_path}."
    assert (tmp_path / "speakers.safetensors").read_text() == "s2" and (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_voice_choices_give_clear_errors(tmp_path, tiny_model_dir):
    from indextts.errors import VoiceNotFoundError

    bank = backend.VoiceBank(str(tiny_model_dir), "cpu")
    with pytest.raises(VoiceNotFoundError):
        next(bank.stream("Hello.", "run:alice", None, None))
    with pytest.raises(WebUIError, match="needs a reference recording"):
        next(bank.stream("Hello.", backend.ZERO_SHOT, None, None))
    with pytest.raises(WebUIError, match="does not exist"):
        bank.add(tmp_path / "no_run")
    assert bank.voices == []
    assert backend.voice_source_label(Path("runs/v/checkpoints/step_00000003")) == "v@step_00000003"
    options = backend.synthesis_options(0.7, 0.9, 5, 1, -1, 60)
    assert (options.generation.temperature, options.generation.seed, options.max_text_tokens_per_sentence) == (0.7, None, 60)


def test_a_library_error_goes_to_the_status_box_and_other_outputs_stay():
    import gradio as gr

    from indextts.webui.workspace import reporting_errors

    @reporting_errors(outputs=3)
    def handler(value):
        raise DataError(f"The list {value} is empty. Add lines and run again.")

    first, second, status = handler("x.lst")
    assert isinstance(first, type(gr.skip())) and isinstance(second, type(gr.skip()))
    assert status == "⚠️ The list x.lst is empty. Add lines and run again."


def test_the_page_builds_and_serves_only_loopback_by_default(tmp_path):
    from indextts.webui.app import build_app, build_parser
    from indextts.webui.workspace import Settings, Workspace

    args = build_parser().parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    app = build_app(Workspace(Settings(model_dir=tmp_path, workdir=tmp_path / "work")))
    ids = {block.elem_id for block in app.blocks.values()}
    assert {"extract-start", "train-start", "train-curves", "speak-button", "speak-output", "eval-start",
            "data-table", "data-export"} <= ids


def test_no_tab_is_named_like_a_button(tmp_path):
    """The speech tab and its action button were both "Speak"."""
    import gradio as gr

    from indextts.webui.app import build_app
    from indextts.webui.workspace import Settings, Workspace

    app = build_app(Workspace(Settings(model_dir=tmp_path, workdir=tmp_path / "work")))
    tabs = {block.label for block in app.blocks.values() if isinstance(block, gr.Tab)}
    buttons = {block.value for block in app.blocks.values() if isinstance(block, gr.Button)}
    assert len(tabs) == 5 and {"Speak", "Build voice"} <= buttons and not tabs & buttons


def test_a_training_job_from_the_page_logs_a_training_point_by_time(tmp_path, tiny_model_dir):
    """The live curve got only validation points until the run ended: train.log_every_steps (10) was
    more steps than a short run's epoch. The page's job also logs by time (train.log_every_seconds)."""
    from helpers import write_extracted_data

    from indextts.config import load_config
    from indextts.training import run_training

    info = write_extracted_data(tmp_path / "data", int(load_config(tiny_model_dir).gpt.model_dim))
    choices = backend.TrainingChoices(str(tiny_model_dir), str(info), str(tmp_path / "run"), 1, 3, 3e-3, 4, "400",
                                      "fp32", extra="data.num_workers=0\ntrain.grad_accum=1\ntrain.save_every_steps=0")
    cfg = backend.load_train_config(choices.overrides())
    assert (cfg.train.log_every_seconds, cfg.train.log_every_steps) == (backend.LIVE_CURVE_SECONDS, 10)
    # The same job with a one-millisecond interval, so that every step of this short run is due.
    choices.extra += "\ntrain.log_every_seconds=0.001"
    run_training(backend.load_train_config(choices.overrides()))
    records = [json.loads(line) for line in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]


def test_resume_runs_train_py_and_its_error_reaches_the_page(tmp_path, tiny_model_dir):
    choices = backend.TrainingChoices(str(tiny_model_dir), str(tmp_path / "missing" / "speaker_info.json"),
                                      str(tmp_path / "run"), 1, 2, 1e-4, 4, "600", "fp32")
    job = backend.start_training(JobBoard(tmp_path / "logs"), choices, resume=True)
    assert job.command[-1] == "train.resume=auto"
    wait_until_done(job, seconds=120)
    assert job.state() == "failed (exit 2)"
    assert "speaker_info.json" in job.error_message() and "Traceback" not in job.error_message()


@pytest.mark.slow
def test_preparation_job_output_fills_the_review_table(tmp_path, tiny_model_dir):
    """The Data tab's path: indextts-prepare as a job, then its list and review.csv in one table."""
    pytest.importorskip("silero_vad", reason="preparation needs the [prepare] extra")
    pytest.importorskip("pocketsphinx", reason="preparation needs the [prepare] extra")
    from demo_data import make_demo_dataset

    recordings = make_demo_dataset(tmp_path / "demo", sentences_per_speaker=2)[0].with_suffix("")
    job = backend.start_prepare(JobBoard(tmp_path / "logs"), [str(recordings)], str(tmp_path / "out"), "alice",
                                "pocketsphinx", str(tiny_model_dir))
    wait_until_done(job, seconds=300)
    assert job.state() == "finished", job.log_text()
    assert (job.progress().done, job.progress().total) == (2, 2)
    rows = backend.review_table(tmp_path / "out" / "alice.lst")
    assert len(rows) == 2 and all(row[0] for row in rows)
    assert all(row[3] and row[4] and row[2] > 0 for row in rows), rows  # LUFS, ASR confidence, seconds


def test_build_voice_job_runs_the_one_command_build_and_shows_its_refusal(tmp_path, tiny_model_dir, monkeypatch):
    """The Build voice tab's job is `indextts voice build` with the page's fields; a language no backend
    here knows (offline, empty hub cache) fails in the job with the build's own paragraph."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    recording = tmp_path / "li.wav"
    soundfile.write(recording, np.zeros(24000, np.float32), 24000)
    project = tmp_path / "voices" / "li"
    job = backend.start_voice_build(JobBoard(tmp_path / "logs"), [str(recording)], ["li"], str(tiny_model_dir),
                                    str(project), "xx", "auto", "cpu")
    assert job.command[job.command.index("-m") + 1:] == [
        "indextts.cli.voice", "build", str(recording), "--speaker", "li", "--base", str(tiny_model_dir),
        "--project", str(project), "--language", "xx", "--asr", "auto", "--device", "cpu"]
    wait_until_done(job, seconds=300)
    assert job.state().startswith("failed"), job.log_text()
    assert "No ASR backend for language 'xx'" in job.log_text() and "Traceback" not in job.log_text()
    assert not list((project / "prepared").rglob("*.wav"))
    with pytest.raises(WebUIError, match="No recordings given"):
        backend.start_voice_build(JobBoard(tmp_path / "logs"), [], ["li"], str(tiny_model_dir), str(project),
                                  "", "auto", "auto")
