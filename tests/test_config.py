"""Config loading: release configs validate, problems are reported clearly and all at once."""

import pytest
from omegaconf import OmegaConf

from indextts.checkpoint_folder import CheckpointFolder
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.errors import ConfigError

SHIPPED = RELEASE_CONFIGS


@pytest.mark.parametrize("release", sorted(SHIPPED))
def test_shipped_configs_match_the_manifest(release, release_manifest):
    manifest = release_manifest
    shipped = OmegaConf.to_container(load_config(SHIPPED[release]))
    assert shipped == manifest[release]["config"]


def test_folder_and_file_paths_both_load(tmp_path):
    source = RELEASE_CONFIGS["IndexTTS-1.5"]
    (tmp_path / "config.yaml").write_text(source.read_text())
    assert load_config(tmp_path) == load_config(source)
    paths = CheckpointFolder(tmp_path).paths
    assert paths.gpt == tmp_path.resolve() / "gpt.pth"
    assert paths.bpe == tmp_path.resolve() / "bpe.model"


def test_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="python -m indextts.cli.tiny DIR") as error:
        load_config(tmp_path / "nowhere")
    assert f"`indextts download 1.5 --dir {tmp_path / 'nowhere'}`" in str(error.value)


def test_missing_and_unknown_keys_are_all_listed(tmp_path):
    cfg = load_config(RELEASE_CONFIGS["IndexTTS-1.5"])
    del cfg.gpt["heads"]
    del cfg["dvae_checkpoint"]
    cfg.vqvae.num_tokenz = 8192
    file = tmp_path / "config.yaml"
    OmegaConf.save(cfg, file)
    with pytest.raises(ConfigError) as caught:
        load_config(file)
    message = str(caught.value)
    assert "'gpt.heads' is missing" in message
    assert "'dvae_checkpoint' is missing" in message
    assert "'vqvae.num_tokenz' is not a known key" in message
    assert str(file) in message


def test_invalid_yaml_is_a_config_error(tmp_path):
    file = tmp_path / "config.yaml"
    file.write_text("gpt: [unclosed\n")
    with pytest.raises(ConfigError, match="Cannot parse"):
        load_config(file)
