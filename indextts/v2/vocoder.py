"""BigVGAN v2 (nvidia/bigvgan_v2_22khz_80band_256x): 80-band 22.05 kHz mel -> waveform, 256 samples a frame.

The generator of NVIDIA's release, without speaker conditioning: ``conv_pre``, transposed-convolution
upsampling stages each followed by the average of its anti-aliased AMP blocks (SnakeBeta), a final
anti-aliased activation and ``conv_post``, then tanh or (this release, ``use_tanh_at_final: false``)
a clamp to [-1, 1]. It shares its building blocks with the IndexTTS-1.5 vocoder (indextts.bigvgan).

NVIDIA's ``bigvgan`` PyPI package holds the same network, but it requires training and evaluation
packages (auraloss, nnAudio, pesq, matplotlib, ninja) and loads the generator with a pickle-enabled
``torch.load`` and a non-strict fallback; these blocks are already here, exact to the reference
and with a fused CPU mode, so the generator is written here instead.

The hub folder holds ``config.json`` (hyper-parameters) and ``bigvgan_generator.pt``
(``{"generator": state_dict}`` with weight norm as ``weight_g`` / ``weight_v``, folded on load).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import torch
from torch import nn

from indextts.bigvgan.activations import ACTIVATIONS, Activation1d
from indextts.bigvgan.models import (amp_resblocks, check_generator_settings, fold_weight_norm, mean_of_blocks,
                                     set_activation_mode, unfold_weight_norm, upsampling_layers,
                                     weight_norm_module_names, weight_normed)
from indextts.checkpoints import read_tensors, shape_mismatch, tensor_shapes, to_float32
from indextts.dims import GeneratorDims
from indextts.errors import CheckpointError, ConfigError
from indextts.releases import BIGVGAN_V2, missing_file_error

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
GENERATOR_FILE = "bigvgan_generator.pt"
PRE_POST_KERNEL = 7


@dataclass(frozen=True, kw_only=True)
class BigVGANv2Dims(GeneratorDims):
    """The generator settings of a BigVGAN v2 ``config.json`` (its training settings are ignored)."""

    section: ClassVar[str] = "vocoder"
    kind: ClassVar[str] = "bigvgan_v2"
    sampling_rate: int
    use_tanh_at_final: bool = True
    use_bias_at_final: bool = True

    @classmethod
    def from_json(cls, path: str | Path) -> Self:
        """Read ``config.json`` of a BigVGAN v2 hub folder; CheckpointError if missing, ConfigError if incomplete."""
        path = Path(path)
        if not path.is_file():
            raise missing_file_error(path, "BigVGAN v2 config", "2", BIGVGAN_V2)
        try:
            settings = json.loads(path.read_text())
            return cls.from_section(settings)
        except (json.JSONDecodeError, TypeError, AttributeError) as error:
            raise ConfigError(f"The BigVGAN v2 config {path} is not a complete BigVGAN config.json ({error}). "
                              f"Download it again from {BIGVGAN_V2.repo_id}.") from error


class BigVGANv2(nn.Module):
    """Generator: mel (B, num_mels, F) -> waveform (B, 1, F * prod(upsample_rates)) in [-1, 1]."""

    def __init__(self, dims: BigVGANv2Dims):
        super().__init__()
        check_generator_settings(str(dims.resblock), dims.activation)
        initial = dims.upsample_initial_channel
        self.use_tanh_at_final = dims.use_tanh_at_final
        self.num_kernels = len(dims.resblock_kernel_sizes)
        self.conv_pre = weight_normed(nn.Conv1d(dims.num_mels, initial, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2))
        self.ups = upsampling_layers(initial, dims.upsample_rates, dims.upsample_kernel_sizes)
        self.resblocks = amp_resblocks(dims, initial)
        final_channels = initial // 2 ** len(dims.upsample_rates)
        self.activation_post = Activation1d(ACTIVATIONS[dims.activation](final_channels, dims.snake_logscale))
        self.conv_post = weight_normed(nn.Conv1d(final_channels, 1, PRE_POST_KERNEL, padding=PRE_POST_KERNEL // 2,
                                                 bias=dims.use_bias_at_final))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, stage in enumerate(self.ups):
            for up in stage:
                x = up(x)
            x = mean_of_blocks(self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels], x)
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x) if self.use_tanh_at_final else torch.clamp(x, min=-1.0, max=1.0)

    def set_activation_mode(self, mode: str) -> None:
        """Run every anti-aliased activation ``exact`` (as the reference) or ``fused`` (compiled, faster on CPU)."""
        set_activation_mode(self, mode)

    def stored_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict in the checkpoint layout (weight norm as weight_g / weight_v)."""
        return dict(unfold_weight_norm(self.state_dict(), weight_norm_module_names(self)))


def load_bigvgan_v2(folder: str | Path, device: str | torch.device = "cpu") -> BigVGANv2:
    """Load a BigVGAN v2 hub folder (``config.json`` + ``bigvgan_generator.pt``) strictly; eval mode, float32."""
    folder = Path(folder)
    dims = BigVGANv2Dims.from_json(folder / CONFIG_FILE)
    path = folder / GENERATOR_FILE
    if not path.is_file():
        raise missing_file_error(path, "BigVGAN v2 checkpoint", "2", BIGVGAN_V2)
    content = read_tensors(path, "BigVGAN v2 checkpoint")
    state_dict = content.get("generator") if isinstance(content, dict) else None
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"The BigVGAN v2 checkpoint {path} has no 'generator' state dict. Download "
                              f"{GENERATOR_FILE} again from {BIGVGAN_V2.repo_id}.")
    with torch.device("meta"):
        problems = shape_mismatch(state_dict, tensor_shapes(BigVGANv2(dims).stored_state_dict()))
    if problems:
        raise CheckpointError(
            f"The BigVGAN v2 checkpoint {path} does not fit {folder / CONFIG_FILE}: "
            f"{problems}. Keep the two files of {BIGVGAN_V2.repo_id} together.")
    model = BigVGANv2(dims)
    model.load_state_dict(fold_weight_norm(to_float32(state_dict), weight_norm_module_names(model)), strict=True)
    logger.info("Loaded BigVGAN v2 weights from %s", path)
    return model.to(device).eval()
