"""Resume edges, the run folder lock, pinned losses, exact file sets and the logged lr (issue 13 and 14)."""

from __future__ import annotations

import json

import pytest

from helpers import file_digests, tiny_overrides, write_extracted_data
from indextts.cli.train import main as train_main
from indextts.training import DEFAULT_CONFIG, Trainer, latest_checkpoint, load_train_config, run_training
from indextts.training.checkpointing import RunLock
from indextts.training.model import cosine_with_warmup


@pytest.fixture(scope="module")
def data_info(tmp_path_factory):
    return write_extracted_data(tmp_path_factory.mktemp("extracted"), 64)


def _metrics(run_dir, kind="train"):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_seeded_losses_are_pinned_and_the_run_folder_holds_exactly_these_files(tmp_path, tiny_model_dir, data_info):
    run_dir = tmp_path / "run"
    run_training(load_train_config(DEFAULT_CONFIG, tiny_overrides(
        tiny_model_dir, data_info, run_dir, "train.max_steps=3", "train.log_every_steps=1",
        "train.save_every_steps=1")))
    # Computed once by this code (train.seed 1234, tiny checkpoints seed 0, CPU fp32, 27 Nov 2026), reviewed
    # (0.1 x text CE + 0.9 x mel CE, falling each step at lr 3e-3) and pinned on purpose: a change to the
    # model, the loss, the data order or the seeding shows up here. Re-pinned the same day after the GPT-2
    # stack moved to SDPA attention, whose attention dropout draws another random stream than the eager
    # softmax dropout (eval-mode outputs are unchanged: the conformance goldens still pass at 1e-4).
    pinned = [6.82461, 5.96059, 5.11428]
    got = [round(r["loss"], 5) for r in _metrics(run_dir)]
    assert got == pytest.approx(pinned, abs=2e-4)
    files = _files(run_dir)
    tensorboard = [f for f in files if f.startswith("tensorboard/")]
    assert len(tensorboard) == 1
    checkpoints = ["checkpoints/step_00000001", "checkpoints/step_00000002", "checkpoints/step_00000003"]
    run_files = ["adapter/README.md", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                 "config.yaml", "speakers.json", "speakers.safetensors"]
    step_files = run_files + ["optimizer.json", "optimizer.safetensors", "rng.safetensors", "trainer_state.json"]
    expected = sorted([".lock", "metrics.jsonl", "train.log", *run_files, *tensorboard,
                       *(f"{c}/{f}" for c in checkpoints for f in step_files)])
    assert files == expected
    assert _files(run_dir / checkpoints[-1]) == sorted(step_files)


def test_logged_lr_is_the_lr_the_step_applied(tmp_path, tiny_model_dir, data_info):
    cfg = load_train_config(DEFAULT_CONFIG, tiny_overrides(
        tiny_model_dir, data_info, tmp_path / "run", "train.max_steps=4", "train.log_every_steps=1",
        "train.scheduler.warmup_ratio=0.5"))
    trainer = Trainer(cfg)
    applied = []
    try:
        trainer.setup()
        trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: applied.append(opt.param_groups[0]["lr"]))
        trainer.train()
    finally:
        trainer.close()
    logged = [r["lr"] for r in _metrics(tmp_path / "run")]
    multiplier = cosine_with_warmup(2, 4, cfg.train.scheduler.min_lr_ratio)
    assert logged == applied == pytest.approx([3e-3 * multiplier(k) for k in range(4)])


def test_resume_from_an_earlier_checkpoint_moves_later_ones_aside(tmp_path, tiny_model_dir, data_info, caplog):
    run_dir = tmp_path / "run"
    settings = tiny_overrides(tiny_model_dir, data_info, run_dir, "train.max_steps=3", "train.save_every_steps=1",
                              "train.log_every_steps=1")
    run_training(load_train_config(DEFAULT_CONFIG, settings))
    first = _metrics(run_dir)
    earlier = run_dir / "checkpoints" / "step_00000001"
    run_training(load_train_config(DEFAULT_CONFIG, [*settings, f"train.resume={earlier}"]))
    (abandoned,) = (run_dir / "checkpoints").glob("abandoned-*")
    assert sorted(p.name for p in abandoned.iterdir()) == ["step_00000002", "step_00000003"]
    assert "moved the 2 later checkpoint(s)" in (run_dir / "train.log").read_text()
    assert latest_checkpoint(run_dir).name == "step_00000003"
    again = _metrics(run_dir)
    assert [r["step"] for r in again] == [1, 2, 3]
    assert [r["loss"] for r in again] == pytest.approx([r["loss"] for r in first], rel=1e-6)


