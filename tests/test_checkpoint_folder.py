"""CheckpointFolder: one opened base folder, cross-checked config, loaders and a cached identity."""

import json
import os

import pytest
import torch
from omegaconf import OmegaConf

from indextts.checkpoint_folder import FINGERPRINT_CACHE_SUFFIX, CheckpointFolder
from indextts.fingerprints import tensors_fingerprint
from indextts.checkpoints import load_state_dict
from indextts.errors import ConfigError
from indextts.tiny import write_tiny_checkpoints


def test_loaders_and_paths(tiny_model_dir):
    folder = CheckpointFolder(tiny_model_dir)
    assert folder.paths.gpt == tiny_model_dir.resolve() / "gpt.pth"
    assert folder.load_gpt().model_dim == folder.cfg.gpt.model_dim
    assert folder.load_dvae() is not None and folder.load_bigvgan() is not None
    assert folder.tokenizer().vocab_size > 3
    assert folder.sample_rate == 24000 and folder.condition_latents == 32


def test_contradicting_sections_are_all_named(tmp_path):
    model_dir = write_tiny_checkpoints(tmp_path / "tiny", seed=0)
    cfg = OmegaConf.load(model_dir / "config.yaml")
    cfg.bigvgan.gpt_dim = int(cfg.gpt.model_dim) + 1
    cfg.bigvgan.num_mels = 80
    OmegaConf.save(cfg, model_dir / "config.yaml")
    with pytest.raises(ConfigError) as error:
        CheckpointFolder(model_dir)
    assert "gpt.model_dim" in str(error.value) and "bigvgan.num_mels 80" in str(error.value)


def test_fingerprint_is_over_tensors_and_cached_by_size_and_mtime(tmp_path):
    model_dir = write_tiny_checkpoints(tmp_path / "tiny", seed=0)
    expected = tensors_fingerprint(load_state_dict(model_dir / "gpt.pth", "gpt"))
    assert CheckpointFolder(model_dir).gpt_fingerprint == expected
    cache = model_dir / ("gpt.pth" + FINGERPRINT_CACHE_SUFFIX)
    stored = json.loads(cache.read_text())
    assert stored["sha256"] == expected
    stored["sha256"] = "cached-value"
    cache.write_text(json.dumps(stored))
    assert CheckpointFolder(model_dir).gpt_fingerprint == "cached-value"  # the cache is used
    state = torch.load(model_dir / "gpt.pth", weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 1
    torch.save(state, model_dir / "gpt.pth")
    os.utime(model_dir / "gpt.pth", ns=(1, 1))
    changed = CheckpointFolder(model_dir).gpt_fingerprint
    assert changed not in (expected, "cached-value")


def test_identity_names_both_hashes(tiny_model_dir):
    identity = CheckpointFolder(tiny_model_dir).identity()
    assert set(identity) == {"gpt_sha256", "bpe_sha256"} and all(len(v) == 64 for v in identity.values())
