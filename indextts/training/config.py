"""The typed training config: ``TrainConfig`` (the schema) merged with the packaged ``train.yaml``.

One source of truth for the defaults: ``indextts/configs/train.yaml`` holds every default value
and its documentation; the dataclasses below only state each key's type (every field is
``MISSING``), so a key missing from either side fails the merge or the missing-key check, and
``tests/test_train_config.py`` checks that both list the same keys. ``load_train_config`` merges
the YAML, the user's file and ``key=value`` overrides into the schema, checks every value once
(all problems reported together), and returns plain dataclass objects, so code reads
``cfg.train.lora.r`` as an ``int`` without casting.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from indextts.config import TRAIN_CONFIG
from indextts.errors import ConfigError
from indextts.runtime import PRECISIONS
from indextts.text import SPECIAL_TOKEN

DEFAULT_CONFIG = TRAIN_CONFIG
AUTO = "auto"
EMOTION_SOURCES = ("utterance", "speaker")
"""train.emotion (IndexTTS-2/2.5): each row's extracted emotion vector (the default), or its speaker's medoid one."""
CONDITION_PAIRINGS = ("learned", "prompt")
"""train.condition_pairing (IndexTTS-2/2.5): the learned speaker condition (the default), or another utterance's
extracted one."""


@dataclass
class DataConfig:
    min_duration: float = MISSING
    max_duration: Optional[float] = MISSING
    max_tokens: Any = MISSING  # int or "auto"
    max_batch_size: int = MISSING
    num_workers: int = MISSING
    auto_memory_fraction: float = MISSING
    cpu_max_tokens: int = MISSING


@dataclass
class LoraSettings:
    r: int = MISSING
    alpha: float = MISSING
    dropout: float = MISSING
    target_modules: List[str] = MISSING


@dataclass
class SpeakerConditionSettings:
    trainable: bool = MISSING
    lr: float = MISSING


@dataclass
class OptimizerSettings:
    lr: float = MISSING
    loraplus_lr_ratio: float = MISSING
    weight_decay: float = MISSING
    betas: List[float] = MISSING
    eps: float = MISSING
    token_embedding_lr: float = MISSING


@dataclass
class SchedulerSettings:
    warmup_ratio: float = MISSING
    min_lr_ratio: float = MISSING


@dataclass
class TrainSettings:
    seed: int = MISSING
    epochs: int = MISSING
    max_steps: Optional[int] = MISSING
    resume: Optional[str] = MISSING
    special_tokens: List[str] = MISSING
    text_weight: float = MISSING
    grad_accum: int = MISSING
    grad_clip: float = MISSING
    precision: str = MISSING
    tf32: bool = MISSING
    gradient_checkpointing: bool = MISSING
    deterministic: bool = MISSING
    compile: bool = MISSING
    device: str = MISSING
    dist_timeout_s: float = MISSING
    log_every_steps: int = MISSING
    log_every_seconds: float = MISSING
    val_every_steps: int = MISSING
    save_every_steps: int = MISSING
    keep_checkpoints: int = MISSING
    early_stopping_patience: int = MISSING
    emotion: str = MISSING
    condition_pairing: str = MISSING
    lora: LoraSettings = field(default_factory=LoraSettings)
    speaker_conditions: SpeakerConditionSettings = field(default_factory=SpeakerConditionSettings)
    optimizer: OptimizerSettings = field(default_factory=OptimizerSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)


@dataclass
class TrainConfig:
    """The whole training config (see ``indextts/configs/train.yaml`` for the meaning of each key)."""

    model_dir: str = MISSING
    speaker_info: str = MISSING
    run_dir: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)


def load_train_config(path: str | Path = DEFAULT_CONFIG, overrides: Sequence[str] = ()) -> TrainConfig:
    """The packaged defaults, then the YAML at ``path``, then ``key=value`` ``overrides``; checked once.

    Raises ConfigError naming every unknown key, wrong type and invalid value at once.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Training config {path} does not exist. Use {TRAIN_CONFIG} as a template.")
    cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(TRAIN_CONFIG))
    problems: list[str] = []
    for source, layer in _user_layers(path, overrides, problems):
        problems += _merge_leaves(cfg, layer, source)
    missing = sorted(OmegaConf.missing_keys(cfg))
    problems += [f"{key} has no value" for key in missing]
    config = None if missing else OmegaConf.to_object(cfg)
    if config is not None:
        problems += config_problems(config)
    if problems:
        raise ConfigError(f"The training config ({path} with overrides {list(overrides)}) has "
                          f"{len(problems)} problem(s): {'; '.join(problems)}. Fix them in the file or on the "
                          f"command line; {TRAIN_CONFIG} documents every key.")
    return config


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _yaml_problem(error: Exception) -> str:
    """A YAML syntax error with its line and column (1-based), else the error's first line."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return _first_line(error)
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {getattr(error, 'problem', '')}"


def _user_layers(path: Path, overrides: Sequence[str], problems: list[str]) -> list[tuple[str, dict]]:
    """(source, plain dict) of the user's file and of each override; one that cannot be parsed is a problem."""
    layers = []
    for source, parse in [(str(path), lambda: OmegaConf.load(path))] + [
            (f"override {item!r}", functools.partial(OmegaConf.from_dotlist, [item])) for item in overrides]:
        try:
            layer = OmegaConf.to_container(parse(), resolve=False)
        except (OmegaConfBaseException, ValueError, yaml.YAMLError) as error:
            problems.append(f"{source} cannot be parsed: {_yaml_problem(error)}")
            continue
        if isinstance(layer, dict):
            layers.append((source, layer))
        else:
            problems.append(f"{source} holds a {type(layer).__name__}, not a mapping of keys to values")
    return layers


