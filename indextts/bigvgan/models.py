"""BigVGAN vocoder of IndexTTS: GPT latents + reference-speaker mel -> 24 kHz waveform.

The release ``bigvgan_generator.pth`` stores the weight-normalised convolutions as ``weight_g`` /
``weight_v``. This module holds plain ``weight`` tensors (weight norm folded, as for inference);
``stored_state_dict`` and ``fold_weight_norm`` convert between the two layouts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from indextts.bigvgan.activations import ACTIVATION_MODES, ACTIVATIONS, Activation1d
from indextts.bigvgan.ecapa_tdnn import ECAPATDNN
from indextts.dims import BigVGANDims, GeneratorDims
from indextts.errors import ConfigError

PRE_POST_KERNEL = 7
FEATURE_UPSAMPLE = 4


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def weight_normed(module: nn.Module) -> nn.Module:
    """Mark a convolution or linear layer as stored with weight norm (weight_g / weight_v) in checkpoints."""
    module.stored_with_weight_norm = True
    return module


def _conv(channels: int, kernel_size: int, dilation: int) -> nn.Conv1d:
    return weight_normed(nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                                    padding=_same_padding(kernel_size, dilation)))


def _activations(count: int, channels: int, activation: str, logscale: bool) -> nn.ModuleList:
    return nn.ModuleList(Activation1d(ACTIVATIONS[activation](channels, logscale)) for _ in range(count))


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block: three (act, dilated conv, act, conv) residual units."""

    def __init__(self, channels: int, kernel_size: int, dilations, activation: str, logscale: bool):
        super().__init__()
        self.convs1 = nn.ModuleList(_conv(channels, kernel_size, d) for d in dilations)
        self.convs2 = nn.ModuleList(_conv(channels, kernel_size, 1) for _ in dilations)
        self.activations = _activations(2 * len(dilations), channels, activation, logscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pairs = zip(self.convs1, self.convs2, self.activations[::2], self.activations[1::2])
        for conv1, conv2, act1, act2 in pairs:
            x = x + conv2(act2(conv1(act1(x))))
        return x


class AMPBlock2(nn.Module):
    """Lighter AMP block: (act, dilated conv) residual units."""

    def __init__(self, channels: int, kernel_size: int, dilations, activation: str, logscale: bool):
        super().__init__()
        self.convs = nn.ModuleList(_conv(channels, kernel_size, d) for d in dilations)
        self.activations = _activations(len(dilations), channels, activation, logscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, act in zip(self.convs, self.activations):
            x = x + conv(act(x))
        return x


RESBLOCKS = {"1": AMPBlock1, "2": AMPBlock2}


def set_activation_mode(model: nn.Module, mode: str) -> None:
    """Run every anti-aliased activation of ``model`` ``exact`` (as the reference) or ``fused`` (see activations)."""
    if mode not in ACTIVATION_MODES:
        raise ConfigError(f"Unknown BigVGAN activation mode {mode!r}; use one of {', '.join(ACTIVATION_MODES)}.")
    for module in model.modules():
        if isinstance(module, Activation1d):
            module.mode = mode


def check_generator_settings(resblock: str, activation: str) -> None:
    """Raise ConfigError unless the AMP block type and activation are ones this module builds."""
    if resblock not in RESBLOCKS or activation not in ACTIVATIONS:
        raise ConfigError(
            f"Unsupported bigvgan settings resblock={resblock!r}, activation={activation!r}; "
            "use resblock '1' or '2' and activation 'snake' or 'snakebeta' (the releases use '1', snakebeta)."
        )


def upsampling_layers(initial_channels: int, rates, kernel_sizes) -> nn.ModuleList:
    """Weight-normed transposed convolutions, each halving the channels; one ModuleList per stage."""
    ups = nn.ModuleList()
    for i, (rate, kernel) in enumerate(zip(rates, kernel_sizes)):
        up = nn.ConvTranspose1d(initial_channels // 2**i, initial_channels // 2 ** (i + 1), kernel, rate,
                                padding=(kernel - rate) // 2)
        ups.append(nn.ModuleList([weight_normed(up)]))
    return ups


def amp_resblocks(dims: GeneratorDims, initial_channels: int) -> nn.ModuleList:
    """The AMP blocks of every upsampling stage, ``len(resblock_kernel_sizes)`` per stage.

    ``dims``: the generator settings (``indextts.dims.GeneratorDims``, of BigVGAN 1.5 or v2).
    """
    blocks = nn.ModuleList()
    for i in range(len(dims.upsample_rates)):
        channels = initial_channels // 2 ** (i + 1)
        for kernel, dilations in zip(dims.resblock_kernel_sizes, dims.resblock_dilation_sizes):
            blocks.append(RESBLOCKS[str(dims.resblock)](channels, kernel, list(dilations),
                                                        dims.activation, dims.snake_logscale))
    return blocks


def mean_of_blocks(blocks, x: torch.Tensor) -> torch.Tensor:
    """The average of the parallel AMP blocks of one stage applied to x (B, C, T)."""
    total = blocks[0](x)
    for block in blocks[1:]:
        total = total + block(x)
    return total / len(blocks)


class BigVGAN(nn.Module):
    """Generator: latents (B, N, gpt_dim) and reference mel (B, F, num_mels) -> wav (B, 1, N * hop).

    Built from its dims: ``BigVGAN(BigVGANDims.from_config(cfg))``. The ECAPA-TDNN speaker
    embedding of the reference mel is added after ``conv_pre`` and, when
    ``cond_d_vector_in_each_upsampling_layer``, after every upsampling layer.
    """

    def __init__(self, dims: BigVGANDims):
        super().__init__()
        check_generator_settings(str(dims.resblock), dims.activation)
        initial = dims.upsample_initial_channel
        speaker_dim = dims.speaker_embedding_dim
        self.feat_upsample = bool(dims.feat_upsample)
        self.cond_in_each_up_layer = bool(dims.cond_d_vector_in_each_upsampling_layer)
        self.num_kernels = len(dims.resblock_kernel_sizes)
        self.num_upsamples = len(dims.upsample_rates)

        self.conv_pre = weight_normed(
            nn.Conv1d(dims.gpt_dim, initial, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2))
        self.ups = upsampling_layers(initial, dims.upsample_rates, dims.upsample_kernel_sizes)
        self.resblocks = amp_resblocks(dims, initial)
        final_channels = initial // 2**self.num_upsamples
        self.activation_post = Activation1d(ACTIVATIONS[dims.activation](final_channels, dims.snake_logscale))
        self.conv_post = weight_normed(
            nn.Conv1d(final_channels, 1, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2))

        self.speaker_encoder = ECAPATDNN(dims.num_mels, speaker_dim)
        self.cond_layer = nn.Conv1d(speaker_dim, initial, 1)
        if self.cond_in_each_up_layer:
            self.conds = nn.ModuleList(
                nn.Conv1d(speaker_dim, initial // 2 ** (i + 1), 1) for i in range(self.num_upsamples))

    def embed_speaker(self, reference_mel: torch.Tensor) -> torch.Tensor:
        """Reference mel (B, F, num_mels) -> speaker embedding (B, speaker_embedding_dim, 1).

        Rows of a batch must share one length (the encoder has no padding mask).
        """
        return self.speaker_encoder(reference_mel)

    def forward(self, latents: torch.Tensor, reference_mel: torch.Tensor | None = None,
                speaker_embedding: torch.Tensor | None = None) -> torch.Tensor:
        """Latents (B, N, gpt_dim) -> waveform (B, 1, N * prod(upsample_rates)) in [-1, 1].

        Give either ``reference_mel`` (B or 1, F, num_mels) or a precomputed ``speaker_embedding``
        from ``embed_speaker`` (B or 1, speaker_embedding_dim, 1).
        """
        if speaker_embedding is None:
            if reference_mel is None:
                raise ValueError("BigVGAN.forward needs reference_mel or speaker_embedding")
            speaker_embedding = self.embed_speaker(reference_mel)
        x = latents.transpose(1, 2)  # (B, gpt_dim, N)
        if self.feat_upsample:
            x = nn.functional.interpolate(x, scale_factor=FEATURE_UPSAMPLE, mode="linear")
        x = self.conv_pre(x) + self.cond_layer(speaker_embedding)
        for i in range(self.num_upsamples):
            for up in self.ups[i]:
                x = up(x)
            if self.cond_in_each_up_layer:
                x = x + self.conds[i](speaker_embedding)
            x = mean_of_blocks(self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels], x)
        return torch.tanh(self.conv_post(self.activation_post(x)))

    def set_activation_mode(self, mode: str) -> None:
        """Run every anti-aliased activation ``exact`` (as the reference) or ``fused`` (see activations)."""
        set_activation_mode(self, mode)

    def weight_norm_modules(self) -> list[str]:
        """Names of the convolutions stored with weight norm in checkpoints."""
        return weight_norm_module_names(self)

    def stored_state_dict(self) -> "OrderedDict[str, torch.Tensor]":
        """State dict in the checkpoint layout: each marked ``weight`` as ``weight_g`` / ``weight_v``."""
        return unfold_weight_norm(self.state_dict(), self.weight_norm_modules())


def weight_norm_module_names(model: nn.Module) -> list[str]:
    """Names of the submodules of ``model`` marked by ``weight_normed`` (stored with weight norm)."""
    return [name for name, module in model.named_modules() if getattr(module, "stored_with_weight_norm", False)]


def _norm_except_first(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm over every dimension but the first, shaped (C, 1, ..., 1)."""
    return weight.reshape(weight.shape[0], -1).norm(dim=1).view(-1, *([1] * (weight.dim() - 1)))


def unfold_weight_norm(state_dict: Mapping[str, torch.Tensor], modules: list[str]) -> "OrderedDict[str, torch.Tensor]":
    """Replace ``<module>.weight`` by ``weight_g`` (its norm per output row) and ``weight_v`` (itself)."""
    targets = {f"{name}.weight" for name in modules}
    stored = OrderedDict()
    for key, value in state_dict.items():
        if key in targets:
            prefix = key[: -len("weight")]
            stored[prefix + "weight_g"] = _norm_except_first(value)
            stored[prefix + "weight_v"] = value.clone()
        else:
            stored[key] = value
    return stored


def fold_weight_norm(state_dict: Mapping[str, torch.Tensor], modules: list[str]) -> "OrderedDict[str, torch.Tensor]":
    """Replace ``weight_g`` / ``weight_v`` pairs of ``modules`` by ``weight = g * v / ||v||``."""
    folded = OrderedDict(state_dict)
    for name in modules:
        g, v = f"{name}.weight_g", f"{name}.weight_v"
        if g in folded and v in folded:
            weight_v = folded.pop(v)
            folded[f"{name}.weight"] = weight_v * (folded.pop(g) / _norm_except_first(weight_v))
    return folded
