"""``indextts <verb>``: the one entry point lists its verbs and runs the same commands as indextts-*."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from helpers import REPO_ROOT
from indextts.cli import EXIT_USER_ERROR
from indextts.cli.verbs import VERBS, main


def test_help_lists_every_verb_without_importing_torch():
    code = ("import sys; from indextts.cli.verbs import main; status = main(['--help']); "
            "print('torch' in sys.modules, status)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    *listing, last = result.stdout.strip().splitlines()
    assert last == "False 0"
    for verb in ("prepare", "extract", "train", "eval", "infer", "serve", "export", "webui"):
        assert any(line.strip().startswith(verb + " ") for line in listing), verb


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_verb_is_its_command(verb, capsys):
    """``indextts <verb> --help`` prints what the command module's own ``--help`` prints."""
    own = importlib.import_module(VERBS[verb][0]).main
    with pytest.raises(SystemExit) as direct:
        own(["--help"])
    expected = capsys.readouterr().out
    with pytest.raises(SystemExit) as front:
        main([verb, "--help"])
    assert (front.value.code, capsys.readouterr().out) == (direct.value.code, expected)
    assert "usage" in expected


def test_an_unknown_verb_names_the_verbs(capsys):
    assert main(["trian", "run_dir=x"]) == EXIT_USER_ERROR
    error = capsys.readouterr().err
    assert "'indextts trian' is not a command" in error and "train" in error and "--help" in error


def test_no_verb_prints_the_usage_and_fails(capsys):
    assert main([]) == EXIT_USER_ERROR
    assert "usage: indextts <verb>" in capsys.readouterr().out


def test_python_dash_m_indextts_is_the_front():
    result = subprocess.run([sys.executable, "-m", "indextts", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "verbs:" in result.stdout
