"""``indextts download`` against a local hub that the tests start: layout, verification, resume, offline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from huggingface_hub import constants, hf_hub_download

from fake_hub import FakeHub
from helpers import REPO_ROOT
from indextts.cli import EXIT_USER_ERROR
from indextts.cli.download import main
from indextts.config import RELEASE_CONFIGS
from indextts.download import MARKER, STAGING


def _noise(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


STALL_AT = constants.DOWNLOAD_CHUNK_SIZE + 500_000
GPT_BYTES = STALL_AT + 1_000_000
"""Over huggingface_hub's download chunk (10 MiB), so a killed download has bytes on disk to resume from."""


def _release_15() -> dict[str, bytes]:
    return {"config.yaml": b"gpt:\n  layers: 2\n", "bpe.model": _noise(3_000, 1), "gpt.pth": _noise(GPT_BYTES, 2),
            "dvae.pth": _noise(5_000, 3), "bigvgan_generator.pth": _noise(7_000, 4), "README.md": b"# 1.5\n"}


REPOS = {
    "IndexTeam/IndexTTS-1.5": _release_15(),
    "IndexTeam/Index-TTS": {name: _noise(2_000, 10 + i) for i, name in
                            enumerate(("bpe.model", "gpt.pth", "dvae.pth", "bigvgan_generator.pth"))},
    "IndexTeam/IndexTTS-2.5": {"config.yaml": b"version: 2.5\n", "codec.pth": _noise(4_000, 20),
                               "gpt.pth": _noise(6_000, 21), "qwen0.6bemo4-merge/config.json": b"{}\n",
                               ".gitattributes": b"*.pth filter=lfs\n"},
    "facebook/w2v-bert-2.0": {"config.json": b"{}\n", "preprocessor_config.json": b"{}\n",
                              "model.safetensors": _noise(3_000, 30), "conformer_shaw.pt": _noise(9_000, 31)},
    "funasr/campplus": {"campplus_cn_common.bin": _noise(2_500, 40), "README.md": b"campplus\n"},
    "nvidia/bigvgan_v2_22khz_80band_256x": {"config.json": b"{}\n", "bigvgan_generator.pt": _noise(3_500, 50)},
}


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """An empty hub cache under tmp_path, online mode; the endpoint is set by the test."""
    cache = tmp_path / "hub-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # recorded, so a "1" the code sets is undone afterwards
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return cache


@pytest.fixture
def hub(hub_env, monkeypatch):
    with FakeHub(REPOS) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


def _marker_files(folder) -> dict[str, dict]:
    marker = json.loads((folder / MARKER).read_text())
    assert marker["complete"]
    return {entry["path"]: entry for entry in marker["files"]}


def test_2_5_lands_in_the_documented_layout_verified_and_a_rerun_downloads_nothing(hub, tmp_path, capsys):
    folder = tmp_path / "v25"
    assert main(["2.5", "--dir", str(folder)]) == 0
    expected = {"config.yaml": ("IndexTeam/IndexTTS-2.5", "config.yaml"),
                "codec.pth": ("IndexTeam/IndexTTS-2.5", "codec.pth"),
                "gpt.pth": ("IndexTeam/IndexTTS-2.5", "gpt.pth"),
                "qwen0.6bemo4-merge/config.json": ("IndexTeam/IndexTTS-2.5", "qwen0.6bemo4-merge/config.json"),
                "hf_cache/w2v-bert-2.0/config.json": ("facebook/w2v-bert-2.0", "config.json"),
                "hf_cache/w2v-bert-2.0/preprocessor_config.json": ("facebook/w2v-bert-2.0", "preprocessor_config.json"),
                "hf_cache/w2v-bert-2.0/model.safetensors": ("facebook/w2v-bert-2.0", "model.safetensors"),
                "hf_cache/campplus_cn_common.bin": ("funasr/campplus", "campplus_cn_common.bin"),
                "hf_cache/bigvgan/config.json": ("nvidia/bigvgan_v2_22khz_80band_256x", "config.json"),
                "hf_cache/bigvgan/bigvgan_generator.pt": ("nvidia/bigvgan_v2_22khz_80band_256x", "bigvgan_generator.pt")}
    written = sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    assert written == sorted([*expected, MARKER])  # no .gitattributes, no conformer_shaw.pt, no staging
    for local, (repo, name) in expected.items():
        assert (folder / local).read_bytes() == REPOS[repo][name], local
    marker = _marker_files(folder)
    assert marker["codec.pth"]["sha256"] == hub.etag("IndexTeam/IndexTTS-2.5", "codec.pth")
    assert marker["config.yaml"]["git-sha1"] == hub.etag("IndexTeam/IndexTTS-2.5", "config.yaml")
    assert "IndexTTS-2.5 is complete" in capsys.readouterr().out

    hub.requests.clear()
    assert main(["2.5", "--dir", str(folder)]) == 0
    assert [path for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path] == []
    assert "kept gpt.pth (verified)" in capsys.readouterr().out


