"""Write small, seeded, random-weight IndexTTS-2 / 2.5 base folders in the official on-disk formats.

Tests and the demo need a generation-2 folder without downloading the release and its four auxiliary
models. ``write_tiny_v2_folder(out_dir, version)`` writes one in seconds on a CPU, every part built by
this project's own modules: ``config.yaml`` (sizes: ``indextts/configs/tiny-2.yaml``), ``gpt.pth``
(``{"model": sd}``), ``s2mel.pth`` (``{"net": {part: sd}}``, weight norm as ``weight_g``/``weight_v``),
the tokenizer (IndexTTS-2: a SentencePiece ``bpe.model``; 2.5: a tiktoken rank file), the w2v-BERT
statistics, the emotion matrices ``feat1.pt``/``feat2.pt``, and under ``hf_cache/`` a tiny w2v-BERT in
transformers' format, the semantic codec (2: MaskGCT safetensors; 2.5: ``codec.pth`` in the folder),
CAMPPlus and BigVGAN v2. The GPT gets the shaped initialisation of the 1.5 tiny folder, so greedy
decoding depends on text and speaker and stops on its own. The weights are random: the audio is noise.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sentencepiece as spm
import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from indextts.atomic_files import staged_dir
from indextts.bigvgan.models import unfold_weight_norm
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.config import PACKAGED_CONFIGS, read_base_config
from indextts.errors import ConfigError
from indextts.families import FAMILIES, Family
from indextts.tiny import TOKENIZER_SENTENCES, shape_random_gpt_init, train_tiny_bpe
from indextts.v2.campplus import CAMPPlus, CAMPPlusDims
from indextts.v2.folder import AUX_MODELS, CODEC_FILE_25
from indextts.v2.gpt.dims import GPTV2Dims
from indextts.v2.gpt.model import UnifiedVoiceV2
from indextts.v2.s2mel import S2Mel, S2MelDims, stored_state_dict
from indextts.v2.semantic import SemanticCodec, SemanticCodecDims, save_tiny_w2v_bert
from indextts.v2.text25 import PIECE, VOCAB_FILE, Tokenizer25
from indextts.v2.vocoder import BigVGANv2, BigVGANv2Dims

logger = logging.getLogger(__name__)

VERSIONS = tuple(version for version, family in FAMILIES.items() if family.generation == 2)
SIZES_FILE = PACKAGED_CONFIGS / "tiny-2.yaml"
TIKTOKEN_MERGES = 200
"""BPE merges learned on top of the 256 single bytes of the 2.5 tiktoken file."""
STATS_MEAN_STD = 0.1
STATS_VAR_SPREAD = 0.5
"""``wav2vec2bert_stats.pt``: mean ~ N(0, 0.1^2) and var in [1, 1.5) per channel."""
EMOTION_ROW_STD = 0.1
"""Scale of the ``feat2.pt`` emotion rows, which are added to the GPT's conditioning rows."""


def tiny_model_config(sizes: DictConfig, family: Family, number_text_tokens: int) -> DictConfig:
    """The folder's ``config.yaml`` for ``family``: the tiny sizes (``SIZES_FILE``), with the 2.5 changes applied
    (also the tiny size of benchmarks/bench_train.py)."""
    cfg = OmegaConf.create(OmegaConf.to_container(sizes.config))
    cfg.gpt.number_text_tokens = number_text_tokens
    if family.multilingual:
        cfg.version = float(family.version)
        del cfg.dataset["bpe_model"]
        cfg.semantic_codec.downsample_scale = 2
    return cfg


def train_tiny_tiktoken(merges: int = TIKTOKEN_MERGES) -> str:
    """A tiktoken rank file (``base64(token) rank`` per line): the 256 bytes in byte order, then BPE merges
    learned, most frequent pair first (ties: the later pair in byte order), on the lower-cased built-in
    sentences."""
    ranks = {bytes([value]): value for value in range(256)}
    words = Counter(tuple(bytes([b]) for b in piece.encode("utf-8"))
                    for text in TOKENIZER_SENTENCES for piece in PIECE.findall(text.lower()))
    for _ in range(merges):
        pairs = Counter()
        for word, count in words.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        (left, right), _ = max(pairs.items(), key=lambda item: (item[1], item[0]))
        ranks[left + right] = len(ranks)
        merged = Counter()
        for word, count in words.items():
            merged[_merge_pair(word, left, right)] += count
        words = merged
    return "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items())


def _merge_pair(word: tuple[bytes, ...], left: bytes, right: bytes) -> tuple[bytes, ...]:
    """``word`` with every adjacent (left, right) joined into one token, left to right."""
    out, i = [], 0
    while i < len(word):
        if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
            out.append(left + right)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def _write_tokenizer(folder: Path, family: Family) -> int:
    """Write the tokenizer file of ``family``; return its vocabulary size (``gpt.number_text_tokens``)."""
    if not family.multilingual:
        bpe_bytes = train_tiny_bpe()
        (folder / "bpe.model").write_bytes(bpe_bytes)
        return spm.SentencePieceProcessor(model_proto=bpe_bytes).get_piece_size()
    (folder / VOCAB_FILE).write_text(train_tiny_tiktoken(), encoding="ascii")
    return Tokenizer25.from_file(folder / VOCAB_FILE).vocab_size


