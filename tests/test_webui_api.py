"""The web UI's HTTP API as a client without a page sees it: only the work folder and the folders
named on the command line can be read or written, and no file the page did not write is replaced.

A real server (``build_app(...).launch``) on a free loopback port, called through Gradio's
``/gradio_api/call/<name>`` endpoints with httpx.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio", reason="the web UI needs the [webui] extra (pip install -e '.[webui]')")

REVIEW_HEADERS = ["keep", "clip", "seconds", "LUFS", "ASR confidence", "flags", "transcript"]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(base URL, work folder, a folder outside every allowed one) of a page served on loopback."""
    from indextts.webui.app import build_app
    from indextts.webui.workspace import Settings, Workspace

    root = tmp_path_factory.mktemp("webui_api")
    workdir, outside = root / "work", root / "outside"
    for folder in (workdir, outside, root / "base"):
        folder.mkdir()
    app = build_app(Workspace(Settings(model_dir=root / "base", workdir=workdir))).queue()
    with socket.socket() as probe:  # a free port: other test runs may serve pages at the same time
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    try:
        yield app.local_url.rstrip("/"), workdir, outside
    finally:
        app.close()


def call(url: str, name: str, *data) -> list:
    """POST the inputs to /gradio_api/call/<name> and return the outputs of the 'complete' event."""
    with httpx.Client(timeout=60) as client:
        posted = client.post(f"{url}/gradio_api/call/{name}", json={"data": list(data)})
        posted.raise_for_status()
        stream = client.get(f"{url}/gradio_api/call/{name}/{posted.json()['event_id']}").text
    events = dict(zip(*[iter(line.split(": ", 1)[1] for line in stream.splitlines() if line)] * 2))
    assert "complete" in events, stream
    return json.loads(events["complete"])


def _table(*clips: Path) -> dict:
    return {"headers": REVIEW_HEADERS, "data": [[True, str(c), 1.0, "", "", "", f"Clip {c.stem}."] for c in clips]}


def _clip(path: Path) -> Path:
    soundfile.write(path, np.full(2400, 0.1, np.float32), 24000)
    return path


def test_load_clips_refuses_a_file_outside_the_allowed_folders(page):
    url, workdir, outside = page
    secret = outside / "secret.lst"
    secret.write_text(f"{_clip(outside / 'a.wav')}\tThe secret line.\n", encoding="utf-8")
    for path in ("/etc/passwd", str(secret), str(workdir / ".." / "outside" / "secret.lst")):
        table, message = call(url, "load_clips", path)
        assert "is outside the folders this page may read" in message and "--allow_dir" in message, message
        assert "secret line" not in json.dumps(table) and "root:" not in json.dumps(table)
        assert "Traceback" not in message
    (workdir / "mine.lst").write_text(f"{_clip(workdir / 'b.wav')}\tMy line.\n", encoding="utf-8")
    table, message = call(url, "load_clips", str(workdir / "mine.lst"))
    assert message.startswith("1 clips.") and table["data"][0][6] == "My line.", table


def test_export_list_never_overwrites_a_file_it_did_not_write(page):
    url, workdir, outside = page
    clip = _clip(workdir / "c.wav")
    foreign, elsewhere = workdir / "notes.lst", outside / "target.lst"
    foreign.write_text("the user's own list\n", encoding="utf-8")
    (message,) = call(url, "export_list", _table(clip), str(foreign))
    assert "already exists and was not written by this page" in message and "Choose a new file name" in message
    assert foreign.read_text(encoding="utf-8") == "the user's own list\n"
    (message,) = call(url, "export_list", _table(clip), str(elsewhere))
    assert "is outside the folders this page may write to" in message and not elsewhere.exists()
    (message,) = call(url, "export_list", _table(_clip(outside / "d.wav")), str(workdir / "new.lst"))
    assert "The clip" in message and "outside the folders" in message and not (workdir / "new.lst").exists()
    for text in ("first", "second"):  # a list the page wrote may be written again
        (message,) = call(url, "export_list", _table(clip), str(workdir / "reviewed.lst"))
        assert message.startswith("Wrote 1 clips to"), message
    # the audio-list rule: paths relative to the list's folder (indextts.contracts.audio_list)
    assert (workdir / "reviewed.lst").read_text(encoding="utf-8") == f"{clip.name}\tClip c.\n"


def test_job_and_run_paths_are_confined_too(page):
    url, workdir, outside = page
    (message,) = call(url, "extract", str(outside / "x.lst"), str(workdir), str(workdir / "extracted"), "cpu")
    assert "The audio list" in message and "outside the folders this page may read" in message
    *_, message = call(url, "show", "/etc")
    assert "The run folder /etc is outside" in message
    (message,) = call(url, "evaluate", str(workdir / "run"), f"whisper:{outside}", "")
    assert f"The ASR model {outside} is outside" in message
    (message,) = call(url, "launch", str(workdir), str(workdir / "info.json"), str(workdir / "run"), 1, 0, 1e-4, 4,
                      "auto", "fp32", f"run_dir={outside / 'run'}")
    assert "The override run_dir" in message and "may write to" in message and not (outside / "run").exists()


def test_symlinks_overrides_and_the_read_only_base(tmp_path):
    from indextts.errors import WebUIError
    from indextts.webui.paths import PathPolicy

    work, base = tmp_path / "work", tmp_path / "base"
    work.mkdir(), base.mkdir()
    policy = PathPolicy.for_folders(work, base)
    (work / "link").symlink_to("/etc")
    with pytest.raises(WebUIError, match="outside the folders this page may read"):
        policy.check(work / "link" / "passwd", "The audio list")
    assert policy.check(base / "gpt.pth", "The base") == str(base / "gpt.pth")
    with pytest.raises(WebUIError, match="may write to"):
        policy.check(base / "run", "The run folder", write=True)
    kept = "train.resume=auto\ntrain.resume=null\ndata.num_workers=0"
    assert policy.check_overrides(kept) == kept
    assert policy.check_overrides(f"run_dir = {work}/run") == f"run_dir={work / 'run'}"
    with pytest.raises(WebUIError, match="The override train.resume /etc is outside"):
        policy.check_overrides("train.resume=/etc")


def test_build_voice_refuses_a_project_or_recording_outside_the_allowed_folders(page):
    url, workdir, outside = page
    recording = _clip(workdir / "mine.wav")
    [message] = call(url, "build_voice", None, str(recording), "me", "en", "auto", str(outside / "project"))
    assert "is outside the folders this page may" in message and "Traceback" not in message, message
    [message] = call(url, "build_voice", None, "/etc/passwd", "me", "en", "auto", str(workdir / "project"))
    assert "is outside the folders this page may read" in message, message
    assert not (outside / "project").exists() and not (workdir / "project").exists()
