"""Write a tiny IndexTTS-2 / 2.5 folder in the official formats and load it back with the reference.

Runs in the reference venv with the reference checkout (v2.0.0 or v2.5.0) on ``sys.path``. Only
the hub downloads are replaced: each auxiliary model is read from the folder's ``hf_cache/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from omegaconf import OmegaConf

import tiny_configs as tiny
from tiny_weights import TIKTOKEN_FILE, randomize, train_sentencepiece, train_tiktoken

TOKENIZER_CORPUS = [
    "今天天气很好，我们去公园散步。", "我们的新产品正式发布，售价一千九百九十九元。", "你好世界，欢迎使用语音合成。",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.", "the quick brown fox jumps over the lazy dog.",
    "HELLO WORLD, IT IS A GOOD DAY.", "hello world, it is a good day. 我爱你 I LOVE YOU",
]
VOCODER_OUTPUT_GAIN = 0.01


def cjk_spaced(text: str) -> str:
    return "".join(f" {c} " if "\u4e00" <= c <= "\u9fff" else c for c in text)


def write_tokenizer(folder: Path, version: str) -> int:
    """Write the folder's tokenizer file; return ``gpt.number_text_tokens`` for it."""
    if version == "2.0":
        (folder / "bpe.model").write_bytes(train_sentencepiece([cjk_spaced(t) for t in TOKENIZER_CORPUS], 120))
        import sentencepiece as spm
        return spm.SentencePieceProcessor(model_file=str(folder / "bpe.model")).GetPieceSize()
    (folder / TIKTOKEN_FILE).write_text(train_tiktoken("\n".join(TOKENIZER_CORPUS * 4), 300))
    from indextts.utils.tokenizer import get_encoding
    return get_encoding(name=TIKTOKEN_FILE[: -len(".tiktoken")], model_dir=str(folder)).n_vocab


def build_gpt(folder: Path, cfg, version: str, generator: torch.Generator):
    from indextts.gpt.model_v2 import UnifiedVoice
    from indextts.utils.checkpoint import load_checkpoint

    extra = {"spk_cond_mode": "campplus"} if version == "2.5" else {}
    model = UnifiedVoice(**cfg.gpt, **extra)
    randomize(model, generator)
    torch.save({"model": model.state_dict()}, folder / cfg.gpt_checkpoint)
    loaded = UnifiedVoice(**cfg.gpt, **extra)
    load_checkpoint(loaded, str(folder / cfg.gpt_checkpoint))
    loaded.eval()
    loaded.post_init_gpt2_config(use_deepspeed=False, kv_cache=True, half=False)
    return loaded


def build_s2mel(folder: Path, cfg, version: str, generator: torch.Generator):
    from indextts.s2mel.modules.commons import MyModel, load_checkpoint2

    with_gpt_layer = version == "2.0"
    model = MyModel(cfg.s2mel, use_gpt_latent=True) if with_gpt_layer else MyModel(cfg.s2mel)
    randomize(model, generator)
    torch.save({"net": {name: module.state_dict() for name, module in model.models.items()}},
               folder / cfg.s2mel_checkpoint)
    fresh = MyModel(cfg.s2mel, use_gpt_latent=True) if with_gpt_layer else MyModel(cfg.s2mel)
    loaded, _, _, _ = load_checkpoint2(fresh, None, str(folder / cfg.s2mel_checkpoint), load_only_params=True,
                                       ignore_modules=[], is_distributed=False)
    loaded.models["cfm"].estimator.setup_caches(max_batch_size=1, max_seq_length=8192)
    return loaded.eval()


def build_codec(folder: Path, cfg, version: str, generator: torch.Generator):
    if version == "2.0":
        import safetensors.torch
        from indextts.utils.maskgct_utils import build_semantic_codec
        model = build_semantic_codec(cfg.semantic_codec)
        randomize(model, generator)
        path = folder / "hf_cache" / "semantic_codec_model.safetensors"
        safetensors.torch.save_model(model, str(path))
        loaded = build_semantic_codec(cfg.semantic_codec)
        safetensors.torch.load_model(loaded, str(path))
        return loaded.eval()
    from indextts.codec.models import EnhancedCodec
    model = EnhancedCodec(**cfg.semantic_codec, cfg=cfg.semantic_codec)
    randomize(model, generator)
    torch.save({"model": model.state_dict()}, folder / "codec.pth")
    loaded = EnhancedCodec(**cfg.semantic_codec, cfg=cfg.semantic_codec)
    loaded.load_checkpoint(str(folder / "codec.pth"))
    return loaded.eval()


