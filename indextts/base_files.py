"""What a base folder is made of, by model family: its validated config, its dims and its files.

:func:`open_base` is the one place that branches on the model generation: IndexTTS 1.0/1.5 folders
get their model dims (``indextts.dims``) and :class:`BaseFiles`, with the config's sections
cross-checked; IndexTTS-2/2.5 folders get :class:`indextts.v2.folder.V2Files`, which also finds
their auxiliary models. ``indextts.checkpoint_folder.CheckpointFolder`` opens a folder through it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from indextts.config import read_base_config
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.dims import ModelDims
from indextts.errors import ConfigError
from indextts.families import Family
from indextts.v2.folder import V2Files
from indextts.v2.models import V2Models


@dataclass(frozen=True)
class BaseFiles:
    """Absolute paths of the files of an IndexTTS 1.0/1.5 base folder, as its config names them."""

    gpt: Path
    dvae: Path
    bigvgan: Path
    bpe: Path

    @classmethod
    def resolve(cls, root: Path, cfg: DictConfig) -> BaseFiles:
        return cls(gpt=root / cfg.gpt_checkpoint, dvae=root / cfg.dvae_checkpoint,
                   bigvgan=root / cfg.bigvgan_checkpoint, bpe=root / cfg.dataset.bpe_model)


@dataclass(frozen=True)
class OpenedBase:
    """A base folder's config, family, dims (None for IndexTTS-2/2.5: its modules read their own) and files."""

    cfg: DictConfig
    family: Family
    dims: ModelDims | None
    paths: BaseFiles | V2Files
    v2: V2Models | None = None
    """The loaders of an IndexTTS-2 / 2.5 folder's parts."""


def check_sections(cfg: DictConfig, dims: ModelDims, source: str) -> None:
    """GPT width, mel bins and sample rate must agree across an IndexTTS 1.0/1.5 config's sections."""
    gpt, vocoder, problems = dims.gpt, dims.bigvgan, []
    if int(gpt.model_dim) != int(vocoder.gpt_dim):
        problems.append(f"gpt.model_dim {gpt.model_dim} != bigvgan.gpt_dim {vocoder.gpt_dim}")
    if int(cfg.dataset.mel.n_mels) != int(vocoder.num_mels):
        problems.append(f"dataset.mel.n_mels {cfg.dataset.mel.n_mels} != bigvgan.num_mels {vocoder.num_mels}")
    if int(cfg.dataset.sample_rate) != int(cfg.dataset.mel.sample_rate):
        problems.append(f"dataset.sample_rate {cfg.dataset.sample_rate} != dataset.mel.sample_rate "
                        f"{cfg.dataset.mel.sample_rate}")
    vocoder_rate = cfg.bigvgan.get("sampling_rate")
    if vocoder_rate is not None and int(vocoder_rate) != int(cfg.dataset.sample_rate):
        problems.append(f"bigvgan.sampling_rate {vocoder_rate} != dataset.sample_rate {cfg.dataset.sample_rate}")
    if problems:
        raise ConfigError(f"The model config {source} contradicts itself: {'; '.join(problems)}. "
                          "The sections must describe one model; restore the release config of that folder.")


def open_base(root: Path, aux_paths: Mapping[str, str | Path] | None = None) -> OpenedBase:
    """Read and check the base folder ``root``; ``aux_paths`` (IndexTTS-2/2.5 only) names auxiliary models."""
    cfg, family = read_base_config(root)
    if family.generation == 2:
        paths = V2Files.resolve(root, cfg, family, aux_paths)
        return OpenedBase(cfg, family, None, paths, V2Models(root, cfg, family, paths))
    if aux_paths:
        raise ConfigError(f"{family} uses no auxiliary models, but {sorted(aux_paths)} were given for {root}; "
                          "give auxiliary model paths only with an IndexTTS-2 or 2.5 folder.")
    dims = ModelDims.from_config(cfg)
    check_sections(cfg, dims, str(root / CONFIG_FILENAME))
    return OpenedBase(cfg, family, dims, BaseFiles.resolve(root, cfg))
