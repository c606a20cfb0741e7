"""Model dimensions: the constructor settings of the three IndexTTS models, as whisper's ``ModelDimensions``.

Each dataclass lists the keys of one config section; ``from_config`` reads them from a release
``config.yaml`` and the model is built from the dataclass (``UnifiedVoice(dims)``, ``DiscreteVAE(dims)``,
``BigVGAN(dims)``). ``indextts.config`` derives the keys it requires and accepts from these fields, so
each list exists once. A field without a default is required in the config. This module imports no
torch, so that reading a config stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Self

from omegaconf import DictConfig, ListConfig, OmegaConf


def _plain(section: Mapping) -> dict:
    return OmegaConf.to_container(section, resolve=True) if isinstance(section, DictConfig) else dict(section)


def _frozen(value: Any) -> Any:
    """Lists (also nested, as in ``resblock_dilation_sizes``) become tuples, so dims compare by value."""
    if isinstance(value, list | tuple | ListConfig):
        return tuple(_frozen(item) for item in value)
    return value


@dataclass(frozen=True, kw_only=True)
class SectionDims:
    """The settings one config section holds; subclasses name the section and the checkpoint kind."""

    section: ClassVar[str]
    kind: ClassVar[str] = ""
    closed: ClassVar[bool] = True
    """Whether the config may hold no other keys in this section (a typo would otherwise be ignored)."""
    optional: ClassVar[bool] = False
    """Whether a model config may lack the section (the release configs do); every field then takes
    its default, the release value."""

    @classmethod
    def from_section(cls, section: Mapping) -> Self:
        """The dims in one config section; keys that are no field (vocoder training settings) are skipped."""
        plain = _plain(section)
        return cls(**{f.name: _frozen(plain[f.name]) for f in fields(cls) if f.name in plain})

    @classmethod
    def from_config(cls, cfg: Mapping) -> Self:
        """The dims in the section ``cls.section`` (dotted) of a whole model config."""
        section = cfg
        for key in cls.section.split("."):
            section = (section.get(key) or {}) if cls.optional else section[key]
        return cls.from_section(section)

    @classmethod
    def required_keys(cls) -> tuple[str, ...]:
        """Keys the config section must hold: the fields without a default."""
        return tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING)

    @classmethod
    def known_keys(cls) -> tuple[str, ...]:
        """Every key the config section may hold."""
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, kw_only=True)
class ConditionDims(SectionDims):
    """The GPT's conditioning encoder: a conformer over the reference mel, then a perceiver."""

    section: ClassVar[str] = "gpt.condition_module"
    closed: ClassVar[bool] = False
    output_size: int
    linear_units: int
    attention_heads: int
    num_blocks: int
    input_layer: str
    perceiver_mult: int


@dataclass(frozen=True, kw_only=True)
class GPTDims(SectionDims):
    """UnifiedVoice, from the config's ``gpt`` section."""

    section: ClassVar[str] = "gpt"
    kind: ClassVar[str] = "gpt"
    model_dim: int
    max_mel_tokens: int
    max_text_tokens: int
    heads: int
    layers: int
    number_text_tokens: int
    number_mel_codes: int
    start_mel_token: int
    stop_mel_token: int
    start_text_token: int
    stop_text_token: int
    condition_type: str
    condition_module: ConditionDims
    use_mel_codes_as_input: bool = True
    mel_length_compression: int = 1024
    activation_function: str = "gelu_new"
    """GPT-2's MLP activation; the 1.5 release config omits it."""
    train_solo_embeddings: bool = False
    condition_num_latent: int = 32
    checkpointing: bool = False
    """Start with gradient checkpointing on (it only acts in training mode)."""
    types: int = 1

    def __post_init__(self):
        if isinstance(self.condition_module, Mapping):
            object.__setattr__(self, "condition_module", ConditionDims.from_section(self.condition_module))


@dataclass(frozen=True, kw_only=True)
class DVAEDims(SectionDims):
    """DiscreteVAE, from the config's ``vqvae`` section.

    The release configs also carry DVAE *training* options (``smooth_l1_loss``, ``straight_through``,
    ``record_codes``, ``lr_quantizer_args``); they are accepted so the config loads but have no effect.
    """

    section: ClassVar[str] = "vqvae"
    kind: ClassVar[str] = "dvae"
    channels: int
    num_tokens: int
    hidden_dim: int
    num_resnet_blocks: int
    codebook_dim: int
    num_layers: int
    positional_dims: int = 1
    kernel_size: int = 3
    smooth_l1_loss: bool = True
    use_transposed_convs: bool = False
    stride: int = 2
    encoder_norm: bool = False
    activation: str = "relu"
    straight_through: bool = False
    normalization: Any = None
    record_codes: bool = False
    discretization_loss_averaging_steps: int = 100
    lr_quantizer_args: Any = None


@dataclass(frozen=True, kw_only=True)
class GeneratorDims(SectionDims):
    """Settings every BigVGAN generator has: upsampling stages and their anti-aliased AMP blocks."""

    closed: ClassVar[bool] = False
    resblock: str
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    activation: str
    snake_logscale: bool
    num_mels: int


@dataclass(frozen=True, kw_only=True)
class BigVGANDims(GeneratorDims):
    """The BigVGAN generator, from the config's ``bigvgan`` section (which also holds training settings)."""

    section: ClassVar[str] = "bigvgan"
    kind: ClassVar[str] = "bigvgan"
    speaker_embedding_dim: int
    gpt_dim: int
    feat_upsample: bool = False
    cond_d_vector_in_each_upsampling_layer: bool = True
    """Add the speaker embedding after every upsampling layer, not only after ``conv_pre``."""


MODEL_SECTIONS = (GPTDims, ConditionDims, DVAEDims, BigVGANDims)
"""Every dims class, in the order config errors list their sections."""


@dataclass(frozen=True)
class ModelDims:
    """The dims of all three models of a base folder, read from its config once."""

    gpt: GPTDims
    dvae: DVAEDims
    bigvgan: BigVGANDims

    @classmethod
    def from_config(cls, cfg: Mapping) -> ModelDims:
        return cls(GPTDims.from_config(cfg), DVAEDims.from_config(cfg), BigVGANDims.from_config(cfg))
