"""indextts-serve end to end: a real uvicorn server on 127.0.0.1 with two tiny trained runs (three voices),
exercised over HTTP with httpx."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from helpers import LOSSY_SLACK_SECONDS, REPO_ROOT, decoded_audio, tiny_overrides, write_extracted_data

from indextts.checkpoint_folder import CheckpointFolder
from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.serving.audio_encoding import AUDIO_FORMATS, MEDIA_TYPES
from indextts.serving import (
    CODES_HEADER,
    ServerSettings,
    codes_digest,
    create_app,
    serve_in_background,
)

pytestmark = pytest.mark.slow

# Greedy (reproducible) with short sentences, so most requests hold several sentences.
GREEDY = SynthesisOptions(generation=GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=40),
                          max_text_tokens_per_sentence=12)
VOICES = {"a:alice", "a:bob", "b:carol"}
SPEECH = "/v1/audio/speech"
API_KEY = "test-key"


def _train_tiny_run(model_dir, speaker_info, run_dir):
    """A few LoRA steps on the tiny model (the one place that imports the trainer)."""
    from indextts.training import DEFAULT_CONFIG, load_train_config, run_training

    run_training(load_train_config(DEFAULT_CONFIG, tiny_overrides(model_dir, speaker_info, run_dir, "train.max_steps=2")))
    return run_dir


@pytest.fixture(scope="session")
def served_runs(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """Two tiny runs on one base: run 'a' with alice and bob, run 'b' with carol."""
    root = tmp_path_factory.mktemp("serve_runs")
    dim = int(CheckpointFolder(tiny_model_dir).cfg.gpt.model_dim)
    run_a = _train_tiny_run(tiny_model_dir, write_extracted_data(root / "data_a", dim, ("alice", "bob")), root / "a")
    run_b = _train_tiny_run(tiny_model_dir, write_extracted_data(root / "data_b", dim, ("carol",), seed=1), root / "b")
    return {"a": run_a, "b": run_b}


@pytest.fixture(scope="session")
def served_tts(served_runs, tiny_model_dir) -> IndexTTS:
    """The two runs loaded as three voices."""
    return IndexTTS.from_pretrained(tiny_model_dir, adapters=served_runs, device="cpu")


@pytest.fixture(scope="module")
def server(served_tts):
    settings = ServerSettings(options=GREEDY, expose_codes=True, max_batch=16, batch_wait=0.05, max_input_chars=400,
                              max_emotion_audio_bytes=0)  # the body limit of a server without emotion clips
    with serve_in_background(create_app(served_tts, settings)) as url:
        yield url


class GatedSynthesizer:
    """The real IndexTTS behind two gates: ``open`` holds back whole-text synthesis, and a stream's
    second sentence is synthesised only once the test says it received the first (``first_received``)."""

    def __init__(self, tts: IndexTTS):
        self.tts = tts
        self.open = threading.Event()
        self.open.set()
        self.first_received = threading.Event()
        self.client_had_first: bool | None = None

    @property
    def voices(self):
        return self.tts.voices

    def synthesize_many(self, requests, return_exceptions=False):
        self.open.wait(60)
        return self.tts.synthesize_many(requests, return_exceptions=return_exceptions)

    def stream(self, text, voice=None, options=None):
        chunks = iter(self.tts.stream(text, voice=voice, options=options))
        yield next(chunks)
        self.client_had_first = self.first_received.wait(30)
        yield from chunks


@pytest.fixture(scope="module")
def gated(served_tts):
    synthesizer = GatedSynthesizer(served_tts)
    settings = ServerSettings(options=GREEDY, api_key=API_KEY, max_queue=2, request_timeout=3.0)
    with serve_in_background(create_app(synthesizer, settings)) as url:
        yield url, synthesizer


def _reference(tts: IndexTTS, text: str, voice: str):
    """The same request run alone, in this thread, with greedy decoding."""
    return tts.synthesize(text, voice=voice, options=GREEDY)


def _assert_healthy(url: str, headers: dict | None = None) -> None:
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_voices_and_health(server):
    voices = httpx.get(f"{server}/v1/voices", timeout=10).json()["data"]
    assert {v["id"] for v in voices} == VOICES
    assert {(v["run"], v["speaker"]) for v in voices} == {("a", "alice"), ("a", "bob"), ("b", "carol")}
    assert httpx.get(f"{server}/health", timeout=10).json()["voices"] == 3


@pytest.mark.parametrize("audio_format", ["wav", "pcm", "flac"])
def test_formats_have_the_rate_and_length(server, served_tts, audio_format):
    text = "Hello there, how are you today?"
    response = httpx.post(f"{server}{SPEECH}", json={"model": "indextts", "input": text, "voice": "a:alice",
                                                       "response_format": audio_format}, timeout=60)
    assert response.status_code == 200, response.text
    expected = _reference(served_tts, text, "a:alice")
    assert response.headers["content-type"] == MEDIA_TYPES[audio_format]
    assert response.headers["x-sample-rate"] == str(expected.sample_rate) == "24000"
    if audio_format == "pcm":
        samples = np.frombuffer(response.content, "<i2")
    else:
        samples, rate = soundfile.read(io.BytesIO(response.content), dtype="int16")
        assert rate == expected.sample_rate
    assert len(samples) == len(expected.waveform) > 0
    assert response.headers[CODES_HEADER.lower()] == codes_digest(expected.codes)


def _seconds(data: bytes, audio_format: str) -> float:
    if audio_format == "pcm":
        return len(data) / 2 / 24000
    samples, rate, _ = decoded_audio(data)
    return samples / rate


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("audio_format", AUDIO_FORMATS)
def test_openai_client_gets_every_format(server, served_tts, audio_format, stream):
    """The official openai client against this server: each of OpenAI's six formats, whole and streamed."""
    from openai import OpenAI

    text = "Hello there, how are you today? The quick brown fox jumps."
    client = OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)
    request = {"model": "indextts", "voice": "a:alice", "input": text, "response_format": audio_format}
    if stream:
        with client.audio.speech.with_streaming_response.create(**request, extra_body={"stream": True}) as response:
            data = b"".join(response.iter_bytes())
        expected = sum(len(chunk.waveform) for chunk in served_tts.stream(text, voice="a:alice", options=GREEDY))
    else:
        data = client.audio.speech.create(**request).content
        expected = len(_reference(served_tts, text, "a:alice").waveform)
    slack = LOSSY_SLACK_SECONDS if audio_format in ("mp3", "opus", "aac") else 0.0
    assert expected > 0 and abs(_seconds(data, audio_format) - expected / 24000) <= slack


