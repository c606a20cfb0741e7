"""Hub ids on a machine without network fail in seconds, naming the network (indextts/hub.py)."""

from __future__ import annotations

import socket
import time

import pytest
from huggingface_hub import constants

from indextts.errors import IndexTTSError
from indextts.asr.backends import load_asr
from indextts.evaluation.speaker import load_speaker_encoder
from indextts.hub import hub_reachable, prepare_hub_source


@pytest.fixture
def unreachable_hub(monkeypatch, tmp_path):
    """An endpoint on a local port nobody listens on, an empty hub cache, online mode to begin with."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # recorded, so the "1" the code sets is undone afterwards
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return port


def test_a_closed_endpoint_is_unreachable_and_a_listening_one_reachable(unreachable_hub):
    assert not hub_reachable(f"http://127.0.0.1:{unreachable_hub}")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert hub_reachable(f"http://127.0.0.1:{server.getsockname()[1]}")


@pytest.mark.parametrize("name", [".", "absent", "~/absent"])
def test_paths_never_probe_the_hub_even_when_missing(tmp_path, monkeypatch, name):
    monkeypatch.setattr("indextts.hub.hub_reachable", lambda *a, **k: pytest.fail("probed the hub"))
    source = str(tmp_path / name) if name != "~/absent" else name
    assert prepare_hub_source(source) == ""


@pytest.mark.parametrize("load", [lambda: load_asr("whisper:openai/whisper-tiny"),
                                  lambda: load_speaker_encoder("wavlm:microsoft/wavlm-base-plus-sv")],
                         ids=["whisper", "wavlm"])
def test_a_hub_model_without_network_fails_fast_naming_the_network(unreachable_hub, load):
    import transformers.models.wavlm, transformers.models.whisper  # noqa: F401  (import time is not the network's)
    started = time.monotonic()
    with pytest.raises(IndexTTSError, match="cannot reach the model hub .* not in the hub cache"):
        load()
    assert time.monotonic() - started < 5  # the bound for an offline failure
    assert constants.HF_HUB_OFFLINE  # cached models would still load, nothing retries


def test_a_model_is_available_from_the_cache_or_a_hub_that_has_it(unreachable_hub, tmp_path, monkeypatch):
    from fake_hub import FakeHub

    from indextts.hub import model_available

    assert not model_available("org/whisper")  # nobody listens: offline within the probe's seconds
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with FakeHub({"org/whisper": {"config.json": b"{}"}}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert model_available("org/whisper")
        assert not model_available("org/absent")  # the hub answers, but has no such model
