"""The base folder (an IndexTTS release checkpoint folder): its config, dims, files, models and identity.

"Base folder" is the model a run starts from; a "training checkpoint" is a ``step_*`` snapshot of a
run, owned by the run folder. Every consumer (extraction, training, inference, export) opens the
base folder through :class:`CheckpointFolder`, the only path to the weights: the config is read,
its family named, its dims taken and its files resolved once (``indextts.base_files``), and
``indextts.checkpoints`` loads each file into the model its dims describe. The folder's
identity (a fingerprint of the GPT weights and of ``bpe.model``) is computed the same way
everywhere. The fingerprint lets a training run or an extracted data set refuse a base of the
same shapes but other weights.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path

import torch

from indextts.atomic_files import write_json_atomic
from indextts.checkpoints import load_model, load_speech_models, load_state_dict
from indextts.base_files import open_base
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.errors import CheckpointError
from indextts.fingerprints import file_sha256, tensors_fingerprint

logger = logging.getLogger(__name__)

FINGERPRINT_CACHE_SUFFIX = ".fingerprint.json"
"""``gpt.pth.fingerprint.json`` beside the weights caches the hash by file size and mtime."""


def _file_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class CheckpointFolder:
    """An opened base folder: its config, validated, the model family it holds, its files and dims.

    IndexTTS 1.0/1.5 folders hold ``config.yaml``, ``gpt.pth``, ``dvae.pth``, ``bigvgan_generator.pth``
    and ``bpe.model``; IndexTTS-2/2.5 folders their release files and four auxiliary models
    (``indextts.v2.folder``: ``aux_paths`` gives explicit paths for those). Construction reads
    the config once, names the family (``family``), resolves every file (a missing one is named with
    the command that fetches it) and cross-checks the config's sections.
    """

    def __init__(self, model_dir: str | Path, aux_paths: dict[str, str | Path] | None = None):
        self.root = Path(model_dir).expanduser().resolve()
        opened = open_base(self.root, aux_paths)
        self.cfg, self.family, self.dims, self.paths = opened.cfg, opened.family, opened.dims, opened.paths
        self.v2 = opened.v2
        """IndexTTS-2 / 2.5: the loaders of the folder's parts (``indextts.v2.models.V2Models``); else None."""

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

    def require_generation_1(self, work: str) -> None:
        """Refuse ``work`` (extraction, training, synthesis ...) that this toolkit only does for IndexTTS 1.0/1.5 yet."""
        if self.family.generation != 1:
            raise CheckpointError(
                f"{self.root} holds {self.family}: the toolkit recognises its files, but {work} works only "
                "on IndexTTS 1.0/1.5 base folders in this version. Use an IndexTTS-1.5 folder "
                "(`indextts download 1.5`).")

    def load_gpt(self, device: str | torch.device = "cpu"):
        """The GPT (UnifiedVoice, or UnifiedVoiceV2 for IndexTTS-2 / 2.5), strictly loaded, float32, eval mode."""
        if self.v2 is not None:
            return self.v2.load_gpt(device)
        return load_model(self.paths.gpt, self.dims.gpt, device, self.config_file)

    def load_dvae(self, device: str | torch.device = "cpu"):
        """The DiscreteVAE, strictly loaded, float32, eval mode."""
        self.require_generation_1("loading the DVAE")
        return load_model(self.paths.dvae, self.dims.dvae, device, self.config_file)

    def load_bigvgan(self, device: str | torch.device = "cpu"):
        """The BigVGAN vocoder, weight norm folded, float32, eval mode."""
        self.require_generation_1("loading BigVGAN")
        return load_model(self.paths.bigvgan, self.dims.bigvgan, device, self.config_file)

    def load_speech_models(self, device: str | torch.device = "cpu") -> tuple:
        """What synthesis needs, loaded at once: (GPT, vocoder, text tokenizer)."""
        self.require_generation_1("synthesis")
        return load_speech_models(self.paths, self.dims, device, self.config_file)

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
