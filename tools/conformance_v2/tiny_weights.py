"""Random weights and tokenizer files for the tiny golden folders, saved in the official formats.

Runs in the reference venv. Every model is first built by the reference class, given random
values here (seeded), saved the way the release stores it, and then loaded back by the
reference's own loader, so the golden tensors come from what the folder holds.
"""

from __future__ import annotations

import base64
import io
import math

import torch

TIKTOKEN_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
TIKTOKEN_FILE = "multilingual_zh_ja_yue_char_del.tiktoken"


def randomize(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every float parameter and BatchNorm statistic a random value of a sensible scale.

    Matrices ~ N(0, 1/fan_in); norm gains and weight-norm magnitudes near 1 (times the norm of
    their direction); biases and other vectors ~ N(0, 0.1^2). Zero-initialised parameters (for
    example ``speed_emb``) thus become non-zero, so every weight reaches the golden outputs.
    """
    with torch.no_grad():
        params = dict(module.named_parameters())
        magnitudes_last = sorted(params, key=lambda name: name.endswith("weight_g"))  # they follow their direction
        for name in magnitudes_last:
            params[name].copy_(random_value(name, params[name], params, generator))
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(1.0 + 0.5 * torch.rand(buffer.shape, generator=generator))


def random_value(name: str, param: torch.Tensor, params: dict, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(param.shape, generator=generator)
    if name.endswith("weight_g"):
        direction = params[name[: -len("weight_g")] + "weight_v"]
        norm = direction.flatten(1).norm(dim=1).view(param.shape) if direction.dim() > 1 else direction.norm()
        return norm * (1.0 + 0.1 * noise)
    if param.dim() >= 2:
        return noise / math.sqrt(max(1, param[0].numel()))
    if name.endswith(("weight", "gamma")) and "norm" in name.lower():
        return 1.0 + 0.1 * noise
    return 0.1 * noise


def train_sentencepiece(lines: list[str], vocab_size: int) -> bytes:
    """A small SentencePiece BPE model with ids 0/1/2 = <s>/</s>/<unk>, like the release bpe.model."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        character_coverage=1.0, bos_id=0, eos_id=1, unk_id=2, pad_id=-1, hard_vocab_limit=False,
        num_threads=1, minloglevel=2)
    return model.getvalue()


def train_tiktoken(text: str, vocab_size: int) -> str:
    """A tiktoken rank file: the 256 single bytes in byte order (ids 0/1 = bytes 0x00/0x01, which no
    golden text holds, so the reference's removal of ids 0 and 1 never applies), then BPE merges."""
    from tiktoken._educational import bpe_train

    ranks = bpe_train(text, vocab_size, TIKTOKEN_PATTERN, visualise=None)
    return "".join(f"{base64.b64encode(token).decode()} {rank}\n"
                   for token, rank in sorted(ranks.items(), key=lambda item: item[1]))
