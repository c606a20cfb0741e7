"""Write small, seeded, random-weight base folders in the official IndexTTS checkpoint formats.

Tests, the demo and benchmarks need a model folder without downloading the release weights.
``write_tiny_checkpoints(out_dir)`` writes one in a few seconds on a CPU: ``config.yaml``,
``gpt.pth`` (``{"model": state_dict}``), ``dvae.pth`` (plain state dict),
``bigvgan_generator.pth`` (``{"generator": state_dict}`` with ``weight_g`` / ``weight_v``) and a
SentencePiece BPE ``bpe.model`` trained on built-in Chinese and English sentences.

``release="1.5"`` or ``"1.0"`` writes random weights of the release sizes (with the release
config) for benchmarks; the tokenizer is still the small built-in one, whose few hundred ids fit
inside the release text vocabulary of 12000.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import sentencepiece as spm
import torch
from omegaconf import OmegaConf

from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoints import build_model
from indextts.config import RELEASE_CONFIGS, load_config
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.dims import ModelDims
from indextts.errors import ConfigError

logger = logging.getLogger(__name__)

RELEASES = ("tiny", "1.5", "1.0")
BPE_VOCAB_SIZE = 400
# The tiny GPT is random, so its init is shaped to behave a little like a trained model:
# outputs depend on text and speaker, and greedy decoding stops after a length that grows
# roughly with the code position (so synthesis in tests ends on its own after a few seconds).
TOKEN_EMBEDDING_STD = 1.0
HEAD_STD = 0.2
BLOCK_WEIGHT_GAIN = 2.0
PERCEIVER_ATTENTION_GAIN = 4.0
STOP_RAMP = 6.0
STOP_RAMP_CODES = 120
STOP_HEAD_GAIN = 3.0
CODEBOOK_FIT_SECONDS = 30.0

TINY_MODEL_CONFIG = {
    "dataset": {
        "bpe_model": "bpe.model",
        "sample_rate": 24000,
        "squeeze": False,
        "mel": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "win_length": 1024,
                "n_mels": 100, "mel_fmin": 0, "normalize": False},
    },
    "gpt": {
        "model_dim": 64, "max_mel_tokens": 320, "max_text_tokens": 240, "heads": 4,
        "use_mel_codes_as_input": True, "mel_length_compression": 1024, "layers": 2,
        "number_text_tokens": None, "number_mel_codes": 258, "start_mel_token": 256,
        "stop_mel_token": 257, "start_text_token": 0, "stop_text_token": 1,
        "train_solo_embeddings": False, "condition_type": "conformer_perceiver",
        "condition_module": {"output_size": 32, "linear_units": 64, "attention_heads": 2,
                             "num_blocks": 2, "input_layer": "conv2d2", "perceiver_mult": 2},
    },
    "vqvae": {
        "channels": 100, "num_tokens": 256, "hidden_dim": 32, "num_resnet_blocks": 1,
        "codebook_dim": 32, "num_layers": 2, "positional_dims": 1, "kernel_size": 3,
        "smooth_l1_loss": True, "use_transposed_convs": False,
    },
    "dvae_checkpoint": "dvae.pth",
    "gpt_checkpoint": "gpt.pth",
    "bigvgan_checkpoint": "bigvgan_generator.pth",
    "bigvgan": {
        "resblock": "1", "upsample_rates": [4, 4, 4, 4, 2, 2],
        "upsample_kernel_sizes": [8, 8, 4, 4, 4, 4], "upsample_initial_channel": 128,
        "resblock_kernel_sizes": [3, 7, 11],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "feat_upsample": False, "speaker_embedding_dim": 32,
        "cond_d_vector_in_each_upsampling_layer": True, "gpt_dim": 64,
        "activation": "snakebeta", "snake_logscale": True, "num_mels": 100, "sampling_rate": 24000,
    },
    "version": 1.5,  # the family it imitates at tiny sizes (indextts.families)
}

TOKENIZER_SENTENCES = (
    "今天天气很好，我们一起去公园散步吧。",
    "这是一个用于测试的小型语音合成模型。",
    "请在听到提示音之后留下您的姓名和电话号码。",
    "他说明天早上八点在火车站门口见面。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "学习一门新的语言需要时间和耐心。",
    "你好吗？我很好，谢谢你的关心！",
    "北京是中国的首都，也是一座历史悠久的城市。",
    "音乐可以让人放松心情，忘记烦恼。",
    "我们的目标是让每个人都能听到自然的声音。",
    "小明喜欢在周末读书、画画和跑步。",
    "这家餐厅的饭菜非常好吃，价格也不贵。",
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a tiny text to speech model for testing.",
    "Please leave your name and phone number after the tone.",
    "It is a beautiful day, let us go for a walk in the park.",
    "Learning a new language takes time and patience.",
    "Music helps people relax and forget their worries.",
    "She sells sea shells by the sea shore.",
    "We will meet at the train station tomorrow morning at eight.",
    "How are you? I am fine, thank you for asking!",
    "Reading, painting and running are his favourite weekend activities.",
    "今天我们学习 English 和中文。",
    "这个 model 可以说 hello 也可以说你好。",
)

_CJK = re.compile(r"([\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef])")


def prepare_bpe_text(text: str) -> str:
    """Text as the release tokenizer sees it: Latin upper-cased, each CJK character space-separated."""
    return " ".join(_CJK.sub(r" \1 ", text.upper()).split())


def train_tiny_bpe(vocab_size: int = BPE_VOCAB_SIZE) -> bytes:
    """Serialized SentencePiece BPE model trained on the built-in sentences, ids 0/1/2 = <s>/</s>/<unk>."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([prepare_bpe_text(s) for s in TOKENIZER_SENTENCES]),
        model_writer=model, model_type="bpe", vocab_size=vocab_size, hard_vocab_limit=False,
        character_coverage=1.0, bos_id=0, eos_id=1, unk_id=2, pad_id=-1, num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def synthetic_speechlike_audio(seconds: float, generator: torch.Generator) -> torch.Tensor:
    """Seeded harmonic tones with a moving pitch plus noise bursts, (S,) at 24 kHz."""
    sample_rate = 24000
    time = torch.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 120 + 80 * torch.sin(2 * torch.pi * 0.7 * time) + 40 * torch.rand(1, generator=generator)
    phase = 2 * torch.pi * torch.cumsum(pitch, 0) / sample_rate
    voiced = sum(torch.sin(k * phase) / k for k in range(1, 8))
    envelope = (torch.sin(2 * torch.pi * 3.1 * time) > -0.3).float()
    noise = torch.randn(time.shape, generator=generator) * (1 - envelope)
    return (0.3 * voiced * envelope + 0.05 * noise).clamp(-1, 1)


