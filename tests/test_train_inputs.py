"""Training inputs are checked before any weights load: data files, base identity, special tokens (issue 13)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from helpers import file_digests, tiny_overrides, write_extracted_data
from indextts.checkpoint_folder import CheckpointFolder
from indextts.cli.train import main as train_main
from indextts.errors import TrainingError
from indextts.training.inputs import check_inputs


def _cli(capsys, model_dir, info, run_dir, *extra) -> tuple[int, str]:
    status = train_main(tiny_overrides(model_dir, info, run_dir, *extra))
    return status, capsys.readouterr().err


def test_every_missing_or_broken_file_is_listed_before_the_weights_load(tmp_path, tiny_model_dir, capsys, caplog):
    info = write_extracted_data(tmp_path / "data", 64)
    (tmp_path / "data" / "alice" / "codes" / "alice_001.npy").unlink()
    (tmp_path / "data" / "bob" / "codes" / "bob_002.npy").write_bytes(b"not an array")
    np.save(tmp_path / "data" / "bob" / "conditions" / "bob_003.npy", np.zeros((32, 8), dtype=np.float32))
    before = file_digests(tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="indextts"):
        status, message = _cli(capsys, tiny_model_dir, info, tmp_path / "run")
    assert status == 2 and message.count("error:") == 1 and "Traceback" not in message
    assert "3 data file(s)" in message and "alice_001.npy is missing" in message
    assert "bob_002.npy is unreadable" in message and "bob_003.npy holds shape (32, 8), not (32, 64)" in message
    assert "metadata_train.jsonl:2" in message and "Re-run indextts-extract" in message
    assert "Loaded gpt weights" not in caplog.text  # found before the weights load
    assert file_digests(tmp_path / "data") == before


def _set_entries(info, **fields):
    entries = json.loads(info.read_text())
    for entry in entries:
        entry.update(fields)
    info.write_text(json.dumps(entries))


def test_data_from_another_base_is_refused_naming_both_fingerprints(tmp_path, tiny_model_dir, capsys):
    info = write_extracted_data(tmp_path / "data", 64)
    identity = CheckpointFolder(tiny_model_dir).identity()
    other = {"gpt_sha256": "0" * 64, "bpe_sha256": identity["bpe_sha256"]}
    _set_entries(info, base=other)
    status, message = _cli(capsys, tiny_model_dir, info, tmp_path / "run")
    assert status == 2 and "another base model" in message
    assert "0" * 64 in message and identity["gpt_sha256"] in message and "Re-run indextts-extract" in message
    assert not (tmp_path / "run").exists()


def test_matching_base_passes_and_old_data_only_warns(tmp_path, tiny_model_dir, caplog):
    info = write_extracted_data(tmp_path / "data", 64)
    with caplog.at_level(logging.WARNING, logger="indextts"):
        check_inputs(str(tiny_model_dir), str(info), [])
    assert "records no base fingerprint" in caplog.text
    _set_entries(info, base=CheckpointFolder(tiny_model_dir).identity())
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="indextts"):
        inputs = check_inputs(str(tiny_model_dir), str(info), [])
    assert "base fingerprint" not in caplog.text
    assert [s.name for s in inputs.speakers] == ["alice", "bob"]
    assert inputs.speakers[1].medoid_condition.shape == (32, 64) and inputs.speakers[1].reference_mel.shape[0] == 100


def _add_laugh(data_root):
    manifest = data_root / "alice" / "metadata_train.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["text"] = "Hello <laugh> there."
    rows[0]["special_tokens"] = ["<laugh>"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_special_tokens_in_the_data_must_be_listed(tmp_path, tiny_model_dir, capsys):
    info = write_extracted_data(tmp_path / "data", 64)
    _add_laugh(tmp_path / "data")
    status, message = _cli(capsys, tiny_model_dir, info, tmp_path / "run")
    assert status == 2 and "<laugh> (first in" in message and "metadata_train.jsonl:1" in message
    assert "train.special_tokens=[<laugh>]" in message
    inputs = check_inputs(str(tiny_model_dir), str(info), ["<laugh>"])
    assert inputs.speakers[0].train_rows[0].special_tokens == ("<laugh>",)


def test_special_tokens_listed_in_speaker_info_count_too(tmp_path, tiny_model_dir):
    info = write_extracted_data(tmp_path / "data", 64)
    _set_entries(info, special_tokens=["<breath>"])
    with pytest.raises(TrainingError, match="<breath>"):
        check_inputs(str(tiny_model_dir), str(info), ["<laugh>"])


@pytest.mark.parametrize("damage", ["truncated", "pickled"])
def test_a_truncated_or_pickled_medoid_condition_is_refused_naming_re_extraction(tmp_path, tiny_model_dir, capsys,
                                                                                   damage):
    """Issue 25 item 8: np.load raised (and a pickled array must never be loaded)."""
    info = write_extracted_data(tmp_path / "data", 64)
    medoid = tmp_path / "data" / "alice" / "medoid_condition.npy"
    if damage == "truncated":
        medoid.write_bytes(medoid.read_bytes()[:100])
    else:
        np.save(medoid, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    before = file_digests(tmp_path / "data")
    status, message = _cli(capsys, tiny_model_dir, info, tmp_path / "run")
    assert status == 2 and "Traceback" not in message
    assert f"medoid condition {medoid} cannot be read as a plain array" in message
    assert "re-run indextts-extract for this speaker" in message
    assert file_digests(tmp_path / "data") == before and not (tmp_path / "run").exists()


def test_a_run_dir_that_is_a_file_is_refused(tmp_path, tiny_model_dir, capsys):
    """Issue 25 item 8: a run_dir that is a file gave a traceback."""
    info = write_extracted_data(tmp_path / "data", 64)
    run_file = tmp_path / "run"
    run_file.write_text("my notes\n", encoding="utf-8")
    status, message = _cli(capsys, tiny_model_dir, info, run_file)
    assert status == 2 and "Traceback" not in message
    assert f"Cannot use run_dir={run_file} as the run folder" in message and "choose a folder path" in message
    assert run_file.read_text(encoding="utf-8") == "my notes\n"
