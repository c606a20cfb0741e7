"""The typed training config: one source of defaults, every problem reported at once."""

from __future__ import annotations

import dataclasses

import pytest
from omegaconf import OmegaConf

from indextts.errors import ConfigError
from indextts.training.config import DEFAULT_CONFIG, TrainConfig, load_train_config


def _keys(node, prefix=""):
    if dataclasses.is_dataclass(node):
        items = {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}
    else:
        items = dict(node)
    keys = set()
    for name, value in items.items():
        nested = dataclasses.is_dataclass(value) or isinstance(value, dict)
        keys |= _keys(value, f"{prefix}{name}.") if nested else {prefix + name}
    return keys


def test_yaml_and_schema_list_the_same_keys():
    yaml_keys = _keys(OmegaConf.to_container(OmegaConf.load(DEFAULT_CONFIG)))
    schema_keys = _keys(TrainConfig())
    assert yaml_keys == schema_keys


def test_defaults_load_typed():
    cfg = load_train_config()
    assert isinstance(cfg, TrainConfig)
    assert isinstance(cfg.train.lora.r, int) and isinstance(cfg.train.optimizer.lr, float)
    assert cfg.data.max_tokens == "auto" and cfg.train.max_steps is None


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        load_train_config(DEFAULT_CONFIG, ["train.max_steps=-1", "train.lora.r=0", "data.max_tokens=many",
                                           "train.special_tokens=[laugh]", "train.precision=fp8"])
    message = str(error.value)
    for key in ("train.max_steps", "train.lora.r", "data.max_tokens", "train.special_tokens", "train.precision"):
        assert key in message
    assert "5 problem(s)" in message and "\n" not in message


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_train_config(DEFAULT_CONFIG, ["train.epochs=abc"])


def test_a_user_file_overrides_the_defaults(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  lora:\n    r: 4\n", encoding="utf-8")
    cfg = load_train_config(path, ["train.epochs=3"])
    assert cfg.train.lora.r == 4 and cfg.train.epochs == 3 and cfg.train.lora.alpha == 32.0


def test_the_training_manual_lists_every_key():
    from helpers import REPO_ROOT

    manual = (REPO_ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    assert {key for key in _keys(TrainConfig()) if f"| `{key}` |" not in manual} == set()


def test_every_unknown_key_and_bad_value_of_file_and_overrides_is_named_at_once(tmp_path, capsys):
    """Issue 25 item 9: only the first typo was named."""
    from indextts.cli.train import main as train_main

    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  lora:\n    rank: 4\n  epoch: 3\n  seed: abc\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    status = train_main(["--config", str(path), f"run_dir={run_dir}", "trian.max_steps=2",
                         "train.optimizer.betas=[0.9,x]", "train.lora.r=0", "data.num_workers=[1,"])
    message = capsys.readouterr().err
    assert status == 2 and "Traceback" not in message and "7 problem(s)" in message
    for named in (f"unknown key train.lora.rank (in {path}; did you mean train.lora.r?)",
                  f"unknown key train.epoch (in {path}; did you mean train.epochs?)",
                  "train.seed = 'abc'", "unknown key trian.max_steps (in override 'trian.max_steps=2'; did you mean "
                  "train.max_steps?)", "train.optimizer.betas = [0.9, 'x']", "train.lora.r = 0 must be >= 1",
                  "override 'data.num_workers=[1,' cannot be parsed"):
        assert named in message
    assert "Fix them in the file or on the command line" in message
    assert not run_dir.exists()


def test_a_config_file_that_is_not_a_mapping_is_named_with_the_other_problems(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train\n- epochs\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_train_config(path, ["train.lora.rnk=3"])
    message = str(error.value)
    assert f"{path} holds a list, not a mapping of keys to values" in message and "2 problem(s)" in message
    assert "unknown key train.lora.rnk (in override 'train.lora.rnk=3'; did you mean train.lora.r?)" in message


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path, capsys):
    """Issue 25 item 8: a YAML syntax error in --config gave a traceback."""
    from indextts.cli.train import main as train_main

    path = tmp_path / "mine.yaml"
    path.write_text("train:\n  epochs: 3\n  seed: [1, 2\n", encoding="utf-8")
    before = path.read_bytes()
    status = train_main(["--config", str(path), f"run_dir={tmp_path / 'run'}"])
    message = capsys.readouterr().err
    assert status == 2 and "Traceback" not in message
    assert f"{path} cannot be parsed: YAML syntax error at line 4, column 1" in message
    assert path.read_bytes() == before and not (tmp_path / "run").exists()