@torch.no_grad()
def _fit_codebook(dvae, mel_cfg, generator: torch.Generator) -> None:
    """Set the codebook to encoder outputs of synthetic speech-like audio, so codes vary with the input."""
    audio = synthetic_speechlike_audio(CODEBOOK_FIT_SECONDS, generator)
    mel = MelSpectrogramFeatures.from_config(mel_cfg)(audio)
    latents = dvae.encode(mel)[0].t()  # (T, codebook_dim)
    picks = torch.randint(0, latents.shape[0], (dvae.num_tokens,), generator=generator)
    embed = latents[picks] + 0.01 * latents.std() * torch.randn(
        dvae.num_tokens, latents.shape[1], generator=generator)
    dvae.codebook.embed.copy_(embed.t())
    dvae.codebook.embed_avg.copy_(embed.t())


@torch.no_grad()
def shape_random_gpt_init(gpt, generator: torch.Generator) -> None:
    """Re-initialise a random GPT (any size, 1.x or 2.x) so that generation is non-degenerate (see the constants above)."""
    for embedding in (gpt.text_embedding, gpt.mel_embedding, gpt.mel_pos_embedding.emb,
                      gpt.text_pos_embedding.emb):
        embedding.weight.normal_(0.0, TOKEN_EMBEDDING_STD, generator=generator)
    for head in (gpt.text_head, gpt.mel_head):
        head.weight.normal_(0.0, HEAD_STD, generator=generator)
    for weight in gpt.gpt.h.parameters():
        if weight.dim() == 2:  # GPT-2 Conv1D weights are (fan_in, fan_out)
            weight.normal_(0.0, BLOCK_WEIGHT_GAIN / weight.shape[0] ** 0.5, generator=generator)
    perceiver = getattr(gpt, "perceiver_encoder", None)  # absent in IndexTTS-2.5 (CAMPPlus speaker row)
    if perceiver is not None:
        perceiver.latents.normal_(0.0, 1.0, generator=generator)
        for attention, _ in perceiver.layers:
            for linear in (attention.to_q, attention.to_kv):
                linear.weight.mul_(PERCEIVER_ATTENTION_GAIN)
    stop_direction = torch.randn(gpt.model_dim, generator=generator)
    stop_direction /= stop_direction.norm()
    positions = torch.arange(gpt.mel_pos_embedding.length, dtype=torch.float32)
    gpt.mel_pos_embedding.emb.weight.add_(STOP_RAMP * (positions / STOP_RAMP_CODES)[:, None] * stop_direction)
    gpt.mel_head.weight[gpt.stop_mel_token] = STOP_HEAD_GAIN * stop_direction


def _model_config(release: str):
    if release == "tiny":
        return OmegaConf.create(TINY_MODEL_CONFIG)
    path = RELEASE_CONFIGS[f"IndexTTS-{release}"]
    if not path.is_file():
        raise ConfigError(f"The release config {path} is missing; it ships with the repository. "
                          "Restore it from git or use release='tiny'.")
    return OmegaConf.load(path)


def write_tiny_checkpoints(out_dir: str | Path, seed: int = 0, release: str = "tiny") -> Path:
    """Write a complete seeded base folder into ``out_dir`` (created) and return its path.

    ``release`` is "tiny" (small sizes, seconds on a CPU; clips up to ~12 s and ~200 text tokens
    fit), or "1.5" / "1.0" for random weights of the release sizes.
    """
    if release not in RELEASES:
        raise ConfigError(f"Unknown release {release!r} for the tiny checkpoint writer; use one of {RELEASES}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = _model_config(release)

    bpe_bytes = train_tiny_bpe()
    (out_dir / cfg.dataset.bpe_model).write_bytes(bpe_bytes)
    if release == "tiny":
        cfg.gpt.number_text_tokens = spm.SentencePieceProcessor(model_proto=bpe_bytes).get_piece_size()
    OmegaConf.save(cfg, out_dir / CONFIG_FILENAME)

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dims = ModelDims.from_config(cfg)
        gpt, dvae, bigvgan = build_model(dims.gpt), build_model(dims.dvae), build_model(dims.bigvgan)
    if release == "tiny":
        shape_random_gpt_init(gpt, generator)
        _fit_codebook(dvae.eval(), cfg.dataset.mel, generator)

    torch.save({"model": gpt.state_dict()}, out_dir / cfg.gpt_checkpoint)
    torch.save(dvae.state_dict(), out_dir / cfg.dvae_checkpoint)
    torch.save({"generator": bigvgan.stored_state_dict()}, out_dir / cfg.bigvgan_checkpoint)
    load_config(out_dir)
    logger.info("Wrote %s base folder %s (seed %d)", release, out_dir, seed)
    return out_dir
