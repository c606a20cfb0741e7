"""Load and validate a base folder's ``config.yaml`` (the IndexTTS release schema).

The release config mixes model hyper-parameters with vocoder training settings. We check the keys
each model needs are present, and reject unknown keys in the sections that become constructor
arguments (``gpt``, ``vqvae``), where a typo would otherwise be silently ignored.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from indextts.dims import MODEL_SECTIONS
from indextts.errors import ConfigError

CONFIG_FILENAME = "config.yaml"
DEFAULT_MODEL_DIR = Path("checkpoints")
"""Where the release folder lives by default (the upstream repository's layout)."""
PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
"""Configs shipped inside the package: the training defaults and the two release model configs."""
TRAIN_CONFIG = PACKAGED_CONFIGS / "train.yaml"
RELEASE_CONFIGS = {
    "IndexTTS-1.5": PACKAGED_CONFIGS / "indextts-1.5.yaml",
    "IndexTTS-1.0": PACKAGED_CONFIGS / "indextts-1.0.yaml",
}

REQUIRED_KEYS = {
    "dataset": ("bpe_model", "sample_rate", "mel"),
    "dataset.mel": ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "mel_fmin"),
    **{dims.section: dims.required_keys() for dims in MODEL_SECTIONS},
    "": ("dvae_checkpoint", "gpt_checkpoint", "bigvgan_checkpoint"),
}
"""Keys each section must hold; the model sections' keys are the fields of their dims (indextts.dims)."""

KNOWN_KEYS = {dims.section: dims.known_keys() for dims in MODEL_SECTIONS if dims.closed}
"""Sections that become constructor arguments hold no other keys, so a typo is not silently ignored."""


def _section(cfg: DictConfig, dotted: str):
    return cfg if not dotted else OmegaConf.select(cfg, dotted)


def validate_config(cfg: DictConfig, source: str) -> None:
    """Raise ConfigError listing every missing or unknown key of ``cfg`` (read from ``source``)."""
    problems = []
    for dotted, keys in REQUIRED_KEYS.items():
        section = _section(cfg, dotted)
        if not isinstance(section, DictConfig):
            problems.append(f"section '{dotted}' is missing")
            continue
        problems += [f"'{dotted + '.' if dotted else ''}{k}' is missing" for k in keys if k not in section]
    for dotted, keys in KNOWN_KEYS.items():
        section = _section(cfg, dotted)
        if isinstance(section, DictConfig):
            problems += [f"'{dotted}.{k}' is not a known key" for k in section if k not in keys]
    if problems:
        raise ConfigError(
            f"The model config {source} is not a valid IndexTTS config: {'; '.join(problems)}. "
            f"Compare it with {RELEASE_CONFIGS['IndexTTS-1.5']} (IndexTTS-1.5) or "
            f"{RELEASE_CONFIGS['IndexTTS-1.0']} (IndexTTS-1.0) and fix or remove those keys."
        )


def load_config(path: str | Path) -> DictConfig:
    """Read and validate a config: ``path`` is a base folder holding config.yaml, or a YAML file."""
    path = Path(path)
    file = path / CONFIG_FILENAME if path.is_dir() else path
    if not file.is_file():
        folder = file.parent if file.suffix in (".yaml", ".yml") else file
        raise ConfigError(
            f"No model config found at {file}. Point --model_dir at the IndexTTS checkpoint folder "
            "(it holds config.yaml, gpt.pth, dvae.pth, bigvgan_generator.pth and bpe.model), fetch one "
            f"with `indextts download 1.5 --dir {folder}`, or create a tiny test folder with "
            "`python -m indextts.cli.tiny DIR`."
        )
    try:
        cfg = OmegaConf.load(file)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, OSError) as error:
        raise ConfigError(f"Cannot parse the model config {file}: {error}. Fix the YAML syntax.") from error
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"The model config {file} must be a YAML mapping, not a {type(cfg).__name__}.")
    validate_config(cfg, str(file))
    return cfg
