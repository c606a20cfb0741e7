"""Model dims: each model's keys listed once, read from the config once, and the only input of the loaders."""

from dataclasses import replace

import pytest

from indextts.checkpoint_folder import CheckpointFolder
from indextts.checkpoints import expected_shapes
from indextts.config import RELEASE_CONFIGS, load_config, validate_config
from indextts.families import FAMILIES
from indextts.dims import BigVGANDims, ConditionDims, DVAEDims, GPTDims, ModelDims
from indextts.errors import CheckpointError, ConfigError

MODEL_FILES = [(GPTDims, "gpt.pth"), (DVAEDims, "dvae.pth"), (BigVGANDims, "bigvgan_generator.pth")]


@pytest.mark.parametrize("release", sorted(RELEASE_CONFIGS))
@pytest.mark.parametrize("dims_class,file", MODEL_FILES, ids=[file for _, file in MODEL_FILES])
def test_packaged_release_config_dims_give_the_manifest_shapes(release, dims_class, file, release_manifest):
    dims = dims_class.from_config(load_config(RELEASE_CONFIGS[release]))
    shapes = {name: list(shape) for name, shape in expected_shapes(dims).items()}
    assert shapes == release_manifest[release][file]


def test_dims_read_their_section_only():
    cfg = load_config(RELEASE_CONFIGS["IndexTTS-1.5"])
    gpt, vocoder = GPTDims.from_config(cfg), BigVGANDims.from_config(cfg)
    assert isinstance(gpt.condition_module, ConditionDims) and gpt.condition_module.output_size == 512
    assert gpt.condition_num_latent == 32  # a default: the release config omits the key
    assert vocoder.resblock_dilation_sizes == ((1, 3, 5),) * 3  # pinned from indextts-1.5.yaml
    assert "segment_size" in cfg.bigvgan and "segment_size" not in BigVGANDims.known_keys()


def test_config_requires_and_accepts_exactly_the_dims_fields():
    cfg = load_config(RELEASE_CONFIGS["IndexTTS-1.5"])
    for key in GPTDims.known_keys():
        if key not in cfg.gpt:
            cfg.gpt[key] = getattr(GPTDims.from_config(cfg), key)
    validate_config(cfg, "the complete config", FAMILIES["1.5"])  # every field with a default is a known key
    cfg.vqvae = {"not_a_field": 1}
    with pytest.raises(ConfigError) as error:
        validate_config(cfg, "the damaged config", FAMILIES["1.5"])
    message = str(error.value)
    assert all(f"'vqvae.{key}' is missing" in message for key in DVAEDims.required_keys())
    assert "'vqvae.not_a_field' is not a known key" in message
    assert message.count("is missing") == len(DVAEDims.required_keys())


def test_folder_reads_dims_once_and_loads_through_them(tiny_model_dir):
    folder = CheckpointFolder(tiny_model_dir)
    assert folder.dims == ModelDims.from_config(folder.cfg)
    assert folder.load_gpt().model_dim == folder.dims.gpt.model_dim
    deeper = replace(folder.dims.gpt, layers=folder.dims.gpt.layers + 1)
    folder.dims = replace(folder.dims, gpt=deeper)
    with pytest.raises(CheckpointError) as error:
        folder.load_gpt()
    message = str(error.value)
    assert f"does not fit the model described by {folder.config_file}" in message
    assert "tensors missing (gpt.h.2." in message