def test_openai_default_format_is_mp3(server):
    response = httpx.post(f"{server}{SPEECH}", json={"input": "Hello there.", "voice": "a:alice"}, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "audio/mpeg"
    assert decoded_audio(response.content)[2] == "mp3"


def test_speed_changes_the_length(server, served_tts):
    text = "We are testing the training loop."
    response = httpx.post(f"{server}{SPEECH}", json={"input": text, "voice": "b:carol", "speed": 2.0,
                                                       "response_format": "pcm"}, timeout=60)
    assert response.status_code == 200, response.text
    assert len(response.content) // 2 == round(len(_reference(served_tts, text, "b:carol").waveform) / 2)


async def _post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return await asyncio.gather(*(client.post(SPEECH, json=body) for body in bodies))


def test_concurrent_requests_are_batched_and_equal_one_at_a_time(server, served_tts):
    texts = ["Hello there, how are you today?", "The quick brown fox jumps over the lazy dog.",
             "We are testing the training loop. Please read this sentence slowly.", "今天天气很好。"]
    voices = ["a:alice", "bob", "b:carol", "alice"]
    bodies = [{"input": texts[i % 4], "voice": voices[(i // 4 + i) % 4], "response_format": "pcm"} for i in range(16)]
    bad = [{"input": "Hello there.", "voice": "nobody"}, {"input": "x" * 401, "voice": "a:alice"}]
    responses = asyncio.run(_post_all(server, bodies + bad))
    assert [r.status_code for r in responses] == [200] * 16 + [404, 413]
    for body, response in zip(bodies, responses):
        expected = _reference(served_tts, body["input"], body["voice"])
        assert response.headers[CODES_HEADER.lower()] == codes_digest(expected.codes), body
        assert len(response.content) == 2 * len(expected.waveform)
    batch_sizes = httpx.get(f"{server}/health", timeout=10).json()["batch_sizes"]
    assert max(int(size) for size in batch_sizes) > 1  # concurrent requests did share calls


BAD_REQUESTS = [
    ({"input": "Hello.", "voice": "nobody"}, 404, "voice_not_found"),
    ({"input": "Hello.", "voice": "nobody", "stream": True, "response_format": "pcm"}, 404, "voice_not_found"),
    ({"input": "", "voice": "a:alice"}, 422, "invalid_request"),
    ({"input": "   \n", "voice": "a:alice"}, 422, "invalid_request"),
    ({"input": "... !!! ???", "voice": "a:alice"}, 422, "unspeakable_input"),
    ({"input": "x" * 401, "voice": "a:alice"}, 413, "input_too_long"),
    ({"input": "Hello.", "voice": "a:alice", "response_format": "ogg"}, 422, "invalid_request"),
    ({"input": "Hello.", "voice": "a:alice", "speed": 5}, 422, "invalid_request"),
    ({"input": "Hello."}, 422, "invalid_request"),
    ("not json", 422, "invalid_request"),
    ("x" * 20000, 413, "input_too_long"),  # over the body limit: refused before it is read
]


@pytest.mark.parametrize("body,status,code", BAD_REQUESTS, ids=[code + str(i) for i, (_, _, code) in enumerate(BAD_REQUESTS)])
def test_bad_requests_answer_json_errors_and_the_server_stays_healthy(server, body, status, code, caplog):
    caplog.set_level(logging.INFO)
    if isinstance(body, str):
        response = httpx.post(f"{server}{SPEECH}", content=body, headers={"content-type": "application/json"}, timeout=60)
    else:
        response = httpx.post(f"{server}{SPEECH}", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    if status == 404:
        assert set(error["voices"]) == VOICES and "nobody" in error["message"]
        assert "Set the request's 'voice' field" in error["message"] and "--speaker" not in error["message"]
    _assert_healthy(server)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING or record.exc_info]


def test_wav_stream_reads_as_one_file(server, served_tts):
    text = "Hello there, how are you today? The quick brown fox jumps over the lazy dog."
    with httpx.stream("POST", f"{server}{SPEECH}", json={"input": text, "voice": "a:bob", "stream": True,
                                                          "response_format": "wav"}, timeout=60) as response:
        assert response.status_code == 200
        body = response.read()
    samples, rate = soundfile.read(io.BytesIO(body), dtype="int16")
    chunks = list(served_tts.stream(text, voice="a:bob", options=GREEDY))
    assert rate == 24000 and len(samples) == sum(len(chunk.waveform) for chunk in chunks)


def test_stream_sends_the_first_sentence_before_the_last_is_synthesised(gated):
    url, synthesizer = gated
    text = "Hello there, how are you today? The quick brown fox jumps over the lazy dog. We are testing."
    synthesizer.first_received.clear()
    received = []
    with httpx.stream("POST", f"{url}{SPEECH}", json={"input": text, "voice": "a:alice", "stream": True,
                                                       "response_format": "pcm"},
                      headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60) as response:
        assert response.status_code == 200
        for piece in response.iter_bytes():
            received.append(piece)
            synthesizer.first_received.set()
    assert synthesizer.client_had_first is True
    assert len(b"".join(received)) > 0


def test_api_key_is_enforced(gated):
    url, _ = gated
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}):
        response = httpx.get(f"{url}/v1/voices", headers=headers, timeout=10)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"] == "Bearer"
    response = httpx.post(f"{url}{SPEECH}", json={"input": "Hello.", "voice": "a:alice"}, timeout=10)
    assert response.status_code == 401
    response = httpx.post(f"{url}{SPEECH}", content="not json", timeout=10)  # checked before the body
    assert response.status_code == 401
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # probes need no key
    assert httpx.get(f"{url}/v1/voices", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).status_code == 200


async def _wait_for_queue(client: httpx.AsyncClient, count: int) -> None:
    for _ in range(500):
        if (await client.get("/health")).json()["queued"] == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the queue never held {count} request(s)")


async def _fill_queue(url: str, synthesizer: GatedSynthesizer) -> list[httpx.Response]:
    body = {"input": "Hello there, how are you today?", "voice": "a:alice"}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        synthesizer.open.clear()
        first = asyncio.create_task(client.post(SPEECH, json=body))
        await _wait_for_queue(client, 1)
        second = asyncio.create_task(client.post(SPEECH, json=body))
        await _wait_for_queue(client, 2)
        refused = await client.post(SPEECH, json=body)
        timed_out = await asyncio.gather(first, second)  # the gate stays shut past request_timeout
        synthesizer.open.set()
        await _wait_for_queue(client, 0)
        after = await client.post(SPEECH, json=body)
        return [refused, *timed_out, after]


def test_full_queue_answers_503_and_slow_requests_504(gated):
    url, synthesizer = gated
    refused, first, second, after = asyncio.run(_fill_queue(url, synthesizer))
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "server_busy"
    assert refused.headers["retry-after"] == "1"
    assert first.status_code == second.status_code == 504
    assert first.json()["error"]["code"] == "timeout"
    assert after.status_code == 200


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"indextts-serve did not come up: {process.communicate(timeout=30)}")


def test_command_line_server_speaks_each_run(served_runs, tiny_model_dir):
    port = _free_port()
    command = [sys.executable, "-m", "indextts.serving", "--model_dir", str(tiny_model_dir), "--port", str(port),
               "--adapter", str(served_runs["a"]), "--adapter", f"b={served_runs['b']}", "--device", "cpu",
               "--no-do_sample", "--num_beams", "1", "--api_key", API_KEY, "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        voices = httpx.get(f"{url}/v1/voices", headers=headers, timeout=10).json()["data"]
        assert {v["id"] for v in voices} == VOICES
        response = httpx.post(f"{url}{SPEECH}", headers=headers, timeout=120,
                              json={"input": "Hello there, how are you today?", "voice": "carol"})
        assert response.status_code == 200, response.text
        assert soundfile.info(io.BytesIO(response.content)).samplerate == 24000
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
    assert process.returncode in (0, 130) and "Traceback" not in errors, errors


def test_an_ambiguous_voice_answer_names_the_voice_field():
    from indextts.errors import VoiceNotFoundError
    from indextts.serving.http_errors import error_response

    error = VoiceNotFoundError("Voice 'alice' is ambiguous (CLI wording).", "alice", ("a:alice", "b:alice"))
    answer = error_response(error, ["a:alice", "b:alice"])
    message = json.loads(answer.body)["error"]["message"]
    assert answer.status_code == 404 and "a:alice, b:alice" in message and "'voice' field" in message
