"""The IndexTTS model families, and which one a base folder's ``config.yaml`` describes.

Generation 1 is IndexTTS 1.0 and 1.5: a GPT-2 over DVAE mel codes, conditioned on a conformer +
perceiver over the reference mel, voiced by a BigVGAN that takes a speaker embedding. Generation 2
is IndexTTS-2 and 2.5: a GPT over w2v-BERT semantic codes with emotion and duration conditioning,
an S2Mel flow-matching decoder to an 80-band mel, and BigVGAN v2. The release configs name their
release in a top-level ``version`` key (1.5, 2.0, ...); IndexTTS-1.0's config has none and is told
apart by its files. Everything that differs between families is asked of the folder's
:class:`Family`, never by comparing version strings elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from indextts.errors import ConfigError

VERSION_KEY = "version"


@dataclass(frozen=True)
class Family:
    """One IndexTTS release family: its version as users type it and its model generation."""

    version: str
    generation: int
    multilingual: bool = False
    """IndexTTS-2.5: a tiktoken vocabulary with language ids and a language embedding, the CAMPPlus
    speaker condition instead of the conformer, and its own semantic codec (``codec.pth``)."""

    @property
    def name(self) -> str:
        return f"IndexTTS-{self.version}"

    @property
    def code_kind(self) -> str:
        """What the GPT predicts: DVAE mel codes (generation 1) or semantic codes (generation 2)."""
        return "mel codes" if self.generation == 1 else "semantic codes"

    def __str__(self) -> str:
        return self.name


FAMILIES: dict[str, Family] = {family.version: family for family in (
    Family("1.0", 1),
    Family("1.5", 1),
    Family("2", 2),
    Family("2.5", 2, multilingual=True),
)}
"""Version as typed on the command line -> family."""

_GENERATION_MARKERS = {1: "dvae_checkpoint", 2: "s2mel_checkpoint"}
"""A top-level key only the configs of that generation hold."""


def _version_text(value) -> str:
    """``1.5`` -> "1.5", ``2.0`` / ``2`` -> "2", ``1`` -> "1.0": the spelling of ``FAMILIES``."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    if number == int(number):
        return "1.0" if int(number) == 1 else str(int(number))
    return f"{number:g}"


def family_of(cfg: Mapping, source: str) -> Family:
    """The family a release config describes (``source`` names the file in errors).

    Raises ConfigError for an unknown ``version``, or a config whose keys belong to no family or to
    a generation other than its ``version`` says.
    """
    generations = [gen for gen, key in _GENERATION_MARKERS.items() if key in cfg]
    if VERSION_KEY not in cfg:
        if generations == [1]:
            return FAMILIES["1.0"]
        if generations == [2]:
            return FAMILIES["2"]
        raise ConfigError(
            f"The model config {source} names no '{VERSION_KEY}' and holds neither 'dvae_checkpoint' "
            "(IndexTTS 1.0/1.5) nor 's2mel_checkpoint' (IndexTTS-2/2.5), so its model family is unknown. "
            "Use the config that came with the release folder (`indextts download --help`).")
    version = _version_text(cfg[VERSION_KEY])
    family = FAMILIES.get(version)
    if family is None:
        raise ConfigError(
            f"The model config {source} says {VERSION_KEY}: {cfg[VERSION_KEY]}, which this toolkit does not "
            f"know; it supports IndexTTS {', '.join(FAMILIES)}. Use a supported release folder.")
    if generations and generations != [family.generation]:
        raise ConfigError(
            f"The model config {source} says {VERSION_KEY}: {cfg[VERSION_KEY]} ({family}) but holds the keys of "
            f"the other model generation ({', '.join(_GENERATION_MARKERS[g] for g in generations)}). "
            "Restore the release config of that folder.")
    return family
