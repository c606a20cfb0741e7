"""The shared command wrapper: user errors are one message and exit 2, interrupts exit 130."""

import ast
import os
import re
import subprocess
import sys

import pytest

from helpers import REPO_ROOT
from indextts.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR, run_command
from indextts.config import load_config
from indextts.errors import ConfigError, DataError


def test_user_error_is_one_line_and_exit_2(capsys):
    def fail():
        raise DataError("The list x.lst does not exist. Check the path.")

    assert run_command(fail) == EXIT_USER_ERROR
    assert capsys.readouterr().err == "error: The list x.lst does not exist. Check the path.\n"


def test_interrupt_exits_130_and_says_work_is_kept(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_command(interrupted) == EXIT_INTERRUPTED
    assert "finished work is kept" in capsys.readouterr().err


def test_status_passes_through():
    assert run_command(lambda: None) == 0
    assert run_command(lambda: 3) == 3


# Paths that exist only in a checkout of the repository, not in a pip install of the package.
CHECKOUT_ONLY = re.compile(r"tools/|(?<![\w-])train\.py|indextts/infer\.py|\bmake (demo|test|install)\b")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    bodies = [node.body for node in ast.walk(tree)
              if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body]
    return {id(body[0].value) for body in bodies
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)}


def test_messages_name_only_what_a_pip_install_has():
    """Issue 25 item 21: the 'no config' error suggested `python tools/make_tiny_checkpoints.py`,
    a file a pip install does not have. No string the package shows (docstrings aside) names a
    checkout-only path; the tiny-folder command it names instead runs from the installed package."""
    offenders = []
    for path in sorted((REPO_ROOT / "indextts").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstring_nodes(tree)
        offenders += [f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {node.value[:80]!r}" for node in ast.walk(tree)
                      if isinstance(node, ast.Constant) and isinstance(node.value, str)
                      and id(node) not in docstrings and CHECKOUT_ONLY.search(node.value)]
    assert not offenders, "\n".join(offenders)


def test_the_tiny_folder_command_the_errors_name_writes_a_loadable_folder(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "nowhere")
    command = re.search(r"`python (-m [\w.]+) DIR`", str(error.value)).group(1).split()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, *command, str(tmp_path / "tiny")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert load_config(tmp_path / "tiny").gpt.layers > 0
