"""UnifiedVoice: release structure, padding invariance, training forward, autocast and utilities."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import RELEASES
from indextts.dims import GPTDims
from indextts.errors import ConfigError, TextError
from indextts.gpt.model import IGNORE_INDEX, UnifiedVoice


SMALL_DIMS = GPTDims(
    model_dim=32,
    layers=2,
    heads=2,
    max_text_tokens=20,
    max_mel_tokens=30,
    number_text_tokens=50,
    number_mel_codes=42,
    start_text_token=0,
    stop_text_token=1,
    start_mel_token=40,
    stop_mel_token=41,
    condition_type="conformer_perceiver",
    condition_module=dict(
        output_size=16, linear_units=32, attention_heads=2, num_blocks=2, input_layer="conv2d2", perceiver_mult=2
    ),
)


@pytest.fixture(scope="module")
def model() -> UnifiedVoice:
    torch.manual_seed(0)
    return UnifiedVoice(SMALL_DIMS).eval()


def random_batch(seed: int = 0):
    """Conditioning (3, 32, D), right-padded texts and codes with lengths; padding holds junk ids."""
    generator = torch.Generator().manual_seed(seed)
    text_lengths = torch.tensor([7, 3, 5])
    code_lengths = torch.tensor([4, 9, 6])
    texts = torch.randint(2, 50, (3, 7), generator=generator)
    codes = torch.randint(0, 40, (3, 9), generator=generator)
    texts[torch.arange(7) >= text_lengths[:, None]] = 0
    codes[torch.arange(9) >= code_lengths[:, None]] = 0
    conditioning = torch.randn(3, 32, 32, generator=generator)
    return conditioning, texts, text_lengths, codes, code_lengths


def row(tensors, i):
    """Row i of a random_batch, unpadded, as a batch of one."""
    conditioning, texts, text_lengths, codes, code_lengths = tensors
    return (conditioning[i : i + 1], texts[i : i + 1, : text_lengths[i]], text_lengths[i : i + 1],
            codes[i : i + 1, : code_lengths[i]], code_lengths[i : i + 1])


@pytest.mark.parametrize("release", RELEASES)
def test_release_config_builds_manifest_names_and_shapes(release, release_manifest):
    with torch.device("meta"):
        built = UnifiedVoice(GPTDims.from_config(release_manifest[release]["config"]))
    shapes = {name: list(tensor.shape) for name, tensor in built.state_dict().items()}
    assert shapes == release_manifest[release]["gpt.pth"]


def test_gpt2_own_embeddings_are_gone(model):
    names = model.state_dict().keys()
    assert not [name for name in names if name.startswith(("gpt.wte", "gpt.wpe"))]
    embeds = torch.randn(2, 5, 32)
    with torch.no_grad():
        plain = model.gpt(inputs_embeds=embeds, use_cache=False).last_hidden_state
        shifted = model.gpt(inputs_embeds=embeds, position_ids=torch.arange(5)[None] + 7,
                            use_cache=False).last_hidden_state
    torch.testing.assert_close(plain, shifted)


def test_text_inputs_layout(model):
    texts = torch.tensor([[5, 6, 7], [8, 9, 0]])
    lengths = torch.tensor([3, 2])
    with torch.no_grad():
        embeds = model.text_inputs(texts, lengths)
        positions = model.text_pos_embedding.emb.weight
        for i, ids in enumerate([[0, 5, 6, 7, 1], [0, 8, 9, 1]]):
            wanted = model.text_embedding(torch.tensor(ids)) + positions[: len(ids)]
            torch.testing.assert_close(embeds[i, : len(ids)], wanted)
            assert not embeds[i, len(ids):].any()


def test_padded_batch_rows_equal_single_rows(model):
    batch = random_batch()
    with torch.no_grad():
        latents = model.forward_latents(*batch)
        train = model.forward_train(*batch)
        for i in range(3):
            single = row(batch, i)
            n, length = int(batch[4][i]), int(batch[2][i])
            torch.testing.assert_close(latents[i, :n], model.forward_latents(*single)[0], atol=1e-5, rtol=1e-5)
            alone = model.forward_train(*single)
            torch.testing.assert_close(train.mel_logits[i, :, : n + 1], alone.mel_logits[0], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(train.text_logits[i, :, : length + 1], alone.text_logits[0],
                                       atol=1e-5, rtol=1e-5)
    assert latents.shape == (3, 9, 32)


def test_train_targets_and_losses(model):
    batch = random_batch()
    _, texts, text_lengths, codes, code_lengths = batch
    with torch.no_grad():
        out = model.forward_train(*batch)
    assert out.text_logits.shape == (3, model.text_vocab_size, 8)
    assert out.mel_logits.shape == (3, 42, 10)
    text_losses, mel_losses = [], []
    for i in range(3):
        n, length = int(code_lengths[i]), int(text_lengths[i])
        mel_targets = torch.cat([codes[i, :n], torch.tensor([model.stop_mel_token])])
        text_targets = torch.cat([texts[i, :length], torch.tensor([model.stop_text_token])])
        assert out.mel_targets[i, : n + 1].tolist() == mel_targets.tolist()
        assert (out.mel_targets[i, n + 1:] == IGNORE_INDEX).all()
        assert out.mel_target_mask[i].sum() == n + 1
        assert out.text_targets[i, : length + 1].tolist() == text_targets.tolist()
        mel_losses.append(F.cross_entropy(out.mel_logits[i, :, : n + 1].T, mel_targets, reduction="none"))
        text_losses.append(F.cross_entropy(out.text_logits[i, :, : length + 1].T, text_targets, reduction="none"))
    torch.testing.assert_close(out.mel_loss, torch.cat(mel_losses).mean())
    torch.testing.assert_close(out.text_loss, torch.cat(text_losses).mean())


class _AtenOps(TorchDispatchMode):
    """Records the name of every aten op dispatched while active."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_training_loss_avoids_nll_loss2d_which_has_no_deterministic_cuda_kernel(model):
    """3-D (B, V, T) logits would dispatch nll_loss2d; train.deterministic=true fails on CUDA with it."""
    with _AtenOps() as ops:
        out = model.forward_train(*random_batch())
        (out.text_loss + out.mel_loss).backward()
    model.zero_grad(set_to_none=True)
    assert {"nll_loss_forward", "nll_loss_backward"} <= ops.names
    assert not {name for name in ops.names if name.startswith("nll_loss2d")}


