"""indextts-serve's command line: adapter naming, settings checks, and user errors as exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

from indextts.cli.serve import adapters_from_args, build_parser, load_tts, main
from indextts.errors import ConfigError


def test_adapters_are_named_after_their_folder_or_explicitly():
    assert adapters_from_args(["runs/kaishu/", "narrator=runs/n", "/data/x=y/run"]) == {
        "kaishu": Path("runs/kaishu/"), "narrator": Path("runs/n"), "run": Path("/data/x=y/run")}
    with pytest.raises(ConfigError, match="both named 'a'"):
        adapters_from_args(["one/a", "two/a"])


def test_defaults_bind_loopback_without_a_key(monkeypatch):
    monkeypatch.delenv("INDEXTTS_API_KEY", raising=False)
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.api_key, args.adapter) == ("127.0.0.1", 8000, None, [])


def test_bad_settings_and_a_missing_model_exit_with_a_message(tmp_path, capsys):
    assert main(["--model_dir", str(tmp_path), "--max_queue", "0", "--request_timeout", "-1"]) == 2
    message = capsys.readouterr().err
    assert "--max_queue must be >= 1" in message and "--request_timeout must be > 0" in message
    assert main(["--model_dir", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


def test_module_entry_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "indextts.serving", "--help"], capture_output=True, text=True, check=False,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0 and "indextts-serve" in done.stdout and "--adapter" in done.stdout


def test_vocoder_mode_reaches_the_served_model(tiny_model_dir):
    args = build_parser().parse_args(["--model_dir", str(tiny_model_dir), "--device", "cpu", "--vocoder_mode", "exact"])
    assert load_tts(args).bases[0].models.vocoder_mode == "exact"
    assert build_parser().parse_args([]).vocoder_mode == "auto"
