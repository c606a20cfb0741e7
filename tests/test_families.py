"""Which model family a base folder holds, and how an IndexTTS-2/2.5 folder's files are found."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import constants
from omegaconf import OmegaConf

from indextts.checkpoint_folder import CheckpointFolder
from indextts.config import PACKAGED_CONFIGS, RELEASE_CONFIGS
from indextts.errors import CheckpointError, ConfigError
from indextts.families import FAMILIES, family_of
from indextts.releases import RELEASES
from indextts.v2.folder import AUX_MODELS, VOCAB_FILE_25
from indextts.v2.gpt.dims import GPTV2Dims
from indextts.v2.semantic.codec import SemanticCodecDims

from helpers import REPO_ROOT

V2_CONFIG = PACKAGED_CONFIGS / "indextts-2.yaml"


@pytest.mark.parametrize(("config", "version"), [
    (RELEASE_CONFIGS["IndexTTS-1.5"], "1.5"), (RELEASE_CONFIGS["IndexTTS-1.0"], "1.0"), (V2_CONFIG, "2")])
def test_release_configs_name_their_family(config, version):
    assert family_of(OmegaConf.load(config), str(config)) is FAMILIES[version]


@pytest.mark.parametrize(("version", "expected"), [(2.5, "2.5"), (2.0, "2"), ("2", "2"), (1.5, "1.5")])
def test_version_spellings(version, expected):
    cfg = OmegaConf.load(V2_CONFIG if expected.startswith("2") else RELEASE_CONFIGS["IndexTTS-1.5"])
    cfg.version = version
    assert family_of(cfg, "cfg").version == expected


@pytest.mark.parametrize(("version", "is_25"), [(2.5, True), ("2.50", True), (2.0, False), ("2", False)])
def test_the_family_alone_picks_the_gpt_speaker_mode_and_the_codec_frame_rate(version, is_25):
    """Every spelling of a version gives its family's GPT speaker mode and codec frame rate; no module reads
    ``version`` on its own."""
    cfg = OmegaConf.load(V2_CONFIG)
    cfg.version = version
    assert GPTV2Dims.from_config(cfg).spk_cond_mode == ("campplus" if is_25 else "conformer")
    assert SemanticCodecDims.from_config(cfg).downsample_scale == (2 if is_25 else 1)
    cfg.version = "2.55"
    with pytest.raises(ConfigError, match="which this toolkit does not know"):
        SemanticCodecDims.from_config(cfg)


def test_a_version_without_a_family_or_of_the_other_generation_is_refused():
    cfg = OmegaConf.load(V2_CONFIG)
    cfg.version = 3.0
    with pytest.raises(ConfigError, match=r"version: 3.0, which this toolkit does not know"):
        family_of(cfg, "cfg")
    cfg.version = 1.5
    with pytest.raises(ConfigError, match=r"IndexTTS-1.5.*s2mel_checkpoint"):
        family_of(cfg, "cfg")
    del cfg["version"], cfg["s2mel_checkpoint"]
    with pytest.raises(ConfigError, match="model family is unknown"):
        family_of(cfg, "cfg")


def test_a_v1_folder_names_its_family(tiny_model_dir):
    folder = CheckpointFolder(tiny_model_dir)
    assert folder.family is FAMILIES["1.5"] and folder.family.name == "IndexTTS-1.5"
    with pytest.raises(ConfigError, match="uses no auxiliary models"):
        CheckpointFolder(tiny_model_dir, aux_paths={"campplus": tiny_model_dir})


def _v2_folder(root: Path, version: str = "2", skip: tuple[str, ...] = ()) -> Path:
    """A folder with every file an IndexTTS-2 folder names (empty files: only their presence matters here)."""
    cfg = OmegaConf.load(V2_CONFIG)
    cfg.version = float(version)
    root.mkdir(parents=True)
    OmegaConf.save(cfg, root / "config.yaml")
    names = ["gpt.pth", "s2mel.pth", "wav2vec2bert_stats.pt", "feat1.pt", "feat2.pt"]
    names += ["codec.pth", VOCAB_FILE_25] if version == "2.5" else ["bpe.model"]
    models = [model for key, model in AUX_MODELS.items() if key != "semantic_codec" or version == "2"]
    names += [local for model in models for local in model.local_paths.values()]
    for name in names:
        if name not in skip:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"")
    return root


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub_cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_a_v2_folder_opens_with_its_auxiliary_models_in_hf_cache(tmp_path, version, empty_hub_cache):
    folder = CheckpointFolder(_v2_folder(tmp_path / "base", version))
    assert folder.family is FAMILIES[version] and folder.dims is None
    assert folder.paths.w2v_bert == folder.root / "hf_cache" / "w2v-bert-2.0"
    assert folder.paths.bigvgan == folder.root / "hf_cache" / "bigvgan"
    assert folder.paths.semantic_codec.name == ("codec.pth" if version == "2.5" else "semantic_codec_model.safetensors")
    assert folder.paths.emotion_matrix.name == "feat2.pt" and folder.paths.qwen is None
    assert folder.paths.bpe.name == (VOCAB_FILE_25 if version == "2.5" else "bpe.model")
    with pytest.raises(CheckpointError, match="works only on IndexTTS 1.0/1.5"):
        folder.load_dvae()
    with pytest.raises(CheckpointError, match="gpt.pth"):  # the placeholder is empty: unreadable, named
        folder.load_gpt()


def test_a_missing_auxiliary_model_names_file_repository_and_command(tmp_path, empty_hub_cache):
    root = _v2_folder(tmp_path / "base", skip=("hf_cache/campplus_cn_common.bin",))
    with pytest.raises(CheckpointError) as caught:
        CheckpointFolder(root)
    message = str(caught.value)
    assert "campplus_cn_common.bin" in message and "funasr/campplus" in message
    assert f"indextts download 2 --dir {root.resolve()}" in message and "\n" not in message


def test_a_model_folder_missing_one_file_names_that_file(tmp_path, empty_hub_cache):
    root = _v2_folder(tmp_path / "base", skip=("hf_cache/w2v-bert-2.0/model.safetensors",))
    with pytest.raises(CheckpointError) as caught:
        CheckpointFolder(root)
    message = str(caught.value)
    assert f"{root.resolve() / 'hf_cache' / 'w2v-bert-2.0' / 'model.safetensors'} does not exist" in message
    assert "facebook/w2v-bert-2.0 (model.safetensors)" in message and "auxiliary model path 'w2v_bert'" in message


def test_a_missing_release_file_names_the_release_repository(tmp_path, empty_hub_cache):
    root = _v2_folder(tmp_path / "base", skip=("s2mel.pth",))
    with pytest.raises(CheckpointError, match=r"release file .*s2mel.pth.*IndexTeam/IndexTTS-2 \(s2mel.pth\)"):
        CheckpointFolder(root)


def test_an_explicit_path_or_the_hub_cache_stands_in_for_hf_cache(tmp_path, empty_hub_cache):
    root = _v2_folder(tmp_path / "base", skip=("hf_cache/campplus_cn_common.bin",))
    explicit = tmp_path / "elsewhere" / "campplus.bin"
    explicit.parent.mkdir()
    explicit.write_bytes(b"")
    assert CheckpointFolder(root, aux_paths={"campplus": explicit}).paths.campplus == explicit.resolve()
    with pytest.raises(ConfigError, match="Unknown auxiliary model name"):
        CheckpointFolder(root, aux_paths={"campplusx": explicit})
    snapshot = empty_hub_cache / "models--funasr--campplus" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "campplus_cn_common.bin").write_bytes(b"")
    (empty_hub_cache / "models--funasr--campplus" / "refs").mkdir()
    (empty_hub_cache / "models--funasr--campplus" / "refs" / "main").write_text("abc123")
    assert CheckpointFolder(root).paths.campplus == snapshot / "campplus_cn_common.bin"


def test_every_auxiliary_model_is_one_that_download_fetches():
    fetched = {part.repo_id for release in ("2", "2.5") for part in RELEASES[release].repos}
    assert {model.repo.repo_id for model in AUX_MODELS.values()} <= fetched


@pytest.mark.parametrize("name", ["tiny2", "tiny25"])
def test_a_v2_golden_folder_loads_every_part_through_the_folder(name):
    """The golden folders are IndexTTS-2 / 2.5 folders in the release formats (conformance/indextts2)."""
    folder = CheckpointFolder(REPO_ROOT / "conformance" / "indextts2" / name)
    assert folder.family.version == ("2.5" if name == "tiny25" else "2")
    models = folder.v2
    gpt = folder.load_gpt()
    assert type(gpt).__name__ == "UnifiedVoiceV2" and not gpt.training
    parts = [models.load_semantic_front(), models.load_semantic_codec(), models.load_s2mel(),
             models.load_campplus(), models.load_vocoder()]
    assert all(not part.training for part in parts)
    assert hasattr(parts[2], "gpt_layer") == (name == "tiny2")
    assert len(models.load_emotion().emotion) == 8
    tokenizer = models.tokenizer()
    assert tokenizer is not None
