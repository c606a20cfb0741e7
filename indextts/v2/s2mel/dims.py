"""Dimensions of IndexTTS-2's S2Mel stage, read from the release config's ``s2mel`` section.

The field names are the release config keys. ``gpt_layer_input_dim`` is ours: the reference
hard-codes the 1280-wide GPT latent that enters ``gpt_layer``; the key lets a small config shrink it
and defaults to the release value. Settings the release does not use (discrete content, f0, a
causal DiT, tokens for time or style) are refused by ``S2MelDims.check_supported``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from indextts.dims import SectionDims
from indextts.errors import ConfigError

RELEASE_GPT_LATENT_DIM = 1280
"""Width of the IndexTTS-2 GPT latents (the release ``gpt.model_dim``), hard-coded by the reference."""


@dataclass(frozen=True, kw_only=True)
class LengthRegulatorDims(SectionDims):
    """The interpolating length regulator: content features (B, N, in_channels) -> (B, T, channels)."""

    section: ClassVar[str] = "s2mel.length_regulator"
    closed: ClassVar[bool] = False
    channels: int
    in_channels: int
    content_codebook_size: int
    sampling_ratios: tuple[int, ...]
    is_discrete: bool = False
    vector_quantize: bool = False
    n_codebooks: int = 1
    quantizer_dropout: float = 0.0
    f0_condition: bool = False
    n_f0_bins: int = 512


@dataclass(frozen=True, kw_only=True)
class DiTDims(SectionDims):
    """The diffusion transformer that estimates the flow (release: 512 wide, 13 blocks, 8 heads)."""

    section: ClassVar[str] = "s2mel.DiT"
    closed: ClassVar[bool] = False
    hidden_dim: int
    num_heads: int
    depth: int
    in_channels: int
    content_dim: int
    content_codebook_size: int
    style_condition: bool = True
    final_layer_type: str = "wavenet"
    long_skip_connection: bool = True
    uvit_skip_connection: bool = True
    is_causal: bool = False
    time_as_token: bool = False
    style_as_token: bool = False
    zero_prompt_speech_token: bool = False
    class_dropout_prob: float = 0.1


@dataclass(frozen=True, kw_only=True)
class WavenetDims(SectionDims):
    """The WaveNet final layer of the DiT."""

    section: ClassVar[str] = "s2mel.wavenet"
    closed: ClassVar[bool] = False
    hidden_dim: int
    num_layers: int
    kernel_size: int
    dilation_rate: int
    p_dropout: float = 0.0
    style_condition: bool = True


@dataclass(frozen=True, kw_only=True)
class StyleEncoderDims(SectionDims):
    """The style vector the DiT is conditioned on: CAMPPlus's embedding (192 in the release)."""

    section: ClassVar[str] = "s2mel.style_encoder"
    closed: ClassVar[bool] = False
    dim: int


_NESTED = {"length_regulator": LengthRegulatorDims, "DiT": DiTDims, "wavenet": WavenetDims,
           "style_encoder": StyleEncoderDims}


@dataclass(frozen=True, kw_only=True)
class S2MelDims(SectionDims):
    """S2Mel (length regulator, CFM with its DiT, gpt_layer), from the config's ``s2mel`` section."""

    section: ClassVar[str] = "s2mel"
    kind: ClassVar[str] = "s2mel"
    closed: ClassVar[bool] = False
    length_regulator: LengthRegulatorDims
    DiT: DiTDims  # noqa: N815 - the release config key
    wavenet: WavenetDims
    style_encoder: StyleEncoderDims
    dit_type: str = "DiT"
    reg_loss_type: str = "l1"
    gpt_layer_input_dim: int = RELEASE_GPT_LATENT_DIM

    def __post_init__(self):
        for name, dims_class in _NESTED.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, dims_class.from_section(value))

    def check_supported(self, source: str = "the model config") -> None:
        """Raise ConfigError naming every setting this implementation does not build."""
        dit, regulator = self.DiT, self.length_regulator
        wanted = {
            "dit_type": (self.dit_type, "DiT"),
            "DiT.final_layer_type": (dit.final_layer_type, "wavenet"),
            "DiT.is_causal": (dit.is_causal, False),
            "DiT.time_as_token": (dit.time_as_token, False),
            "DiT.style_as_token": (dit.style_as_token, False),
            "DiT.style_condition": (dit.style_condition, True),
            "wavenet.style_condition": (self.wavenet.style_condition, True),
            "wavenet.hidden_dim": (self.wavenet.hidden_dim, dit.hidden_dim),
            "length_regulator.is_discrete": (regulator.is_discrete, False),
            "length_regulator.vector_quantize": (regulator.vector_quantize, False),
            "length_regulator.n_codebooks": (regulator.n_codebooks, 1),
            "length_regulator.f0_condition": (regulator.f0_condition, False),
        }
        problems = [f"s2mel.{key} is {found!r} (supported: {value!r})"
                    for key, (found, value) in wanted.items() if found != value]
        if problems:
            raise ConfigError(
                f"The s2mel section of {source} asks for a variant this toolkit does not build: "
                f"{'; '.join(problems)}. The IndexTTS-2 release config uses the supported values; "
                "start from it.")