@pytest.mark.parametrize("arguments", [["train.lora.r=8", "--resume"], ["--resume", "train.lora.r=8"]],
                         ids=["override_first", "override_after_resume"])  # the latter: issue 25 item 10
def test_resume_with_other_lora_settings_is_refused_and_changes_nothing(tmp_path, tiny_model_dir, data_info, capsys,
                                                                        arguments):
    run_dir = tmp_path / "run"
    settings = tiny_overrides(tiny_model_dir, data_info, run_dir, "train.max_steps=1")
    run_training(load_train_config(DEFAULT_CONFIG, settings))
    before = file_digests(run_dir)
    status = train_main([*settings, *arguments])
    message = capsys.readouterr().err
    assert status == 2 and "train.lora.r was 16, now 8" in message and "Resume with the settings" in message
    assert "Traceback" not in message
    assert file_digests(run_dir) == before


def test_resume_without_checkpoints_is_refused(tmp_path, tiny_model_dir, data_info, capsys):
    status = train_main([*tiny_overrides(tiny_model_dir, data_info, tmp_path / "run"), "--resume"])
    message = capsys.readouterr().err
    assert status == 2 and "holds no complete checkpoint" in message and "Drop --resume" in message


def test_non_positive_max_steps_is_refused(tmp_path, tiny_model_dir, data_info, capsys):
    status = train_main(tiny_overrides(tiny_model_dir, data_info, tmp_path / "run", "train.max_steps=-1"))
    message = capsys.readouterr().err
    assert status == 2 and "train.max_steps = -1 must be" in message
    assert not (tmp_path / "run").exists()


def test_a_second_run_on_a_locked_folder_is_refused(tmp_path, tiny_model_dir, data_info, capsys):
    run_dir = tmp_path / "run"
    settings = tiny_overrides(tiny_model_dir, data_info, run_dir, "train.max_steps=1")
    run_training(load_train_config(DEFAULT_CONFIG, settings))
    before = file_digests(run_dir)
    lock = RunLock(run_dir).acquire()  # stands in for a live first run (its workers hold it)
    try:
        status = train_main([*settings, "--resume"])
    finally:
        lock.release()
    message = capsys.readouterr().err
    assert status == 2 and "Another training process" in message and str(run_dir) in message
    assert {k: v for k, v in file_digests(run_dir).items() if k != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"}
    assert train_main([*settings, "--resume"]) == 0  # released: the resume goes ahead


def _list_speakers(info, entries, names):
    info.write_text(json.dumps([e for e in entries if e["speaker"] in names], indent=2), encoding="utf-8")


def test_resume_keeps_the_runs_speakers_and_refuses_a_trained_one_that_has_gone(tmp_path, tiny_model_dir, capsys,
                                                                               caplog):
    """Issue 25 item 6: a speaker extracted into the data folder after the run started broke resume."""
    info = write_extracted_data(tmp_path / "data", 64, speakers=("alice", "bob", "carol"))
    entries = json.loads(info.read_text())
    _list_speakers(info, entries, {"alice", "bob"})
    run_dir = tmp_path / "run"
    settings = tiny_overrides(tiny_model_dir, info, run_dir)
    run_training(load_train_config(DEFAULT_CONFIG, [*settings, "train.max_steps=1"]))
    _list_speakers(info, entries, {"alice", "bob", "carol"})  # carol was extracted into the folder since
    with caplog.at_level("INFO", logger="indextts.training.inputs"):
        run_training(load_train_config(DEFAULT_CONFIG, [*settings, "train.max_steps=2", "train.resume=auto"]))
    assert "ignoring ['carol'], added to" in caplog.text
    trained = json.loads((latest_checkpoint(run_dir) / "speakers.json").read_text())["speakers"]
    assert [s["name"] for s in trained] == ["alice", "bob"]

    _list_speakers(info, entries, {"bob", "carol"})  # alice's data has gone
    before = file_digests(run_dir)
    status = train_main([*settings, "train.max_steps=3", "--resume"])
    message = capsys.readouterr().err
    assert status == 2 and "trained on speaker(s) ['alice']" in message and str(info) in message
    assert "re-run indextts-extract for them" in message and "Traceback" not in message
    assert file_digests(run_dir) == before
