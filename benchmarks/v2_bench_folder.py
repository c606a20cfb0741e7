"""A seeded random IndexTTS-2 folder in the official file formats, for bench_v2_reference.py.

The folder holds what the benchmarked stages load, laid out as the release and its auxiliary
models are (``gpt.pth``, ``s2mel.pth``, ``wav2vec2bert_stats.pt``, ``hf_cache/w2v-bert-2.0/``,
``hf_cache/semantic_codec_model.safetensors``, ``hf_cache/bigvgan/``), so that this project and the
reference each load the same weights with their own loaders. Sizes:

- ``release``: indextts/configs/indextts-2.yaml, with w2v-BERT 2.0 and BigVGAN v2 (22 kHz, 80 bands)
  as conformance/indextts2/state_dict_manifest.json records them (about 5 GB on disk);
- ``tiny``: the tiny golden folder's config (conformance/indextts2/tiny2), its w2v-BERT and codec
  widths made equal so the features flow from one model into the next (this project's config keys;
  the reference hard-codes 1024, so the tiny size is for this project only).

Weights are the modules' own initialisation under ``torch.manual_seed(seed)``; a ``made.json``
records the size, the seed and whether w2v-BERT is there, and a folder that already holds them is reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from indextts.bigvgan.models import unfold_weight_norm
from indextts.config import PACKAGED_CONFIGS
from indextts.v2.gpt.dims import GPTV2Dims
from indextts.v2.gpt.model import UnifiedVoiceV2
from indextts.v2.s2mel import S2Mel, S2MelDims, stored_state_dict
from indextts.v2.semantic import SemanticCodec, SemanticCodecDims
from indextts.v2.vocoder import BigVGANv2, BigVGANv2Dims

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "conformance" / "indextts2" / "state_dict_manifest.json"
TINY_FOLDER = REPO_ROOT / "conformance" / "indextts2" / "tiny2"
TINY_FEATURE_WIDTH = 16
"""The tiny folder's w2v-BERT width, used for every feature width that follows it."""
TINY_GPT_LATENT = 32
MARKER = "made.json"
W2V_DIR, BIGVGAN_DIR = "hf_cache/w2v-bert-2.0", "hf_cache/bigvgan"
CODEC_FILE = "hf_cache/semantic_codec_model.safetensors"


def release_config(version: str = "2") -> dict:
    """The release model config of IndexTTS-2 (the packaged indextts-2.yaml) or of IndexTTS-2.5 (``version``
    "2.5": the one the state-dict manifest derives from the v2.5.0 code, its assumptions listed there)."""
    if version == "2.5":
        return json.loads(MANIFEST.read_text())["IndexTTS-2.5"]["config"]
    return OmegaConf.to_container(OmegaConf.load(PACKAGED_CONFIGS / "indextts-2.yaml"))


def folder_settings(size: str) -> tuple[dict, dict, dict]:
    """(model config, w2v-BERT config kwargs, BigVGAN v2 config.json) of ``size`` (release or tiny)."""
    if size == "release":
        release = json.loads(MANIFEST.read_text())["IndexTTS-2"]
        return release_config(), release["w2v_bert_config"], release["bigvgan_config"]
    config = OmegaConf.to_container(OmegaConf.load(TINY_FOLDER / "config.yaml"))
    config["semantic_codec"]["hidden_size"] = TINY_FEATURE_WIDTH
    config["gpt"]["condition_input_dim"] = TINY_FEATURE_WIDTH
    config["s2mel"]["length_regulator"]["in_channels"] = TINY_FEATURE_WIDTH
    config["s2mel"]["gpt_layer_input_dim"] = TINY_GPT_LATENT
    w2v = {"hidden_size": TINY_FEATURE_WIDTH, "output_hidden_size": TINY_FEATURE_WIDTH, "num_hidden_layers": 17,
           "num_attention_heads": 2, "intermediate_size": 2 * TINY_FEATURE_WIDTH, "conv_depthwise_kernel_size": 5}
    bigvgan = json.loads((TINY_FOLDER / BIGVGAN_DIR / "config.json").read_text())
    return config, w2v, bigvgan


def save_w2v_bert(folder: Path, config_kwargs: dict) -> None:
    """A random ``Wav2Vec2BertModel`` and its feature extractor in transformers' format, plus the stats file."""
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    model = Wav2Vec2BertModel(Wav2Vec2BertConfig(**config_kwargs))
    model.save_pretrained(folder / W2V_DIR, safe_serialization=True)
    SeamlessM4TFeatureExtractor().save_pretrained(folder / W2V_DIR)
    width = int(config_kwargs["hidden_size"])
    torch.save({"mean": 0.1 * torch.randn(width), "var": 0.5 + torch.rand(width)}, folder / "wav2vec2bert_stats.pt")
    del model


def save_models(folder: Path, config: dict, bigvgan: dict) -> None:
    """gpt.pth, s2mel.pth, the MaskGCT codec safetensors and the BigVGAN v2 hub folder."""
    cfg = OmegaConf.create(config)
    torch.save({"model": UnifiedVoiceV2(GPTV2Dims.from_config(cfg)).state_dict()}, folder / "gpt.pth")
    torch.save({"net": stored_state_dict(S2Mel(S2MelDims.from_config(cfg)))}, folder / "s2mel.pth")
    codec = SemanticCodec(SemanticCodecDims.from_config(cfg))
    save_file(dict(unfold_weight_norm(codec.state_dict(), codec.weight_norm_modules())), str(folder / CODEC_FILE))
    (folder / BIGVGAN_DIR).mkdir(parents=True, exist_ok=True)
    (folder / BIGVGAN_DIR / "config.json").write_text(json.dumps(bigvgan, indent=1) + "\n")
    vocoder = BigVGANv2(BigVGANv2Dims.from_section(bigvgan))
    torch.save({"generator": vocoder.stored_state_dict()}, folder / BIGVGAN_DIR / "bigvgan_generator.pt")


def ensure_folder(folder: Path, size: str, seed: int, with_w2v_bert: bool = True) -> Path:
    """Write the random folder of ``size`` unless ``folder`` already holds that size and seed; return it.

    ``with_w2v_bert=False`` leaves out w2v-BERT and its statistics (2.4 GB at release size), which only
    the ``semantic`` stage reads.
    """
    folder = Path(folder)
    marker = folder / MARKER
    found = json.loads(marker.read_text()) if marker.is_file() else {}
    if found.get("size") == size and found.get("seed") == seed and found.get("w2v_bert", True) >= with_w2v_bert:
        return folder
    config, w2v, bigvgan = folder_settings(size)
    (folder / "hf_cache").mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        OmegaConf.save(OmegaConf.create(config), folder / "config.yaml")
        save_models(folder, config, bigvgan)
        if with_w2v_bert:
            save_w2v_bert(folder, w2v)
    marker.write_text(json.dumps({"size": size, "seed": seed, "w2v_bert": with_w2v_bert}) + "\n")
    return folder