def test_1_0_gets_the_packaged_config_and_its_release_files(hub, tmp_path):
    folder = tmp_path / "v10"
    assert main(["1.0", "--dir", str(folder)]) == 0
    assert (folder / "config.yaml").read_bytes() == RELEASE_CONFIGS["IndexTTS-1.0"].read_bytes()
    for name, data in REPOS["IndexTeam/Index-TTS"].items():
        assert (folder / name).read_bytes() == data
    assert _marker_files(folder)["config.yaml"]["repo"] == "index-tts-lora"


def test_a_killed_download_continues_where_it_stopped(hub, tmp_path):
    folder = tmp_path / "v15"
    hub.stall_at[("IndexTeam/IndexTTS-1.5", "gpt.pth")] = STALL_AT
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": hub.endpoint,
           "HF_HUB_CACHE": constants.HF_HUB_CACHE, "HF_HUB_OFFLINE": "0"}
    child = subprocess.Popen([sys.executable, "-m", "indextts.cli.download", "1.5", "--dir", str(folder)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = folder / STAGING / "gpt.pth.part"
    try:
        assert hub.stalled.wait(60)
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size >= constants.DOWNLOAD_CHUNK_SIZE) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        hub.release.set()
    kept = partial.stat().st_size
    assert constants.DOWNLOAD_CHUNK_SIZE <= kept <= STALL_AT
    assert not (folder / MARKER).exists() and not (folder / "config.yaml").exists()  # does not look complete

    hub.requests.clear()
    assert main(["1.5", "--dir", str(folder)]) == 0
    assert hub.gets("IndexTeam/IndexTTS-1.5", "gpt.pth") == [f"bytes={kept}-"]  # the rest only
    for finished in ("bpe.model", "dvae.pth", "bigvgan_generator.pth"):  # done before the kill: kept
        assert hub.gets("IndexTeam/IndexTTS-1.5", finished) == []
    for name in ("config.yaml", "bpe.model", "gpt.pth", "dvae.pth", "bigvgan_generator.pth"):
        assert (folder / name).read_bytes() == REPOS["IndexTeam/IndexTTS-1.5"][name]
    assert not (folder / "README.md").exists() and not (folder / STAGING).exists()


def test_a_corrupted_file_is_refused_and_a_rerun_fetches_it_anew(hub, tmp_path, capsys):
    folder = tmp_path / "v15"
    hub.corrupted.add(("IndexTeam/IndexTTS-1.5", "gpt.pth"))
    assert main(["1.5", "--dir", str(folder)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: The download from ") and "Traceback" not in err
    assert "IndexTeam/IndexTTS-1.5/gpt.pth is not the released file (sha256 " in err
    assert not (folder / "gpt.pth").exists() and not (folder / MARKER).exists()
    assert not (folder / "config.yaml").exists() and not (folder / STAGING / "gpt.pth.part").exists()

    hub.corrupted.clear()
    hub.requests.clear()
    assert main(["1.5", "--dir", str(folder)]) == 0
    assert len(hub.gets("IndexTeam/IndexTTS-1.5", "gpt.pth")) == 1
    assert hub.gets("IndexTeam/IndexTTS-1.5", "bpe.model") == []
    assert (folder / "gpt.pth").read_bytes() == REPOS["IndexTeam/IndexTTS-1.5"]["gpt.pth"]


def test_a_failed_download_says_so_and_keeps_the_finished_files(hub, tmp_path, capsys):
    folder = tmp_path / "v15"
    hub.failing.add(("IndexTeam/IndexTTS-1.5", "gpt.pth"))
    assert main(["1.5", "--dir", str(folder)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error: The download of IndexTeam/IndexTTS-1.5/gpt.pth stopped: ") and "Traceback" not in err
    assert "run the same command again to continue from there" in err
    assert (folder / "bpe.model").read_bytes() == REPOS["IndexTeam/IndexTTS-1.5"]["bpe.model"]
    assert not (folder / MARKER).exists() and not (folder / "config.yaml").exists()


def test_a_damaged_folder_file_is_replaced(hub, tmp_path):
    folder = tmp_path / "v15"
    assert main(["1.5", "--dir", str(folder)]) == 0
    (folder / "dvae.pth").write_bytes(b"\0" * 5_000)  # same size, other bytes: only the hash tells
    hub.requests.clear()
    assert main(["1.5", "--dir", str(folder)]) == 0
    assert (folder / "dvae.pth").read_bytes() == REPOS["IndexTeam/IndexTTS-1.5"]["dvae.pth"]
    assert len(hub.gets("IndexTeam/IndexTTS-1.5", "dvae.pth")) == 1


def test_differing_files_it_did_not_write_are_refused_and_left_alone(hub, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "gpt.pth").write_bytes(b"my own weights")
    assert main(["1.5", "--dir", str(folder)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "already holds files that differ from the release and that `indextts download` did not write: " \
           "gpt.pth (14 bytes instead of" in err and "Nothing was changed" in err and "Traceback" not in err
    assert [path.name for path in folder.iterdir()] == ["gpt.pth"]
    assert (folder / "gpt.pth").read_bytes() == b"my own weights"


def test_a_listed_path_outside_the_folder_is_refused(hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(hub.repos["IndexTeam/IndexTTS-2.5"], "../escape.pth", b"x")
    assert main(["2.5", "--dir", str(tmp_path / "v25")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "lists ../escape.pth, which would land outside the release folder" in err and "Traceback" not in err
    assert not (tmp_path / "escape.pth").exists() and not (tmp_path / "v25").exists()


def test_offline_mode_fills_the_folder_from_the_hub_cache_without_a_request(hub, tmp_path, monkeypatch):
    for name in ("config.yaml", "bpe.model", "gpt.pth", "dvae.pth", "bigvgan_generator.pth"):
        hf_hub_download("IndexTeam/IndexTTS-1.5", name, endpoint=hub.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    folder = tmp_path / "offline15"
    assert main(["1.5", "--dir", str(folder)]) == 0
    assert hub.requests == []
    for name in ("config.yaml", "bpe.model", "gpt.pth", "dvae.pth", "bigvgan_generator.pth"):
        assert (folder / name).read_bytes() == REPOS["IndexTeam/IndexTTS-1.5"][name]
    marker = _marker_files(folder)
    assert marker["gpt.pth"]["sha256"] == hub.etag("IndexTeam/IndexTTS-1.5", "gpt.pth")  # checked against the blob
    assert marker["gpt.pth"]["revision"] == hub.commits["IndexTeam/IndexTTS-1.5"]


def test_files_in_the_hub_cache_are_copied_not_downloaded_and_a_damaged_one_is_refused(hub, tmp_path, capsys):
    cached = hf_hub_download("IndexTeam/IndexTTS-1.5", "gpt.pth", endpoint=hub.endpoint)
    hub.requests.clear()
    assert main(["1.5", "--dir", str(tmp_path / "a")]) == 0
    assert hub.gets("IndexTeam/IndexTTS-1.5", "gpt.pth") == []
    assert len(hub.gets("IndexTeam/IndexTTS-1.5", "bpe.model")) == 1
    assert (tmp_path / "a" / "gpt.pth").read_bytes() == REPOS["IndexTeam/IndexTTS-1.5"]["gpt.pth"]

    blob = os.path.realpath(cached)
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as handle:
        handle.write(b"\0" * 16)  # damaged in place: same size
    assert main(["1.5", "--dir", str(tmp_path / "b")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"error: The copy in {cached} of IndexTeam/IndexTTS-1.5/gpt.pth is not the released file (sha256 " in err
    assert f"delete the damaged copy {blob} first" in err and "Traceback" not in err
    assert not (tmp_path / "b" / "gpt.pth").exists() and not (tmp_path / "b" / MARKER).exists()


def test_offline_mode_without_the_release_in_the_cache_says_what_to_do(hub_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "none"
    assert main(["2", "--dir", str(folder)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "offline mode (HF_HUB_OFFLINE)" in err and "'IndexTeam/IndexTTS-2' is not in its cache" in err
    assert "Nothing was written" in err and "Traceback" not in err
    assert not folder.exists()


def test_an_unreachable_hub_fails_within_5_seconds_naming_the_network(hub_env, tmp_path, monkeypatch, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    folder = tmp_path / "none"
    started = time.monotonic()
    assert main(["1.5", "--dir", str(folder)]) == EXIT_USER_ERROR
    assert time.monotonic() - started < 5  # the bound
    err = capsys.readouterr().err
    assert f"cannot reach the model hub (http://127.0.0.1:{port})" in err
    assert "Check the network and HF_ENDPOINT" in err and "Traceback" not in err
    assert not folder.exists()


@pytest.mark.parametrize("argv, message", [
    (["3"], "'3' is not a release that `indextts download` knows. The releases are: 1.5 (IndexTTS-1.5)"),
    (["1.5", "--revision", "v9"], "did not list IndexTeam/IndexTTS-1.5 at revision v9"),
])
def test_a_bad_version_or_revision_is_refused_before_anything_is_written(hub, tmp_path, capsys, argv, message):
    folder = tmp_path / "out"
    assert main([*argv, "--dir", str(folder)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not folder.exists()