def _merge_leaves(cfg: DictConfig, layer: dict, source: str, prefix: str = "") -> list[str]:
    """Merge ``layer`` into ``cfg`` value by value; one problem line per unknown key or ill-typed value."""
    problems = []
    for name, value in layer.items():
        key = f"{prefix}{name}"
        node = OmegaConf.select(cfg, key)  # None for an unknown key: its own keys are named in full below
        if isinstance(value, dict) and (node is None or isinstance(node, DictConfig)):
            problems += _merge_leaves(cfg, value, source, f"{key}.")
            continue
        try:
            OmegaConf.update(cfg, key, value, merge=True)
        except (ConfigKeyError, ConfigAttributeError):
            close = difflib.get_close_matches(key, _leaf_keys(cfg), n=1)
            problems.append(f"unknown key {key} (in {source}{f'; did you mean {close[0]}?' if close else ''})")
        except ValidationError as error:
            problems.append(f"{key} = {value!r} (in {source}) has the wrong type: {_first_line(error)}")
    return problems


def _leaf_keys(node: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for name in node:
        child = node._get_node(name)
        keys += _leaf_keys(child, f"{prefix}{name}.") if isinstance(child, DictConfig) else [f"{prefix}{name}"]
    return keys


def config_to_dict(cfg: TrainConfig) -> dict:
    """The config as plain containers (for config.yaml of a run and comparisons at resume)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def _ranges(cfg: TrainConfig) -> list[tuple[str, bool, str]]:
    """(key, holds, requirement) for every numeric rule: one line per key, so longer than 40 lines."""
    data, train = cfg.data, cfg.train
    opt, sched, lora = train.optimizer, train.scheduler, train.lora
    return [
        ("data.min_duration", data.min_duration >= 0, ">= 0"),
        ("data.max_duration", data.max_duration is None or data.max_duration > data.min_duration,
         "null or > data.min_duration"),
        ("data.max_tokens", data.max_tokens == AUTO or (isinstance(data.max_tokens, int)
                                                        and not isinstance(data.max_tokens, bool)
                                                        and data.max_tokens > 0), "a positive integer or auto"),
        ("data.max_batch_size", data.max_batch_size >= 1, ">= 1"),
        ("data.num_workers", data.num_workers >= 0, ">= 0"),
        ("data.auto_memory_fraction", 0 < data.auto_memory_fraction <= 1, "in (0, 1]"),
        ("data.cpu_max_tokens", data.cpu_max_tokens > 0, "> 0"),
        ("train.epochs", train.epochs >= 1, ">= 1"),
        ("train.max_steps", train.max_steps is None or train.max_steps >= 1,
         "null (use train.epochs) or >= 1; a run without steps would save an untrained adapter"),
        ("train.text_weight", 0 <= train.text_weight <= 1, "in [0, 1]"),
        ("train.grad_accum", train.grad_accum >= 1, ">= 1"),
        ("train.grad_clip", train.grad_clip > 0, "> 0"),
        ("train.precision", train.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
        ("train.dist_timeout_s", train.dist_timeout_s > 0, "> 0"),
        ("train.log_every_steps", train.log_every_steps >= 1, ">= 1"),
        ("train.log_every_seconds", train.log_every_seconds >= 0, ">= 0 (0: by steps only)"),
        ("train.val_every_steps", train.val_every_steps >= 0, ">= 0"),
        ("train.save_every_steps", train.save_every_steps >= 0, ">= 0"),
        ("train.keep_checkpoints", train.keep_checkpoints >= 1, ">= 1"),
        ("train.early_stopping_patience", train.early_stopping_patience >= 0, ">= 0"),
        ("train.emotion", train.emotion in EMOTION_SOURCES, f"one of {', '.join(EMOTION_SOURCES)}"),
        ("train.condition_pairing", train.condition_pairing in CONDITION_PAIRINGS,
         f"one of {', '.join(CONDITION_PAIRINGS)}"),
        ("train.lora.r", lora.r >= 1, ">= 1"),
        ("train.lora.alpha", lora.alpha > 0, "> 0"),
        ("train.lora.dropout", 0 <= lora.dropout < 1, "in [0, 1)"),
        ("train.lora.target_modules", len(lora.target_modules) > 0, "a non-empty list"),
        ("train.speaker_conditions.lr", train.speaker_conditions.lr > 0, "> 0"),
        ("train.optimizer.lr", opt.lr > 0, "> 0"),
        ("train.optimizer.loraplus_lr_ratio", opt.loraplus_lr_ratio > 0, "> 0"),
        ("train.optimizer.weight_decay", opt.weight_decay >= 0, ">= 0"),
        ("train.optimizer.betas", len(opt.betas) == 2 and all(0 <= b < 1 for b in opt.betas),
         "two values in [0, 1)"),
        ("train.optimizer.eps", opt.eps > 0, "> 0"),
        ("train.optimizer.token_embedding_lr", opt.token_embedding_lr > 0, "> 0"),
        ("train.scheduler.warmup_ratio", 0 <= sched.warmup_ratio < 1, "in [0, 1)"),
        ("train.scheduler.min_lr_ratio", 0 <= sched.min_lr_ratio <= 1, "in [0, 1]"),
    ]


def config_problems(cfg: TrainConfig) -> list[str]:
    """Every rule ``cfg`` breaks, as ``key = value: must be ...`` lines (empty when valid)."""
    problems = []
    for key, holds, requirement in _ranges(cfg):
        if not holds:
            value = OmegaConf.select(OmegaConf.structured(cfg), key)
            problems.append(f"{key} = {value!r} must be {requirement}")
    bad_tokens = [t for t in cfg.train.special_tokens if not SPECIAL_TOKEN.fullmatch(t)]
    if bad_tokens:
        problems.append(f"train.special_tokens {bad_tokens} must look like <name> (letters, digits and _ "
                        "inside angle brackets)")
    return problems