def test_conditioning_mask_and_unpadded_row(model):
    generator = torch.Generator().manual_seed(1)
    mels = torch.randn(2, 100, 40, generator=generator)
    lengths = torch.tensor([40, 25])
    mels[1, :, 25:] = 0
    with torch.no_grad():
        features, mask = model.conditioning_encoder(mels.transpose(1, 2), lengths)
        batched = model.get_conditioning(mels, lengths)
        alone = model.get_conditioning(mels[:1])
    assert features.shape == (2, 19, 16)
    assert mask.sum(dim=1).tolist() == [19, 12]
    assert batched.shape == (2, 32, 32)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)


def _gradients(model, batch, checkpointing: bool) -> dict[str, torch.Tensor]:
    model.set_gradient_checkpointing(checkpointing)
    model.train()
    model.zero_grad()
    torch.manual_seed(3)
    out = model.forward_train(*batch)
    (out.text_loss + out.mel_loss).backward()
    model.eval()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = UnifiedVoice(SMALL_DIMS)
    batch = random_batch()
    plain = _gradients(model, batch, checkpointing=False)
    checkpointed = _gradients(model, batch, checkpointing=True)
    assert model.gradient_checkpointing
    assert plain.keys() == checkpointed.keys() and any(name.startswith("gpt.h.") for name in plain)
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5)
    model.set_gradient_checkpointing(False)
    assert not model.gradient_checkpointing


def test_resize_text_vocab_keeps_old_tokens():
    torch.manual_seed(0)
    model = UnifiedVoice(SMALL_DIMS).eval()
    batch = random_batch()
    with torch.no_grad():
        before = model.forward_train(*batch)
        model.resize_text_vocab(model.text_vocab_size + 3)
        after = model.forward_train(*batch)
    assert model.text_vocab_size == 54
    assert model.text_embedding.weight.shape == (54, 32) and model.text_head.weight.shape == (54, 32)
    torch.testing.assert_close(after.text_logits[:, :51], before.text_logits)
    torch.testing.assert_close(after.mel_logits, before.mel_logits)
    new_token_batch = (batch[0], torch.full_like(batch[1], 53), *batch[2:])
    assert torch.isfinite(model.forward_train(*new_token_batch).text_loss)
    with pytest.raises(ValueError):
        model.resize_text_vocab(10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast(model, dtype):
    batch = random_batch()
    mels = torch.randn(2, 100, 30)
    with torch.no_grad():
        reference = model.forward_train(*batch)
        reference_conditioning = model.get_conditioning(mels, torch.tensor([30, 20]))
    trainable = UnifiedVoice(SMALL_DIMS)
    trainable.load_state_dict(model.state_dict())
    trainable.eval()
    with torch.autocast("cpu", dtype=dtype):
        conditioning = trainable.get_conditioning(mels, torch.tensor([30, 20]))
        out = trainable.forward_train(*batch)
        latents = trainable.forward_latents(*batch)
    (out.text_loss + out.mel_loss).backward()
    assert out.mel_loss.dtype == torch.float32 and torch.isfinite(latents).all()
    assert all(torch.isfinite(p.grad).all() for p in trainable.parameters() if p.grad is not None)
    torch.testing.assert_close(conditioning.float(), reference_conditioning, atol=0.1, rtol=0.05)
    torch.testing.assert_close(out.mel_loss, reference.mel_loss, atol=0.05, rtol=0.02)


def test_unsupported_architecture_is_rejected():
    with pytest.raises(ConfigError, match="condition_type"):
        UnifiedVoice(replace(SMALL_DIMS, condition_type="perceiver"))


def test_too_long_text_is_rejected(model):
    texts = torch.full((1, 21), 5)
    with pytest.raises(TextError, match="at most 20"):
        model.text_inputs(texts, torch.tensor([21]))
