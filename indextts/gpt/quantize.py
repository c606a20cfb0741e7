"""Opt-in CPU decoding with fewer bytes per code: the GPT-2 linears in int8 or bfloat16.

At batch 1 a CPU decode step reads every weight of the GPT-2 stack once (2.3 GB in float32 at
IndexTTS-1.5 size), so the time per code follows the bytes of those weights. ``quantize_for_cpu``
replaces the stack's linear layers (attention ``c_attn``/``c_proj``, MLP ``c_fc``/``c_proj``) in place:

- ``"int8"``: PyTorch's dynamic quantisation (int8 weights with a per-row scale, activations quantised
  on the fly per tensor, int8 matrix products by fbgemm/onednn); about a quarter of the bytes;
- ``"bf16"``: bfloat16 weights, activations cast to bfloat16 for the product and back; half the bytes,
  fast where the CPU has bfloat16 dot products (AVX512-BF16, AMX).

Embeddings, layer norms, heads and the conditioning encoder stay float32, so conditioning, latents and the
generation API are unchanged. Codes are close to float32 ones but not always equal
(``benchmarks/bench_infer.py --cpu_quantization`` reports how often greedy codes agree). Fine-tune and
merge adapters first: a quantised model is for inference only and stays on the CPU.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from indextts.errors import InferenceError

logger = logging.getLogger(__name__)

MODES = ("int8", "bf16")
LINEAR_NAMES = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
"""The linear layers of a GPT-2 block (transformers' Conv1D: weight (in, out))."""


def onednn_bfloat16_available() -> bool:
    """Whether oneDNN's pre-packed bfloat16 linear runs on this CPU (it needs AVX512BW/VL/DQ or
    AVX-NE-CONVERT; on an AVX2-only CPU packing the weight raises)."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


class BFloat16Linear(nn.Module):
    """A linear layer with bfloat16 weights: (..., in) -> (..., out) in the input's dtype.

    Where oneDNN's bfloat16 kernels run on this CPU the weight is stored pre-packed for them (the plain
    ``F.linear`` path of a bfloat16 weight is no faster than float32 on CPUs); else it is a plain matrix.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        weight = weight.detach().to(torch.bfloat16)
        self.out_features = weight.shape[0]
        self.packed = onednn_bfloat16_available()
        if self.packed:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # packed for batch-1 decoding
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.bfloat16))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        rows = inputs.reshape(-1, inputs.shape[-1]).to(torch.bfloat16)
        if self.packed:
            out = torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, "none", [], "")
        else:
            out = nn.functional.linear(rows, self.weight, self.bias)
        return out.reshape(*inputs.shape[:-1], self.out_features).to(inputs.dtype)


def as_linear(layer: nn.Module) -> nn.Linear:
    """A float ``nn.Linear`` computing what ``layer`` computes (transformers' Conv1D or nn.Linear)."""
    if isinstance(layer, nn.Linear):
        return layer
    weight = layer.weight.detach()  # Conv1D: (in, out)
    linear = nn.Linear(weight.shape[0], weight.shape[1], bias=layer.bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if layer.bias is not None:
            linear.bias.copy_(layer.bias)
    return linear


def _quantized(linear: nn.Linear, mode: str) -> nn.Module:
    if mode == "bf16":
        return BFloat16Linear(linear.weight, linear.bias)
    with warnings.catch_warnings():  # torch.ao's eager quantisation warns that it moves to torchao
        warnings.simplefilter("ignore")
        from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear
        from torch.ao.quantization import default_dynamic_qconfig

        linear.qconfig = default_dynamic_qconfig
        return DynamicInt8Linear.from_float(linear)


def _check(gpt, mode: str) -> None:
    if mode not in MODES:
        raise InferenceError(f"Unknown CPU quantisation mode {mode!r}; use one of: {', '.join(MODES)}.")
    parameter = next(gpt.parameters())
    if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
        raise InferenceError(
            f"quantize_for_cpu needs the GPT in float32 on the CPU (it is {parameter.dtype} on "
            f"{parameter.device}); load it with device='cpu' and precision='fp32' before quantising."
        )
    if gpt.training:
        raise InferenceError("quantize_for_cpu is for inference: call gpt.eval() first (and merge any adapter).")


@torch.no_grad()
def quantize_for_cpu(gpt, mode: str = "int8"):
    """Replace the GPT-2 linears of a float32 CPU ``UnifiedVoice`` in place by ``mode`` ("int8" | "bf16") ones.

    Returns ``gpt``. Raises ``InferenceError`` for an unknown mode, a GPT not in float32 on the CPU, or one
    in training mode.
    """
    _check(gpt, mode)
    for block in gpt.gpt.h:
        for name in LINEAR_NAMES:
            owner_name, attribute = name.split(".")
            owner = getattr(block, owner_name)
            setattr(owner, attribute, _quantized(as_linear(getattr(owner, attribute)), mode))
    logger.info("GPT-2 linears of the GPT quantised to %s for CPU decoding", mode)
    return gpt
