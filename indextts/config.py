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

from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.dims import MODEL_SECTIONS
from indextts.errors import ConfigError
from indextts.families import Family, family_of

PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
"""Configs shipped inside the package: the training defaults and the two release model configs."""
TRAIN_CONFIG = PACKAGED_CONFIGS / "train.yaml"
RELEASE_CONFIGS = {
    "IndexTTS-1.5": PACKAGED_CONFIGS / "indextts-1.5.yaml",
    "IndexTTS-1.0": PACKAGED_CONFIGS / "indextts-1.0.yaml",
}

REQUIRED_KEYS = {
    1: {
        "dataset": ("bpe_model", "sample_rate", "mel"),
        "dataset.mel": ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels", "mel_fmin"),
        **{dims.section: dims.required_keys() for dims in MODEL_SECTIONS},
        "": ("dvae_checkpoint", "gpt_checkpoint", "bigvgan_checkpoint"),
    },
    2: {
        "gpt": ("model_dim", "layers", "heads", "max_mel_tokens", "max_text_tokens", "number_text_tokens",
                "number_mel_codes", "start_mel_token", "stop_mel_token", "start_text_token", "stop_text_token",
                "condition_module", "emo_condition_module"),
        "semantic_codec": (),
        "s2mel": ("preprocess_params", "length_regulator", "DiT", "wavenet", "style_encoder"),
        "": ("gpt_checkpoint", "s2mel_checkpoint", "w2v_stat", "emo_matrix", "spk_matrix", "emo_num"),
    },
}
"""Per model generation, the keys each section must hold; generation 1's model sections' keys are the
fields of their dims (indextts.dims)."""

KNOWN_KEYS = {1: {dims.section: dims.known_keys() for dims in MODEL_SECTIONS if dims.closed}, 2: {}}
"""Sections that become constructor arguments hold no other keys, so a typo is not silently ignored."""

_RELEASE_HINTS = {
    1: f"Compare it with {RELEASE_CONFIGS['IndexTTS-1.5']} (IndexTTS-1.5) or {RELEASE_CONFIGS['IndexTTS-1.0']} "
       "(IndexTTS-1.0) and fix or remove those keys.",
    2: "Compare it with the release config of IndexTTS-2 (`indextts download 2`) and fix those keys.",
}


def _section(cfg: DictConfig, dotted: str):
    return cfg if not dotted else OmegaConf.select(cfg, dotted)


def validate_config(cfg: DictConfig, source: str, family: Family) -> None:
    """Raise ConfigError listing every missing or unknown key of ``cfg`` (read from ``source``)."""
    problems = []
    for dotted, keys in REQUIRED_KEYS[family.generation].items():
        section = _section(cfg, dotted)
        if not isinstance(section, DictConfig):
            problems.append(f"section '{dotted}' is missing")
            continue
        problems += [f"'{dotted + '.' if dotted else ''}{k}' is missing" for k in keys if k not in section]
    for dotted, keys in KNOWN_KEYS[family.generation].items():
        section = _section(cfg, dotted)
        if isinstance(section, DictConfig):
            problems += [f"'{dotted}.{k}' is not a known key" for k in section if k not in keys]
    if problems:
        raise ConfigError(f"The model config {source} is not a valid {family} config: {'; '.join(problems)}. "
                          + _RELEASE_HINTS[family.generation])


def load_config(path: str | Path) -> DictConfig:
    """Read and validate a config: ``path`` is a base folder holding config.yaml, or a YAML file."""
    return read_base_config(path)[0]


def read_base_config(path: str | Path) -> tuple[DictConfig, Family]:
    """The validated config at ``path`` (a base folder or a YAML file) and the model family it describes."""
    path = Path(path)
    file = path / CONFIG_FILENAME if path.is_dir() else path
    if not file.is_file():
        folder = file.parent if file.suffix in (".yaml", ".yml") else file
        raise ConfigError(
            f"No model config found at {file}. Point --model_dir at the IndexTTS checkpoint folder "
            f"(it holds {CONFIG_FILENAME} and the model files), fetch one with `indextts download 1.5 --dir {folder}` "
            "(or 1.0, 2, 2.5), or create a tiny test folder with "
            "`python -m indextts.cli.tiny DIR`."
        )
    try:
        cfg = OmegaConf.load(file)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, OSError) as error:
        raise ConfigError(f"Cannot parse the model config {file}: {error}. Fix the YAML syntax.") from error
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"The model config {file} must be a YAML mapping, not a {type(cfg).__name__}.")
    family = family_of(cfg, str(file))
    validate_config(cfg, str(file), family)
    return cfg, family
