"""CPU weight formats for decoding: int8 and bf16 GPT-2 linears stay close to float32 and keep the golden codes."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import conformance_folders
from safetensors.torch import load_file

from indextts.checkpoint_folder import CheckpointFolder
from indextts.errors import InferenceError
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.gpt.quantize import MODES, BFloat16Linear, as_linear, quantize_for_cpu

GOLDEN_FOLDERS = conformance_folders("expected.safetensors")
GREEDY = dict(do_sample=False, num_beams=1, repetition_penalty=1.0)
BEAM = dict(do_sample=False, num_beams=3, repetition_penalty=10.0, length_penalty=0.0)
MIN_GOLDEN_AGREEMENT = 0.9
"""Share of golden code positions a quantised tiny golden model must reproduce (measured: all of them)."""


@pytest.fixture(scope="module")
def tiny_gpt(tiny_model_dir):
    return CheckpointFolder(tiny_model_dir).load_gpt()


def test_as_linear_computes_what_conv1d_computes(tiny_gpt):
    conv1d = tiny_gpt.gpt.h[0].attn.c_attn
    inputs = torch.randn(2, 5, conv1d.weight.shape[0])
    torch.testing.assert_close(as_linear(conv1d)(inputs), conv1d(inputs), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_quantized_linears_replace_every_gpt2_linear(tiny_gpt, mode):
    model = quantize_for_cpu(copy.deepcopy(tiny_gpt), mode)
    expected = BFloat16Linear if mode == "bf16" else torch.ao.nn.quantized.dynamic.Linear
    for block in model.gpt.h:
        for layer in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            assert isinstance(layer, expected)
    assert model.mel_head.weight.dtype == torch.float32


@pytest.mark.parametrize("mode", MODES)
def test_quantized_logits_stay_close_to_float32(tiny_gpt, mode):
    """Teacher-forced mel logits move on average by a small fraction of their spread; the loss barely moves.

    (int8 quantises activations per tensor on the fly, so single logits can move more than the mean.)
    """
    generator = torch.Generator().manual_seed(0)
    dim = tiny_gpt.model_dim
    inputs = (torch.randn(2, 32, dim, generator=generator), torch.randint(2, 50, (2, 7), generator=generator),
              torch.tensor([7, 4]), torch.randint(0, 100, (2, 12), generator=generator), torch.tensor([12, 9]))
    with torch.no_grad():
        reference = tiny_gpt.forward_train(*inputs)
        quantized = quantize_for_cpu(copy.deepcopy(tiny_gpt), mode).forward_train(*inputs)
    valid = reference.mel_target_mask[:, None, :].expand_as(reference.mel_logits)
    change = (quantized.mel_logits - reference.mel_logits)[valid]
    assert change.abs().mean() < 0.1 * reference.mel_logits[valid].std()
    assert abs(float(quantized.mel_loss - reference.mel_loss)) < 0.01 * float(reference.mel_loss)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("folder", GOLDEN_FOLDERS, ids=[p.name for p in GOLDEN_FOLDERS])
def test_quantized_golden_codes(folder, mode):
    golden = load_file(folder / "expected.safetensors")
    model = quantize_for_cpu(CheckpointFolder(folder).load_gpt(), mode)
    indices = sorted(int(name.rsplit("_", 1)[1]) for name in golden if name.startswith("text_"))
    equal = total = 0
    for prefix, options in (("greedy_codes", GREEDY), ("beam_codes", BEAM)):
        for i in indices:
            text = golden[f"text_{i}"][None]
            config = GenerationConfig(max_new_tokens=30, **options)
            codes = generate_codes(model, golden[f"cond_{i}"][None], text, torch.tensor([text.shape[1]]), config)[0]
            expected = golden[f"{prefix}_{i}"]
            shared = min(len(codes), len(expected))
            equal += int((codes[:shared] == expected[:shared]).sum())
            total += len(expected)
    assert equal / total >= MIN_GOLDEN_AGREEMENT


@pytest.mark.parametrize("change, message", [
    (lambda gpt: None, "Unknown CPU quantisation mode"),
    (lambda gpt: gpt.to(torch.bfloat16), "float32 on the CPU"),
    (lambda gpt: gpt.train(), "for inference"),
], ids=["mode", "dtype", "training"])
def test_refuses_what_it_cannot_quantize(tiny_gpt, change, message):
    model = copy.deepcopy(tiny_gpt)
    change(model)
    mode = "int4" if message.startswith("Unknown") else "int8"
    with pytest.raises(InferenceError, match=message):
        quantize_for_cpu(model, mode)


@pytest.mark.parametrize("packed", [True, False])
def test_bfloat16_linear_packs_only_where_onednn_runs_bfloat16(monkeypatch, packed):
    """An AVX2-only CPU has no oneDNN bfloat16 kernels (packing the weight raises there): the layer
    then keeps a plain bfloat16 matrix and computes the same product."""
    import indextts.gpt.quantize as quantize

    if packed and not quantize.onednn_bfloat16_available():
        pytest.skip("this CPU has no oneDNN bfloat16 kernels")
    monkeypatch.setattr(quantize, "onednn_bfloat16_available", lambda: packed)
    torch.manual_seed(0)
    weight, bias, inputs = torch.randn(6, 5), torch.randn(6), torch.randn(2, 3, 5)
    layer = BFloat16Linear(weight, bias)
    want = torch.nn.functional.linear(inputs.bfloat16(), weight.bfloat16(), bias.bfloat16()).float()
    assert layer.packed is packed
    torch.testing.assert_close(layer(inputs), want, atol=1e-2, rtol=1e-2)
