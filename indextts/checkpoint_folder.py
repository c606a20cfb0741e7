"""The base folder (an IndexTTS release checkpoint folder): its config, dims, files, models and identity.

"Base folder" is the model a run starts from; a "training checkpoint" is a ``step_*`` snapshot of a
run, owned by the run folder. Every consumer (extraction, training, inference, export) opens the
base folder through :class:`CheckpointFolder`, the only path to the weights: the config is read,
its dims (``indextts.dims``) taken and its sections cross-checked once, the files are resolved
here, and ``indextts.checkpoints`` loads each file into the model its dims describe. The folder's
identity (a fingerprint of the GPT weights and of ``bpe.model``) is computed the same way
everywhere. The fingerprint lets a training run or an extracted data set refuse a base of the
same shapes but other weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from indextts.atomic_files import write_json_atomic
from indextts.checkpoints import load_model, load_state_dict
from indextts.config import CONFIG_FILENAME, load_config
from indextts.dims import ModelDims
from indextts.errors import ConfigError
from indextts.fingerprints import file_sha256, tensors_fingerprint

logger = logging.getLogger(__name__)

FINGERPRINT_CACHE_SUFFIX = ".fingerprint.json"
"""``gpt.pth.fingerprint.json`` beside the weights caches the hash by file size and mtime."""


@dataclass(frozen=True)
class BaseFiles:
    """Absolute paths of the files of a base folder, as its config names them."""

    gpt: Path
    dvae: Path
    bigvgan: Path
    bpe: Path

    @classmethod
    def resolve(cls, root: Path, cfg: DictConfig) -> BaseFiles:
        return cls(gpt=root / cfg.gpt_checkpoint, dvae=root / cfg.dvae_checkpoint,
                   bigvgan=root / cfg.bigvgan_checkpoint, bpe=root / cfg.dataset.bpe_model)


def _file_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class CheckpointFolder:
    """An opened base folder (``config.yaml``, ``gpt.pth``, ``dvae.pth``, ``bigvgan_generator.pth``,
    ``bpe.model``). The config is validated, its dims read and its sections cross-checked on construction."""

    def __init__(self, model_dir: str | Path):
        self.root = Path(model_dir).expanduser().resolve()
        self.cfg: DictConfig = load_config(self.root)
        self.dims = ModelDims.from_config(self.cfg)
        self.paths = BaseFiles.resolve(self.root, self.cfg)
        self._check_sections()

    def __repr__(self) -> str:
        return f"CheckpointFolder({str(self.root)!r})"

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILENAME

    @staticmethod
    def holds_config(folder: str | Path) -> bool:
        """Whether ``folder`` has the config file of a checkpoint folder (without reading it)."""
        return (Path(folder).expanduser() / CONFIG_FILENAME).is_file()

    @property
    def sample_rate(self) -> int:
        return int(self.cfg.dataset.sample_rate)

    @property
    def condition_latents(self) -> int:
        return int(self.dims.gpt.condition_num_latent)

    def _check_sections(self) -> None:
        """GPT width, mel bins and sample rate must agree across the config's sections."""
        cfg, gpt, vocoder, problems = self.cfg, self.dims.gpt, self.dims.bigvgan, []
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
            raise ConfigError(f"The model config {self.config_file} contradicts itself: {'; '.join(problems)}. "
                              "The sections must describe one model; restore the release config.yaml.")

    def load_gpt(self, device: str | torch.device = "cpu"):
        """The UnifiedVoice GPT, strictly loaded, float32, eval mode."""
        return load_model(self.paths.gpt, self.dims.gpt, device, self.config_file)

    def load_dvae(self, device: str | torch.device = "cpu"):
        """The DiscreteVAE, strictly loaded, float32, eval mode."""
        return load_model(self.paths.dvae, self.dims.dvae, device, self.config_file)

    def load_bigvgan(self, device: str | torch.device = "cpu"):
        """The BigVGAN vocoder, weight norm folded, float32, eval mode."""
        return load_model(self.paths.bigvgan, self.dims.bigvgan, device, self.config_file)

    def tokenizer(self, bpe_path: str | Path | None = None):
        """The text tokenizer over the folder's ``bpe.model`` (or ``bpe_path``, e.g. a run's grown model)."""
        from indextts.text import TextTokenizer

        return TextTokenizer(bpe_path or self.paths.bpe)

    @cached_property
    def tokenizer_fingerprint(self) -> str:
        """SHA-256 of ``bpe.model``."""
        return file_sha256(self.paths.bpe)

    @cached_property
    def gpt_fingerprint(self) -> str:
        """SHA-256 over the GPT tensors, cached beside ``gpt.pth`` by file size and mtime."""
        cache = self.paths.gpt.with_name(self.paths.gpt.name + FINGERPRINT_CACHE_SUFFIX)
        stamp = _file_stamp(self.paths.gpt)
        try:
            cached = json.loads(cache.read_text())
            if cached.get("stamp") == stamp:
                return cached["sha256"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass
        fingerprint = tensors_fingerprint(load_state_dict(self.paths.gpt, "gpt"))
        try:
            write_json_atomic(cache, {"stamp": stamp, "sha256": fingerprint}, sync=False)
        except OSError as error:  # a read-only folder only costs the hash again next time
            logger.debug("Cannot cache the GPT fingerprint at %s: %s", cache, error)
        return fingerprint

    def identity(self) -> dict:
        """What a run or a data set records about the base it was made from."""
        return {"gpt_sha256": self.gpt_fingerprint, "bpe_sha256": self.tokenizer_fingerprint}
