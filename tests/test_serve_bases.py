"""Which base each served run speaks on (indextts.serving.bases), with run folders that hold only their
config.yaml (planning reads nothing else) and the tiny base folders of each family."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from indextts.errors import ConfigError
from indextts.serving.bases import plan_bases


def _run(root: Path, name: str, model_dir: Path, family: str | None = None) -> Path:
    """A run folder holding only its config.yaml (``model.family`` as training records it, when given)."""
    folder = root / name
    folder.mkdir()
    recorded = "" if family is None else f"model:\n  family: '{family}'\n"
    (folder / "config.yaml").write_text(f"model_dir: {model_dir}\n{recorded}", encoding="utf-8")
    return folder


def _layout(plans) -> list[tuple[str, str, list[str]]]:
    return [(plan.model_dir.name, plan.family.version, sorted(plan.runs)) for plan in plans]


@pytest.fixture
def copies(tmp_path, tiny_model_dir, tiny_v2_dirs) -> dict[str, Path]:
    """Another folder of each family (a run trained on a copy elsewhere), and a folder that does not exist."""
    return {"1.5": shutil.copytree(tiny_model_dir, tmp_path / "copy_15"),
            "2": shutil.copytree(tiny_v2_dirs["2"], tmp_path / "copy_2"),
            "missing": tmp_path / "gone"}


def test_each_run_speaks_on_its_own_base_or_its_familys_given_base(tmp_path, tiny_model_dir, tiny_v2_dirs, copies):
    runs = {"own": _run(tmp_path, "own", tiny_model_dir), "sibling": _run(tmp_path, "sibling", copies["1.5"]),
            "v2a": _run(tmp_path, "v2a", tiny_v2_dirs["2"]), "v2b": _run(tmp_path, "v2b", tiny_v2_dirs["2"]),
            "multi": _run(tmp_path, "multi", tiny_v2_dirs["2.5"])}
    plans = plan_bases([tiny_model_dir, tiny_model_dir], runs)
    assert _layout(plans) == [(tiny_model_dir.name, "1.5", ["own", "sibling"]), ("2", "2", ["v2a", "v2b"]),
                              ("2.5", "2.5", ["multi"])]
    assert plans[1].model_dir == tiny_v2_dirs["2"].resolve()


def test_a_given_base_of_the_family_takes_runs_trained_on_another_copy(tmp_path, tiny_model_dir, tiny_v2_dirs,
                                                                        copies):
    runs = {"v2": _run(tmp_path, "v2", copies["2"]), "old": _run(tmp_path, "old", tiny_model_dir)}
    plans = plan_bases([tiny_v2_dirs["2"]], runs)
    assert _layout(plans) == [("2", "2", ["v2"]), (tiny_model_dir.name, "1.5", ["old"])]


def test_a_run_whose_base_is_missing_speaks_on_the_given_base_of_its_recorded_family(tmp_path, tiny_model_dir,
                                                                                     tiny_v2_dirs, copies):
    runs = {"moved": _run(tmp_path, "moved", copies["missing"], family="2")}
    plans = plan_bases([tiny_model_dir, tiny_v2_dirs["2"]], runs)
    assert _layout(plans) == [(tiny_model_dir.name, "1.5", []), ("2", "2", ["moved"])]
    with pytest.raises(ConfigError, match="no single --model_dir given is an IndexTTS-2 base"):
        plan_bases([tiny_model_dir], runs)


def test_an_older_run_whose_base_is_missing_needs_exactly_one_given_base(tmp_path, tiny_model_dir, tiny_v2_dirs,
                                                                         copies):
    runs = {"moved": _run(tmp_path, "moved", copies["missing"])}
    assert _layout(plan_bases([tiny_model_dir], runs)) == [(tiny_model_dir.name, "1.5", ["moved"])]
    for given in ([], [tiny_model_dir, tiny_v2_dirs["2"]]):
        with pytest.raises(ConfigError, match="not on this machine.*is its base"):
            plan_bases(given, runs)


def test_two_given_bases_of_one_family_leave_a_third_folders_run_without_a_base(tmp_path, tiny_model_dir, copies):
    runs = {"elsewhere": _run(tmp_path, "elsewhere", tmp_path / "third")}
    shutil.copytree(tiny_model_dir, tmp_path / "third")
    with pytest.raises(ConfigError, match="Several base folders of IndexTTS-1.5"):
        plan_bases([tiny_model_dir, copies["1.5"]], runs)


def test_without_bases_or_runs_the_default_folder_is_the_base(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model_dir, tmp_path / "checkpoints")
    assert _layout(plan_bases([], {})) == [("checkpoints", "1.5", [])]