def build_campplus(folder: Path, cfg, generator: torch.Generator):
    from indextts.s2mel.modules.campplus.DTDNN import CAMPPlus

    model = CAMPPlus(**cfg.campplus)
    randomize(model, generator)
    path = folder / "hf_cache" / "campplus_cn_common.bin"
    torch.save(model.state_dict(), path)
    loaded = CAMPPlus(**cfg.campplus)
    loaded.load_state_dict(torch.load(path, map_location="cpu"))
    return loaded.eval()


def build_bigvgan(folder: Path, reference: Path, generator: torch.Generator):
    from indextts.s2mel.modules.bigvgan import bigvgan
    from indextts.s2mel.modules.bigvgan.env import AttrDict

    hparams = json.loads((reference / "indextts/s2mel/modules/bigvgan/config.json").read_text())
    hparams.update(tiny.BIGVGAN_CHANGES)
    target = folder / "hf_cache" / "bigvgan"
    target.mkdir(parents=True)
    (target / "config.json").write_text(json.dumps(hparams, indent=2) + "\n")
    model = bigvgan.BigVGAN(AttrDict(hparams), use_cuda_kernel=False)
    randomize(model, generator)
    with torch.no_grad():  # random weights overdrive the output: scale it into [-1, 1], where the reference clamps
        model.conv_post.weight_g.mul_(VOCODER_OUTPUT_GAIN)
    torch.save({"generator": model.state_dict()}, target / "bigvgan_generator.pt")
    loaded = bigvgan.BigVGAN.from_pretrained(str(target), use_cuda_kernel=False)
    loaded.remove_weight_norm()
    return loaded.eval()


def build_w2v_bert(folder: Path, cfg, generator: torch.Generator) -> SimpleNamespace:
    """Tiny w2v-BERT in transformers' format, its stats file, loaded as ``infer_v2_5.py`` loads them."""
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    target = folder / "hf_cache" / "w2v-bert-2.0"
    model = Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny.W2V_BERT))
    randomize(model, generator)
    model.save_pretrained(str(target), safe_serialization=True)
    SeamlessM4TFeatureExtractor(**tiny.W2V_FEATURE_EXTRACTOR).save_pretrained(str(target))
    width = tiny.W2V_BERT["hidden_size"]
    torch.save({"mean": 0.1 * torch.randn(width, generator=generator),
                "var": 0.5 + torch.rand(width, generator=generator)}, folder / cfg.w2v_stat)
    stats = torch.load(folder / cfg.w2v_stat)
    return SimpleNamespace(
        extract_features=SeamlessM4TFeatureExtractor.from_pretrained(str(target), local_files_only=True),
        semantic_model=Wav2Vec2BertModel.from_pretrained(str(target), local_files_only=True).eval(),
        semantic_mean=stats["mean"], semantic_std=torch.sqrt(stats["var"]))


def write_emotion_matrices(folder: Path, cfg, generator: torch.Generator) -> tuple:
    """feat1.pt (speaker rows, 192 wide) and feat2.pt (emotion rows, model_dim wide), split by emo_num."""
    rows = sum(cfg.emo_num)
    torch.save(torch.randn(rows, 192, generator=generator), folder / cfg.spk_matrix)
    torch.save(0.5 * torch.randn(rows, cfg.gpt.model_dim, generator=generator), folder / cfg.emo_matrix)
    spk = torch.split(torch.load(folder / cfg.spk_matrix), list(cfg.emo_num))
    emo = torch.split(torch.load(folder / cfg.emo_matrix), list(cfg.emo_num))
    return spk, emo


def build_folder(folder: Path, version: str, reference: Path, seed: int) -> SimpleNamespace:
    """Write every file of the tiny folder and return the reference models loaded from it."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the classes' own initialisation, before ``randomize`` replaces it
    (folder / "hf_cache").mkdir(parents=True)
    text_tokens = write_tokenizer(folder, version)
    OmegaConf.save(OmegaConf.create(tiny.folder_config(version, text_tokens)), folder / "config.yaml")
    cfg = OmegaConf.load(folder / "config.yaml")
    spk_matrix, emo_matrix = write_emotion_matrices(folder, cfg, generator)
    return SimpleNamespace(
        cfg=cfg, version=version, folder=folder, spk_matrix=spk_matrix, emo_matrix=emo_matrix,
        gpt=build_gpt(folder, cfg, version, generator), s2mel=build_s2mel(folder, cfg, version, generator),
        codec=build_codec(folder, cfg, version, generator), campplus=build_campplus(folder, cfg, generator),
        bigvgan=build_bigvgan(folder, reference, generator), w2v=build_w2v_bert(folder, cfg, generator))
