"""End-to-end training on tiny checkpoints: loss goes down, run folder, resume after kill -9, torchrun, bad inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import REPO_ROOT, kill_process_group, run_process_group, tiny_overrides, write_extracted_data
from indextts.errors import TrainingError
from indextts.training import DEFAULT_CONFIG, Trainer, latest_checkpoint, load_train_config, run_training

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_model_dir):
    from indextts.config import load_config

    root = tmp_path_factory.mktemp("extracted")
    write_extracted_data(root, int(load_config(tiny_model_dir).gpt.model_dim))
    return root


def kill_once_checkpointed(process: subprocess.Popen, run_dir: Path, step: int = 3) -> None:
    """SIGKILL a training process as soon as ``run_dir`` holds a checkpoint of ``step`` or later."""
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is not None and int(checkpoint.name.split("_")[1]) >= step:
            break
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate()


def read_metrics(run_dir: Path, kind: str = "train") -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_a_few_steps_lower_the_loss_and_write_the_run_folder(tmp_path, tiny_model_dir, data_dir):
    run_dir = tmp_path / "run"
    cfg = load_train_config(DEFAULT_CONFIG, tiny_overrides(
        tiny_model_dir, data_dir / "speaker_info.json", run_dir, "train.epochs=6", "train.lora.dropout=0.0",
        "train.log_every_steps=1"))
    metrics = run_training(cfg)
    train = read_metrics(run_dir)
    assert len(train) >= 6
    assert np.mean([r["loss"] for r in train[-2:]]) < np.mean([r["loss"] for r in train[:2]])
    valid = read_metrics(run_dir, "valid")
    assert valid and {"text_loss", "mel_loss", "mel_top1", "mel_top10"} <= set(metrics)
    assert 0.0 <= metrics["mel_top1"] <= metrics["mel_top10"] <= 1.0
    for name in ("config.yaml", "train.log", "metrics.jsonl", "speakers.safetensors", "speakers.json",
                 "adapter/adapter_config.json", "adapter/adapter_model.safetensors"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tensorboard").iterdir())
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None and checkpoint.name == f"step_{train[-1]['step']:08d}"
    for name in ("adapter/adapter_model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors",
                 "trainer_state.json", "speakers.safetensors", "config.yaml"):
        assert (checkpoint / name).is_file(), name
    assert not list(run_dir.rglob("*.pt")) and not list(run_dir.rglob("*.pth")) and not list(run_dir.rglob("*.bin"))
    with pytest.raises(TrainingError, match="already holds checkpoints"):
        Trainer(cfg).setup()


def test_resume_when_finished_does_not_train_again(tmp_path, tiny_model_dir, data_dir):
    run_dir = tmp_path / "run"
    base = tiny_overrides(tiny_model_dir, data_dir / "speaker_info.json", run_dir, "train.max_steps=2")
    run_training(load_train_config(DEFAULT_CONFIG, base))
    before = read_metrics(run_dir)
    run_training(load_train_config(DEFAULT_CONFIG, [*base, "train.resume=auto"]))
    assert read_metrics(run_dir) == before


def _run_train_py(args: list[str], **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "train.py"), *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _finished(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output


def kill_resume_and_reference(overrides_of, tmp_path: Path) -> tuple[Path, Path]:
    """(reference, killed): one run of train.py to its end; another killed after a checkpoint, then resumed.

    ``overrides_of(run_dir)`` gives the command line of a run writing ``run_dir``.
    """
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    _finished(_run_train_py(overrides_of(reference)))
    kill_once_checkpointed(_run_train_py(overrides_of(killed)), killed)
    assert len(read_metrics(killed)) < len(read_metrics(reference))
    _finished(_run_train_py([*overrides_of(killed), "--resume"]))
    return reference, killed


def assert_same_metrics(reference: Path, resumed: Path) -> None:
    """The resumed run logged the steps, losses and learning rates of the uninterrupted one."""
    for kind in ("train", "valid"):
        want, got = read_metrics(reference, kind), read_metrics(resumed, kind)
        assert [r["step"] for r in got] == [r["step"] for r in want]
        for a, b in zip(got, want):
            for key in ("loss", "text_loss", "mel_loss", "lr") if kind == "train" else ("text_loss", "mel_loss"):
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (kind, a["step"], key)


@pytest.mark.slow
def test_kill_then_resume_equals_uninterrupted(tmp_path, tiny_model_dir, data_dir):
    info = data_dir / "speaker_info.json"
    settings = ["train.epochs=3", "train.save_every_steps=1", "train.grad_accum=2", "data.num_workers=1",
                "train.val_every_steps=3", "train.keep_checkpoints=2"]
    reference, killed = kill_resume_and_reference(lambda run: tiny_overrides(tiny_model_dir, info, run, *settings),
                                                  tmp_path)
    assert_same_metrics(reference, killed)


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path, tiny_model_dir, data_dir):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO_ROOT / "train.py"),
               *tiny_overrides(tiny_model_dir, data_dir / "speaker_info.json", run_dir, "train.epochs=2",
                               "data.max_batch_size=2", "train.grad_accum=2",
                               "train.dist_timeout_s=120")]  # a hung rank ends the run well before the test's timeout
    result = run_process_group(command, timeout=600, cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    # grad_accum=2 runs DDP's no_sync on the first micro-batch of each step; both ranks must still agree
    assert output.count("All 2 processes hold identical trainable weights") == 1, output
    assert output.count("Trainable parameters:") == 1, output  # only rank 0 logs at INFO (issue 13 item 12)
    assert "FutureWarning" not in output, output  # issue 25 item 11: DDP's broadcast_buffers warning on every run
    train = read_metrics(run_dir)
    assert train and all(np.isfinite(r["loss"]) for r in train)
    assert read_metrics(run_dir, "valid")
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    state = json.loads((latest_checkpoint(run_dir) / "trainer_state.json").read_text())
    assert state["world_size"] == 2


def _setup_error(tmp_path, model_dir, speaker_info) -> str:
    cfg = load_train_config(DEFAULT_CONFIG, tiny_overrides(model_dir, speaker_info, tmp_path / "run"))
    trainer = Trainer(cfg)
    try:
        with pytest.raises(TrainingError) as error:
            trainer.setup()
    finally:
        trainer.close()
    return str(error.value)


def test_missing_speaker_info(tmp_path, tiny_model_dir):
    assert "does not exist" in _setup_error(tmp_path, tiny_model_dir, tmp_path / "nowhere" / "speaker_info.json")


def test_empty_speaker_info(tmp_path, tiny_model_dir):
    info = tmp_path / "speaker_info.json"
    info.write_text("[]", encoding="utf-8")
    assert "lists no speakers" in _setup_error(tmp_path, tiny_model_dir, info)


def test_speaker_without_rows(tmp_path, tiny_model_dir):
    info = write_extracted_data(tmp_path / "data", 64)
    (tmp_path / "data" / "bob" / "metadata_train.jsonl").write_text("", encoding="utf-8")
    message = _setup_error(tmp_path, tiny_model_dir, info)
    assert "'bob' has no rows" in message and "alice" not in message


def test_condition_width_differs_from_base(tmp_path, tiny_model_dir):
    info = write_extracted_data(tmp_path / "data", 48)
    message = _setup_error(tmp_path, tiny_model_dir, info)
    assert "(32, 48)" in message and "(32, 64)" in message and "another IndexTTS release" in message


def test_missing_base_files(tmp_path, tiny_model_dir, data_dir):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "gpt.pth").unlink()
    (model_dir / "bpe.model").unlink()
    message = _setup_error(tmp_path, model_dir, data_dir / "speaker_info.json")
    assert "gpt.pth" in message and "bpe.model" in message


def test_cli_reports_errors_without_traceback(tmp_path, tiny_model_dir):
    process = _run_train_py(tiny_overrides(tiny_model_dir, tmp_path / "missing.json", tmp_path / "run"))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2
    assert output.count("error:") == 1 and "Traceback" not in output


def test_unknown_override_key_is_rejected():
    from indextts.errors import ConfigError

    with pytest.raises(ConfigError, match="train.lora.rank"):
        load_train_config(DEFAULT_CONFIG, ["train.lora.rank=8"])


@pytest.mark.slow
def test_torchrun_rank_that_stops_ends_the_run_with_a_message(tmp_path, tiny_model_dir, data_dir):
    """A rank frozen mid-run (SIGSTOP) makes the other give up after train.dist_timeout_s with a message
    naming its rank and step, instead of waiting for gloo's 30-minute default (issue 25 item 7)."""
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(REPO_ROOT / "train.py"),
               *tiny_overrides(tiny_model_dir, data_dir / "speaker_info.json", run_dir, "train.max_steps=100000",
                               "data.max_batch_size=2", "train.dist_timeout_s=5")]
    launcher = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                                start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not ((run_dir / "metrics.jsonl").is_file() and read_metrics(run_dir)) and time.time() < deadline \
                and launcher.poll() is None:
            time.sleep(0.2)
        ranks = subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split()
        assert len(ranks) == 2, ranks
        os.kill(int(ranks[-1]), signal.SIGSTOP)
        output, _ = launcher.communicate(timeout=240)
    finally:
        kill_process_group(launcher.pid)
    assert launcher.returncode != 0
    assert re.search(r"error: Rank [01] of 2 stopped waiting for the other processes at step \d+", output), output
    assert "raise train.dist_timeout_s" in output