def _aux_path(folder: Path, key: str, name: str | None = None) -> Path:
    """Where auxiliary model ``key`` (file ``name`` of its hub repository) lies in the folder."""
    local = AUX_MODELS[key].local_paths
    path = folder / local[name] if name else AUX_MODELS[key].in_folder(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_gpt_and_s2mel(folder: Path, cfg: DictConfig, family: Family, generator: torch.Generator) -> None:
    gpt = UnifiedVoiceV2(GPTV2Dims.from_config(cfg))
    shape_random_gpt_init(gpt, generator)
    torch.save({"model": gpt.state_dict()}, folder / cfg.gpt_checkpoint)
    s2mel = S2Mel(S2MelDims.from_config(cfg), with_gpt_layer=not family.multilingual)
    torch.save({"net": stored_state_dict(s2mel)}, folder / cfg.s2mel_checkpoint)


@contextmanager
def _without_transformers_progress_bars() -> Iterator[None]:
    """Silence transformers' one-shard "Writing model shards" bar (library code does not print)."""
    from transformers.utils import logging as transformers_logging

    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def _write_semantic_front(folder: Path, cfg: DictConfig, family: Family, w2v: DictConfig, seed: int,
                          generator: torch.Generator) -> None:
    """The tiny w2v-BERT (sizes ``w2v``), its statistics and the semantic codec (2: MaskGCT safetensors;
    2.5: codec.pth in the folder)."""
    with _without_transformers_progress_bars():
        save_tiny_w2v_bert(_aux_path(folder, "w2v_bert"), w2v.hidden_size, w2v.num_layers, seed)
    stats = {"mean": STATS_MEAN_STD * torch.randn(w2v.hidden_size, generator=generator),
             "var": 1.0 + STATS_VAR_SPREAD * torch.rand(w2v.hidden_size, generator=generator)}
    torch.save(stats, folder / cfg.w2v_stat)
    codec = SemanticCodec(SemanticCodecDims.from_config(cfg))
    stored = {name: tensor.contiguous() for name, tensor in
              unfold_weight_norm(codec.state_dict(), codec.weight_norm_modules()).items()}
    if not family.multilingual:
        save_file(stored, _aux_path(folder, "semantic_codec"))
    else:
        torch.save({"model": stored}, folder / CODEC_FILE_25)


def _write_speaker_and_vocoder(folder: Path, cfg: DictConfig, settings: DictConfig,
                               generator: torch.Generator) -> None:
    """CAMPPlus, the emotion matrices (speaker rows in its width, emotion rows in the GPT's) and BigVGAN v2."""
    campplus_dims = CAMPPlusDims.from_config(cfg)
    torch.save(CAMPPlus(campplus_dims).state_dict(), _aux_path(folder, "campplus"))
    rows = sum(cfg.emo_num)
    torch.save(torch.randn(rows, campplus_dims.embedding_size, generator=generator), folder / cfg.spk_matrix)
    torch.save(EMOTION_ROW_STD * torch.randn(rows, cfg.gpt.model_dim, generator=generator), folder / cfg.emo_matrix)
    config_json = json.dumps(OmegaConf.to_container(settings), indent=2) + "\n"
    _aux_path(folder, "bigvgan", "config.json").write_text(config_json)
    vocoder = BigVGANv2(BigVGANv2Dims.from_section(settings))
    torch.save({"generator": vocoder.stored_state_dict()}, _aux_path(folder, "bigvgan", "bigvgan_generator.pt"))


def _refuse_non_empty(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(
            f"{out_dir} already exists and is not an empty folder, so the tiny IndexTTS folder is not written "
            "there (nothing was changed). Give a new folder, or remove that one first.")


def write_tiny_v2_folder(out_dir: str | Path, version: str = "2", seed: int = 0) -> Path:
    """Write a complete seeded IndexTTS-2 (``version="2"``) or 2.5 folder at ``out_dir``; return its path.

    ``out_dir`` must not exist or be empty. The folder is filled beside it and moved in at the end,
    so an error leaves nothing behind. The same seed gives byte-identical files.
    """
    version = str(version)
    if version not in VERSIONS:
        raise ConfigError(f"Unknown version {version!r} for the tiny IndexTTS-2 folder writer; use one of {VERSIONS}.")
    family = FAMILIES[version]
    out_dir = Path(out_dir).expanduser()
    _refuse_non_empty(out_dir)
    generator = torch.Generator().manual_seed(seed)
    sizes = OmegaConf.load(SIZES_FILE)
    with staged_dir(out_dir) as staging, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        cfg = tiny_model_config(sizes, family, _write_tokenizer(staging, family))
        OmegaConf.save(cfg, staging / CONFIG_FILENAME)
        _write_gpt_and_s2mel(staging, cfg, family, generator)
        _write_semantic_front(staging, cfg, family, sizes.w2v_bert_model, seed, generator)
        _write_speaker_and_vocoder(staging, cfg, sizes.bigvgan_v2, generator)
        read_base_config(staging)
    logger.info("Wrote a tiny IndexTTS-%s folder %s (seed %d)", version, out_dir, seed)
    return out_dir
