"""Manifests, filtering, token-budget batching (determinism, resume position, DDP split) and collation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from indextts.contracts.manifests import ManifestRow, read_manifest
from indextts.training.data import (
    CONDITION_LATENTS, CodesDataset, LengthLimits, TokenBudgetBatchSampler, build_examples, collate,
    sequence_length,
)
from indextts.errors import DataError


def _write_manifest(folder, rows):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "codes").mkdir(exist_ok=True)
    lines = []
    for uid, text, num_codes, duration in rows:
        np.save(folder / "codes" / f"{uid}.npy", np.arange(num_codes, dtype=np.int32))
        lines.append(json.dumps({"uid": uid, "text": text, "codes": f"codes/{uid}.npy", "duration": duration,
                                 "num_codes": num_codes}))
    path = folder / "metadata_train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_manifest_resolves_relative_paths(tmp_path):
    path = _write_manifest(tmp_path / "spk", [("a", "hello", 5, 1.0)])
    (row,) = read_manifest(path)
    assert row.codes == (tmp_path / "spk" / "codes" / "a.npy").resolve() and row.num_codes == 5


def test_read_manifest_names_the_bad_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"uid": "a", "text": "x", "codes": "c.npy", "duration": 1, "num_codes": 3}\n{"uid": "b"}\n')
    with pytest.raises(DataError, match=r"m.jsonl:2 lacks"):
        read_manifest(path)


def test_build_examples_filters_by_duration_and_model_limits(tmp_path):
    rows = [ManifestRow("ok", "", "abc", tmp_path / "x.npy", 2.0, 10, "m:1"),
            ManifestRow("short", "", "abc", tmp_path / "x.npy", 0.1, 10, "m:2"),
            ManifestRow("many_codes", "", "abc", tmp_path / "x.npy", 2.0, 99, "m:3"),
            ManifestRow("long_text", "", "abcdefgh", tmp_path / "x.npy", 2.0, 10, "m:4"),
            ManifestRow("empty", "", "", tmp_path / "x.npy", 2.0, 10, "m:5")]
    examples, report = build_examples(rows, lambda row: ([ord(c) for c in row.text], 0), 1, LengthLimits(0.5, 5.0, 5, 50))
    assert [e.uid for e in examples] == ["ok"] and report.kept == 1 and sum(report.dropped.values()) == 4
    assert examples[0].length == sequence_length(3, 10) and examples[0].speaker_index == 1


def _lengths(n=200, seed=0):
    return np.random.default_rng(seed).integers(40, 300, n)


def test_batches_respect_the_budget_and_cover_every_example_once():
    lengths = _lengths()
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=1000, max_batch_size=8, seed=3)
    batches = sampler.epoch_batches(0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[b]) <= 1000 and len(b) <= 8 for b in batches)
    spreads = [max(lengths[b]) - min(lengths[b]) for b in batches]
    assert np.median(spreads) < 30  # length-bucketed: no batch padded to a far longer outlier


def test_order_is_seeded_per_epoch_and_resumable():
    lengths = _lengths()
    sampler = TokenBudgetBatchSampler(lengths, 1000, 8, seed=3)
    again = TokenBudgetBatchSampler(lengths, 1000, 8, seed=3)
    assert sampler.epoch_batches(1) == again.epoch_batches(1)
    assert sampler.epoch_batches(0) != sampler.epoch_batches(1)
    sampler.set_epoch(1, start_batch=5)
    assert list(sampler) == again.epoch_batches(1)[5:] and len(sampler) == len(again.epoch_batches(1)) - 5


def test_ranks_get_disjoint_equal_shares():
    lengths = _lengths(101)
    shares = [TokenBudgetBatchSampler(lengths, 1000, 8, seed=1, rank=r, world_size=3).epoch_batches(2)
              for r in range(3)]
    assert len({len(s) for s in shares}) == 1
    seen = [i for share in shares for b in share for i in b]
    assert len(seen) == len(set(seen))
    uneven = [TokenBudgetBatchSampler(lengths, 1000, 8, seed=1, rank=r, world_size=3, even=False).epoch_batches(0)
              for r in range(3)]
    assert sorted(i for share in uneven for b in share for i in b) == list(range(101))


def test_outlier_longer_than_the_budget_gets_its_own_batch():
    sampler = TokenBudgetBatchSampler([50, 60, 5000], 500, 8, seed=0)
    assert [2] in sampler.epoch_batches(0)


def test_dataset_and_collate_pad_with_zeros(tmp_path):
    path = _write_manifest(tmp_path / "spk", [("a", "hi", 3, 1.0), ("b", "hello", 5, 1.0)])
    examples, _ = build_examples(read_manifest(path), lambda row: ([7] * len(row.text), 0), 0, LengthLimits(0, 10, 50, 50))
    batch = collate([CodesDataset(examples)[i] for i in range(2)])
    assert batch.text_ids.shape == (2, 5) and batch.codes.shape == (2, 5)
    assert batch.text_lengths.tolist() == [2, 5] and batch.code_lengths.tolist() == [3, 5]
    assert torch.equal(batch.codes[0], torch.tensor([0, 1, 2, 0, 0])) and batch.codes.dtype == torch.long
    assert batch.real_size(CONDITION_LATENTS) == sequence_length(2, 3) + sequence_length(5, 5)
    assert batch.padded_size(CONDITION_LATENTS) == 2 * sequence_length(5, 5)


@pytest.mark.parametrize("prefix_rows", [32, 34, 3])  # IndexTTS 1.x, IndexTTS-2, IndexTTS-2.5
def test_token_counts_use_the_prefix_rows_they_are_given(tmp_path, prefix_rows):
    path = _write_manifest(tmp_path / "spk", [("a", "hi", 3, 1.0), ("b", "hello", 5, 1.0)])
    examples, _ = build_examples(read_manifest(path), lambda row: ([7] * len(row.text), 0), 0, LengthLimits(0, 10, 50, 50))
    batch = collate([CodesDataset(examples)[i] for i in range(2)])
    assert batch.real_size(prefix_rows) == sequence_length(2, 3, prefix_rows) + sequence_length(5, 5, prefix_rows)
    assert batch.padded_size(prefix_rows) == 2 * sequence_length(5, 5, prefix_rows)


def test_codes_shape_mismatch_is_a_data_error(tmp_path):
    path = _write_manifest(tmp_path / "spk", [("a", "hi", 3, 1.0)])
    np.save(tmp_path / "spk" / "codes" / "a.npy", np.arange(4, dtype=np.int32))
    examples, _ = build_examples(read_manifest(path), lambda row: ([7], 0), 0, LengthLimits(0, 10, 50, 50))
    with pytest.raises(DataError, match="manifest says"):
        CodesDataset(examples)[0]


def test_budget_holds_for_the_padded_batch_on_adversarial_length_mixes(tmp_path):
    """Long texts with short codes next to short texts with long codes: the collated batch stays in budget."""
    rng = np.random.default_rng(7)
    long_text = np.stack([rng.integers(150, 200, 60), rng.integers(5, 20, 60)], axis=1)
    long_codes = np.stack([rng.integers(2, 10, 60), rng.integers(250, 300, 60)], axis=1)
    mixed = rng.integers(1, 300, (80, 2))
    for segments in (np.concatenate([long_text, long_codes]), mixed, np.concatenate([long_text, long_codes, mixed])):
        for budget in (600, 1500, 4000):
            sampler = TokenBudgetBatchSampler(segments, budget, 64, seed=1)
            for epoch in range(3):
                for b in sampler.epoch_batches(epoch):
                    padded = len(b) * sequence_length(segments[b, 0].max(), segments[b, 1].max())
                    assert padded <= budget or len(b) == 1
    # the same figure from real collated tensors
    items = [(torch.ones(int(t), dtype=torch.long), torch.ones(int(c), dtype=torch.long), 0, i, torch.zeros(0), 0,
              torch.zeros(0, 0)) for i, (t, c) in enumerate(np.concatenate([long_text[:3], long_codes[:3]]))]
    sampler = TokenBudgetBatchSampler([(len(item[0]), len(item[1])) for item in items], 1500, 64, seed=0)
    for b in sampler.epoch_batches(0):
        assert collate([items[i] for i in b]).padded_size(CONDITION_LATENTS) <= 1500 or len(b) == 1


def test_length_limits_without_an_upper_duration():
    limits = LengthLimits(0.5, None, 10, 10)
    assert limits.duration_ok(1000.0) and not limits.duration_ok(0.1)
