"""The server's body limit on ``Transfer-Encoding: chunked`` requests (no Content-Length): the body is
counted while it is read and refused with 413 as soon as it passes the limit, the rest left unread."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from indextts.inference import IndexTTS
from indextts.serving import ServerSettings, create_app, serve_in_background
from indextts.serving.app import BODY_BYTES_PER_CHAR, BODY_OVERHEAD_BYTES

SPEECH = "/v1/audio/speech"
CHUNK_BYTES = 1024
SENT_BYTES = 100 * 1024 * 1024  # the reproduction's 100 MB


SOCKET_SLACK_BYTES = 16 * 1024 * 1024
"""What the client may push into socket buffers before it sees the server close (kernel-dependent)."""


@pytest.fixture(scope="module")
def tts(tiny_model_dir) -> IndexTTS:
    return IndexTTS.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture
def app(tts):
    settings = ServerSettings(max_input_chars=100)
    return create_app(tts, settings), settings


def _hundred_megabytes(sent: dict):
    yield b'{"input": "'
    for _ in range(SENT_BYTES // CHUNK_BYTES):
        sent["bytes"] += CHUNK_BYTES
        yield b"x" * CHUNK_BYTES


def _post_chunked(app, chunks) -> tuple[httpx.Response, dict]:
    """POST a generator body through the ASGI app; httpx sends it chunked and pulls each chunk only
    when the app's receive() asks for it, so ``pulled`` is what the app read."""
    pulled = {"chunks": 0, "bytes": 0}

    async def body():
        for chunk in chunks:
            pulled["chunks"] += 1
            pulled["bytes"] += len(chunk)
            yield chunk

    async def post():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post(SPEECH, content=body(), headers={"content-type": "application/json"})

    return asyncio.run(post()), pulled


def test_a_chunked_body_over_the_limit_is_refused_without_reading_the_rest(app):
    asgi, settings = app
    limit = settings.max_body_bytes
    response, pulled = _post_chunked(asgi, _hundred_megabytes({"bytes": 0}))
    sent_headers = response.request.headers
    assert sent_headers["transfer-encoding"] == "chunked" and "content-length" not in sent_headers
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "input_too_long" and f"at most {limit}" in error["message"]
    assert limit < pulled["bytes"] <= limit + CHUNK_BYTES, pulled


def test_the_limit_covers_the_longest_input_and_the_largest_emotion_clip_in_base64():
    without_clips = ServerSettings(max_input_chars=100, max_emotion_audio_bytes=0)
    assert without_clips.max_body_bytes == BODY_BYTES_PER_CHAR * 100 + BODY_OVERHEAD_BYTES
    clip = b"\xff" * 1000
    with_clips = ServerSettings(max_input_chars=100, max_emotion_audio_bytes=len(clip))
    assert with_clips.max_body_bytes - without_clips.max_body_bytes == len(base64.b64encode(clip))


def test_a_chunked_body_under_the_limit_is_read_whole(app):
    asgi, _ = app
    body = b'{"input": "Hello.", "voice": "any", "speed": 99}'  # parsed whole: the speed is out of range
    response, pulled = _post_chunked(asgi, (body[i:i + 8] for i in range(0, len(body), 8)))
    assert pulled["bytes"] == len(body)
    assert response.status_code == 422 and response.json()["error"]["param"] == "speed", response.json()


def test_a_real_server_answers_413_and_closes_instead_of_draining_the_body(app):
    """Through uvicorn over a socket: the 413 says Connection: close, so the client stops sending
    after what the socket buffers took, far from the 100 MB, and the server stays healthy."""
    asgi, _ = app
    sent = {"bytes": 0}
    with serve_in_background(asgi) as url:
        response = httpx.post(f"{url}{SPEECH}", content=_hundred_megabytes(sent), timeout=60)
        assert response.status_code == 413 and response.headers["connection"] == "close"
        assert response.json()["error"]["code"] == "input_too_long"
        assert sent["bytes"] < SOCKET_SLACK_BYTES, sent
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
