"""Strict checkpoint loading and its error messages.

Release-shaped files are faked with zero-stride tensors (``torch.zeros(()).expand(shape)``), which
torch.save stores as one element: the loader rejects them before allocating any weights.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from omegaconf import OmegaConf

from indextts.checkpoint_folder import CheckpointFolder
from indextts.checkpoints import RELEASE_CONFIGS, expected_shapes, load_model, load_state_dict
from indextts.dims import BigVGANDims, GPTDims
from indextts.errors import CheckpointError


def _fake_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {name: torch.zeros(()).expand(shape) for name, shape in shapes.items()}


@pytest.fixture()
def model_dir(tiny_model_dir, tmp_path):
    """A private copy of the tiny folder that a test may damage."""
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


def test_tiny_folder_loads(tiny_model_dir):
    folder = CheckpointFolder(tiny_model_dir)
    gpt, dvae, vocoder = folder.load_gpt(), folder.load_dvae(), folder.load_bigvgan()
    for model in (gpt, dvae, vocoder):
        assert not model.training
        assert all(p.dtype == torch.float32 and not p.is_meta for p in model.parameters())


@pytest.mark.parametrize("kind,file,wrapper", [("gpt", "gpt.pth", "model"), ("dvae", "dvae.pth", None),
                                                ("bigvgan", "bigvgan_generator.pth", "generator")])
def test_plain_and_wrapped_state_dicts_load(model_dir, kind, file, wrapper):
    state = load_state_dict(model_dir / file, kind)
    torch.save(state if wrapper else {"model": state}, model_dir / file)
    assert load_state_dict(model_dir / file, kind).keys() == state.keys()


def test_changed_shape_is_named(model_dir):
    state = torch.load(model_dir / "dvae.pth", weights_only=True)
    state["decoder.0.bias"] = torch.zeros(state["decoder.0.bias"].shape[0] + 1)
    torch.save(state, model_dir / "dvae.pth")
    with pytest.raises(CheckpointError) as error:
        CheckpointFolder(model_dir).load_dvae()
    message = str(error.value)
    assert "dvae.pth" in message and "decoder.0.bias" in message and "another shape" in message


def test_missing_and_unexpected_tensors_are_named(model_dir):
    state = torch.load(model_dir / "gpt.pth", weights_only=True)
    state["model"]["extra.weight"] = state["model"].pop("final_norm.weight")
    torch.save(state, model_dir / "gpt.pth")
    with pytest.raises(CheckpointError) as error:
        CheckpointFolder(model_dir).load_gpt()
    message = str(error.value)
    assert "1 tensors missing (final_norm.weight)" in message and "extra.weight" in message


def test_missing_file(model_dir):
    (model_dir / "bigvgan_generator.pth").unlink()
    with pytest.raises(CheckpointError, match=r"does not exist.*`indextts download 1.5 --dir DIR`"):
        CheckpointFolder(model_dir).load_bigvgan()


def test_truncated_file(model_dir):
    path = model_dir / "gpt.pth"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        CheckpointFolder(model_dir).load_gpt()


def test_empty_file(model_dir):
    """An empty file (an interrupted copy) raises EOFError without a message: still one clear error."""
    (model_dir / "gpt.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"gpt\.pth: the file is truncated or corrupt \(EOFError\)"):
        load_state_dict(model_dir / "gpt.pth", "gpt")


def test_pickled_objects_are_refused(model_dir):
    torch.save({"model": {"weight": torch.zeros(1)}, "optimizer": object()}, model_dir / "gpt.pth")
    with pytest.raises(CheckpointError, match="objects other than tensors"):
        CheckpointFolder(model_dir).load_gpt()


def test_not_a_state_dict(model_dir):
    torch.save([torch.zeros(1)], model_dir / "dvae.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        CheckpointFolder(model_dir).load_dvae()


@pytest.mark.parametrize("kind,file", [("gpt", "gpt.pth"), ("bigvgan", "bigvgan_generator.pth")])
def test_release_10_checkpoint_with_15_config_names_the_right_config(tmp_path, kind, file):
    config_15 = OmegaConf.load(RELEASE_CONFIGS["IndexTTS-1.5"])
    config_10 = OmegaConf.load(RELEASE_CONFIGS["IndexTTS-1.0"])
    dims = GPTDims if kind == "gpt" else BigVGANDims
    state = _fake_state_dict(expected_shapes(dims.from_config(config_10)))
    torch.save({"generator" if kind == "bigvgan" else "model": state}, tmp_path / file)
    OmegaConf.save(config_15, tmp_path / "config.yaml")
    folder = CheckpointFolder(tmp_path)
    loader = folder.load_gpt if kind == "gpt" else folder.load_bigvgan
    with pytest.raises(CheckpointError) as error:
        loader()
    message = str(error.value)
    assert file in message and "another shape" in message
    assert str(RELEASE_CONFIGS["IndexTTS-1.0"]) in message


def test_release_15_checkpoint_with_10_config_names_the_right_config(tmp_path):
    config_15 = OmegaConf.load(RELEASE_CONFIGS["IndexTTS-1.5"])
    config_10 = OmegaConf.load(RELEASE_CONFIGS["IndexTTS-1.0"])
    torch.save({"model": _fake_state_dict(expected_shapes(GPTDims.from_config(config_15)))}, tmp_path / "gpt.pth")
    with pytest.raises(CheckpointError) as error:
        load_model(tmp_path / "gpt.pth", GPTDims.from_config(config_10))
    assert str(RELEASE_CONFIGS["IndexTTS-1.5"]) in str(error.value)


def test_tiny_mismatch_gives_no_release_hint(model_dir):
    state = torch.load(model_dir / "dvae.pth", weights_only=True)
    state.pop("codebook.embed")
    torch.save(state, model_dir / "dvae.pth")
    with pytest.raises(CheckpointError) as error:
        CheckpointFolder(model_dir).load_dvae()
    assert "Check that config.yaml belongs to these weights" in str(error.value)
