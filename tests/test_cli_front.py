"""One command-line grammar: the base folder is --model_dir and the run folder --run_dir in every
command (older spellings still work), and infer and serve offer the same synthesis options."""

from __future__ import annotations

import pytest

from indextts.cli import verbs

TAKES_BASE = {"prepare", "extract", "train", "eval", "infer", "serve", "export", "webui", "download", "voice"}
TAKES_RUN = {"train", "eval", "infer", "serve", "export", "report"}
HELP_ARGV = {"voice": ["build", "--help"]}


def help_text(verb: str, capsys) -> str:
    main = __import__(verbs.VERBS[verb][0], fromlist=["main"]).main
    with pytest.raises(SystemExit) as stop:
        main(HELP_ARGV.get(verb, ["--help"]))
    assert stop.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("verb", sorted(TAKES_BASE | TAKES_RUN))
def test_every_command_names_the_base_and_the_run_the_same_way(verb, capsys):
    text = help_text(verb, capsys)
    assert ("--model_dir" in text) == (verb in TAKES_BASE), verb
    assert ("--run_dir" in text) == (verb in TAKES_RUN), verb


def _options(parser, titles: tuple[str, ...]) -> dict[str, object]:
    return {action.dest: action.default for group in parser._action_groups if group.title in titles
            for action in group._group_actions}


def test_infer_and_serve_offer_the_same_synthesis_and_runtime_options():
    from indextts.cli import infer, serve

    titles = ("generation", "sentences and audio", "runtime")
    served = _options(serve.build_parser(), titles)
    assert served == {key: value for key, value in _options(infer.build_parser(), titles).items() if key != "verbose"}
    assert {"vocoder_precision", "cpu_quantization", "temperature", "pause_seconds"} <= set(served)


def test_serve_passes_the_vocoder_precision_and_cpu_quantization_to_the_model(monkeypatch, tiny_model_dir):
    from indextts.cli import serve
    from indextts.serving import bases

    seen = {}
    monkeypatch.setattr(bases, "load_router", lambda plans, **k: seen.update(k))
    args = serve.build_parser().parse_args(["--model_dir", str(tiny_model_dir), "--vocoder_precision", "bf16",
                                            "--cpu_quantization", "int8", "--temperature", "0.7"])
    serve.load_tts(args)
    assert seen["vocoder_precision"] == "bf16" and seen["cpu_quantization"] == "int8"
    from indextts.cli.options import synthesis_options_from_args

    assert synthesis_options_from_args(args).generation.temperature == 0.7


@pytest.mark.parametrize("module, old, new, dest", [
    ("eval", ["--run", "runs/a"], ["--run_dir", "runs/a"], "run"),
    ("report", ["--run", "runs/a", "--features", "f", "--out", "o"],
     ["--run_dir", "runs/a", "--features", "f", "--out", "o"], "run"),
    ("infer", ["--adapter", "runs/a", "--text", "t", "--output", "o.wav"],
     ["--run_dir", "runs/a", "--text", "t", "--output", "o.wav"], "adapter"),
    ("serve", ["--adapter", "runs/a"], ["--run_dir", "runs/a"], "adapter"),
    ("download", ["1.5", "--dir", "m"], ["1.5", "--model_dir", "m"], "dir"),
])
def test_older_spellings_still_work(module, old, new, dest):
    parser = __import__(f"indextts.cli.{module}", fromlist=["build_parser"]).build_parser()
    assert getattr(parser.parse_args(old), dest) == getattr(parser.parse_args(new), dest)


def test_voice_build_takes_model_dir_or_base():
    from indextts.cli.voice import build_parser

    parser = build_parser()
    common = ["build", "rec", "--speaker", "a", "--project", "p"]
    assert parser.parse_args([*common, "--base", "b"]).base == parser.parse_args([*common, "--model_dir", "b"]).base


def test_export_takes_the_folders_as_flags_or_positionals(capsys):
    from indextts.cli.export import _folders, build_parser

    parser = build_parser()
    flags = _folders(parser, parser.parse_args(["--run_dir", "r", "--output_dir", "o"]))
    positional = _folders(parser, parser.parse_args(["r", "o"]))
    assert (flags.run_dir, flags.output_dir) == (positional.run_dir, positional.output_dir)
    with pytest.raises(SystemExit):
        _folders(parser, parser.parse_args(["r", "o", "--run_dir", "x"]))
    assert "give the run folder and the output folder once each" in capsys.readouterr().err


def test_train_takes_the_folders_as_flags_or_keys(capsys):
    from indextts.cli.train import _with_folder_flags, build_parser, main

    args = build_parser().parse_intermixed_args(["--run_dir", "runs/a", "--model_dir", "m", "train.epochs=2"])
    assert _with_folder_flags(args) == ["train.epochs=2", "model_dir=m", "run_dir=runs/a"]
    same = build_parser().parse_intermixed_args(["--run_dir", "runs/a", "run_dir=runs/a"])
    assert _with_folder_flags(same) == ["run_dir=runs/a"]
    assert main(["--run_dir", "runs/a", "run_dir=runs/b"]) == 2
    assert "--run_dir runs/a and run_dir=runs/b disagree" in capsys.readouterr().err
