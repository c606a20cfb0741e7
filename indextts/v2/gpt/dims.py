"""Dims of the IndexTTS-2 / 2.5 GPT, read once from the config's ``gpt`` section.

The release config of IndexTTS-2 holds the 1.5 keys plus ``emo_condition_module``. The reference also
hard-codes several widths; each has a key here whose default is the release value, so that tiny test
models can be small:

- ``condition_input_dim`` (1024): the w2v-BERT feature width entering both conformer encoders;
- ``emotion_latent_dim`` (1024): the emotion perceiver's latent width, the input of ``emovec_layer``;
- ``campplus_dim`` (192): the CAMPPlus speaker embedding of IndexTTS-2.5 (input of ``spk_emb_proj``);
- ``num_languages`` (106): IndexTTS-2.5's language list (``lang_embedding`` has one more row).

``spk_cond_mode`` chooses the speaker conditioning: "conformer" (IndexTTS-2: conformer + perceiver over
w2v-BERT features, 32 latents) or "campplus" (IndexTTS-2.5: one projected CAMPPlus embedding, plus the
language embedding). The reference passes it as a constructor argument, not a config key; when the key is
absent it is the config's family's (``indextts.families``: IndexTTS-2.5 -> "campplus"). This module imports
no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self

from indextts.dims import ConditionDims, GPTDims
from indextts.errors import ConfigError
from indextts.families import Family, family_of

SPEAKER_MODES = ("conformer", "campplus")


def speaker_mode_of(family: Family) -> str:
    """The speaker conditioning of a family's GPT: "campplus" for IndexTTS-2.5 (multilingual), else "conformer"."""
    return "campplus" if family.multilingual else "conformer"


@dataclass(frozen=True, kw_only=True)
class EmotionConditionDims(ConditionDims):
    """The emotion conditioning encoder: a conformer over w2v-BERT features, then a one-latent perceiver."""

    section: ClassVar[str] = "gpt.emo_condition_module"


@dataclass(frozen=True, kw_only=True)
class GPTV2Dims(GPTDims):
    """UnifiedVoice v2 (IndexTTS-2 / 2.5), from the config's ``gpt`` section."""

    emo_condition_module: EmotionConditionDims
    spk_cond_mode: str = "conformer"
    condition_input_dim: int = 1024
    emotion_latent_dim: int = 1024
    campplus_dim: int = 192
    num_languages: int = 106

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.emo_condition_module, Mapping):
            object.__setattr__(self, "emo_condition_module",
                               EmotionConditionDims.from_section(self.emo_condition_module))
        if self.spk_cond_mode not in SPEAKER_MODES:
            raise ConfigError(
                f"gpt.spk_cond_mode is {self.spk_cond_mode!r} in the config; it must be one of {SPEAKER_MODES} "
                "(conformer: IndexTTS-2, campplus: IndexTTS-2.5). Fix or remove the key."
            )

    @property
    def uses_campplus(self) -> bool:
        """Whether the speaker conditioning is a projected CAMPPlus embedding (IndexTTS-2.5)."""
        return self.spk_cond_mode == "campplus"

    @classmethod
    def from_config(cls, cfg: Mapping) -> Self:
        """The dims of a whole config; without ``gpt.spk_cond_mode``, the mode is its family's (``speaker_mode_of``)."""
        dims = super().from_config(cfg)
        if "spk_cond_mode" not in cfg["gpt"]:
            dims = dataclasses.replace(dims, spk_cond_mode=speaker_mode_of(family_of(cfg, "the model config")))
        return dims
