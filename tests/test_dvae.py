"""DiscreteVAE: release structure, golden codes, and padded batches."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from indextts.checkpoint_folder import CheckpointFolder
from indextts.dims import DVAEDims
from indextts.dvae.model import DiscreteVAE

from helpers import RELEASES, conformance_folders

MODEL_GOLDENS = conformance_folders("expected.safetensors")


@pytest.mark.parametrize("release", RELEASES)
def test_meta_model_matches_release_manifest(release, release_manifest):
    manifest = release_manifest[release]
    with torch.device("meta"):
        model = DiscreteVAE(DVAEDims.from_config(manifest["config"]))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == manifest["dvae.pth"]


def _golden_mels(expected):
    index = 0
    while f"mel_{index}" in expected:
        yield index, expected[f"mel_{index}"]
        index += 1


@pytest.mark.parametrize("folder", MODEL_GOLDENS, ids=[p.name for p in MODEL_GOLDENS])
def test_codes_match_golden(folder):
    expected = load_file(folder / "expected.safetensors")
    dvae = CheckpointFolder(folder).load_dvae()
    for index, mel in _golden_mels(expected):
        codes = dvae.get_codebook_indices(mel.unsqueeze(0))
        assert codes.dtype == torch.int64
        assert torch.equal(codes[0], expected[f"codes_{index}"])


@pytest.mark.parametrize("folder", MODEL_GOLDENS, ids=[p.name for p in MODEL_GOLDENS])
def test_padded_batch_gives_each_rows_codes(folder):
    expected = load_file(folder / "expected.safetensors")
    dvae = CheckpointFolder(folder).load_dvae()
    mels = [mel for _, mel in _golden_mels(expected)]
    lengths = torch.tensor([m.shape[1] for m in mels])
    batch = torch.full((len(mels), mels[0].shape[0], int(lengths.max())), 3.0)  # non-zero padding
    for row, mel in enumerate(mels):
        batch[row, :, : mel.shape[1]] = mel
    codes = dvae.get_codebook_indices(batch, lengths)
    code_lengths = dvae.code_lengths(lengths)
    for row, mel in enumerate(mels):
        assert code_lengths[row] == (mel.shape[1] + 3) // 4
        assert torch.equal(codes[row, : code_lengths[row]], expected[f"codes_{row}"])


def test_padded_batch_equals_unpadded_on_tiny_model(tiny_model_dir):
    dvae = CheckpointFolder(tiny_model_dir).load_dvae()
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([37, 80, 13])
    mels = [torch.randn(100, int(n), generator=generator) - 5 for n in lengths]
    batch = torch.zeros(3, 100, 80)
    for row, mel in enumerate(mels):
        batch[row, :, : mel.shape[1]] = mel
    codes = dvae.get_codebook_indices(batch, lengths)
    for row, mel in enumerate(mels):
        alone = dvae.get_codebook_indices(mel.unsqueeze(0))[0]
        assert alone.shape[0] == dvae.code_lengths(lengths)[row]
        assert torch.equal(codes[row, : alone.shape[0]], alone)


def test_decode_round_trip_shape(tiny_model_dir):
    dvae = CheckpointFolder(tiny_model_dir).load_dvae()
    codes = torch.randint(0, dvae.num_tokens, (2, 9))
    assert dvae.decode(codes).shape == (2, 100, 36)
