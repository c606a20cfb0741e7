"""Every Python snippet in README.md and docs/*.md runs as printed, top to bottom.

Only the names of things a user has and the tests make stand-ins for are replaced, as whole
quoted string literals, by ``DOC_NAMES`` (docs/development.md lists the same mapping): the base
checkpoint folder, run folders, hub model ids and the server address. A snippet runs with ``exec``
in a fresh namespace, in a temporary working folder (files it writes, e.g. out.wav, land there).
"""

from __future__ import annotations

import re

import pytest
from helpers import REPO_ROOT, train_tiny_eval_run, write_lora_run, write_tiny_wavlm, write_tiny_whisper

pytestmark = pytest.mark.slow

DOC_FILES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)

# A name in the docs -> the fixture whose value replaces it (a path, a backend spec, a URL).
DOC_NAMES = {
    "checkpoints": "tiny_model_dir",
    "runs/kaishu": "doc_runs",
    "runs/narrator": "doc_runs",
    "runs/extra": "doc_runs",
    "voices/alice/run": "doc_runs",
    "runs/bob": "doc_runs",
    "runs/my_voice": "doc_eval_run",
    "step_00000400": "doc_eval_run",
    "whisper:openai/whisper-large-v3": "doc_eval_backends",
    "paraformer": "doc_eval_backends",
    "wavlm:microsoft/wavlm-base-plus-sv": "doc_eval_backends",
    "http://127.0.0.1:8000/v1": "doc_server",
    "checkpoints/IndexTTS-2": "doc_v2",
    "speaker.wav": "doc_v2",
    "sad.wav": "doc_v2",
}
DOC_SPEAKERS = {"runs/kaishu": ("kaishu", "kaishu_30min"), "runs/narrator": ("narrator",), "runs/extra": ("extra",),
                "voices/alice/run": ("alice",), "runs/bob": ("bob",)}
"""The speakers of each stand-in run: the manuals name runs/kaishu's speakers kaishu and kaishu_30min; the README's
voices are alice (voices/alice/run, made by indextts voice build) and bob (runs/bob)."""


def python_snippets() -> list[tuple[str, str]]:
    """(id "file:line", code) of every ```python block."""
    snippets = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for match in SNIPPET.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            snippets.append((f"{path.relative_to(REPO_ROOT)}:{line}", match.group(1)))
    return snippets


@pytest.fixture(scope="module")
def doc_runs(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """LoRA runs on the tiny base, written without training (random adapters)."""
    import torch

    from indextts.audio import MelSpectrogramFeatures
    from indextts.checkpoint_folder import CheckpointFolder

    folder = CheckpointFolder(tiny_model_dir)
    audio = 0.3 * torch.sin(torch.arange(48000) * 2 * torch.pi * 150 / 24000)
    mel = MelSpectrogramFeatures.from_config(folder.cfg.dataset.mel)(audio)[0]
    root = tmp_path_factory.mktemp("doc_runs")
    return {name: str(write_lora_run(root / name.split("/")[-1], folder.load_gpt(), mel, speakers, seed,
                                     folder.identity(), tiny_model_dir))
            for seed, (name, speakers) in enumerate(DOC_SPEAKERS.items())}


@pytest.fixture(scope="module")
def doc_eval_run(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    run = train_tiny_eval_run(tmp_path_factory.mktemp("doc_eval_run"), tiny_model_dir, steps=4)
    return {"runs/my_voice": str(run), "step_00000400": "step_00000004"}


@pytest.fixture(scope="module")
def doc_eval_backends(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("doc_backends")
    whisper = f"whisper:{write_tiny_whisper(root / 'whisper')}"
    return {"whisper:openai/whisper-large-v3": whisper, "paraformer": whisper,
            "wavlm:microsoft/wavlm-base-plus-sv": f"wavlm:{write_tiny_wavlm(root / 'wavlm')}"}


@pytest.fixture(scope="module")
def doc_server(doc_runs, tiny_model_dir):
    from indextts.inference import IndexTTS
    from indextts.serving import ServerSettings, create_app, serve_in_background

    tts = IndexTTS.from_pretrained(tiny_model_dir, adapters={"kaishu": doc_runs["runs/kaishu"]}, device="cpu")
    with serve_in_background(create_app(tts, ServerSettings())) as url:
        yield {"http://127.0.0.1:8000/v1": f"{url}/v1"}


@pytest.fixture(scope="module")
def doc_v2(tiny_v2_dirs, tmp_path_factory) -> dict[str, str]:
    """The tiny IndexTTS-2 folder and two tone clips (the voice's and an emotion's)."""
    import numpy as np
    import soundfile as sf

    root, t = tmp_path_factory.mktemp("doc_v2"), np.arange(24000 * 3 // 2) / 24000
    for name, frequency in (("speaker.wav", 220), ("sad.wav", 330)):
        sf.write(root / name, (0.3 * np.sin(2 * np.pi * frequency * t) * (1 + np.sin(7 * t))).astype(np.float32), 24000)
    return {"checkpoints/IndexTTS-2": str(tiny_v2_dirs["2"]), "speaker.wav": str(root / "speaker.wav"),
            "sad.wav": str(root / "sad.wav")}


def with_stand_ins(code: str, request: pytest.FixtureRequest) -> str:
    """``code`` with every quoted ``DOC_NAMES`` literal replaced by its stand-in."""
    for name, fixture in DOC_NAMES.items():
        for quote in ('"', "'"):
            literal = f"{quote}{name}{quote}"
            if literal in code:
                value = request.getfixturevalue(fixture)
                code = code.replace(literal, repr(value[name] if isinstance(value, dict) else str(value)))
    return code


@pytest.mark.parametrize("where,code", python_snippets(), ids=[where for where, _ in python_snippets()])
def test_python_snippet_runs_as_printed(where, code, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(with_stand_ins(code, request), where, "exec"), {"__name__": "__doc_snippet__"})


def test_every_manual_with_python_is_read():
    assert {where.split(":")[0] for where, _ in python_snippets()} >= {"README.md", "docs/inference.md"}
