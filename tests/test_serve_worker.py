"""The server's model thread and audio encodings, checked with a scripted synthesiser (no model)."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
from helpers import LOSSY_SLACK_SECONDS, decoded_audio

from indextts.errors import TextError
from indextts.serving.audio_encoding import (
    AUDIO_FORMATS,
    change_speed,
    encode_audio,
    stream_encoder,
    streaming_wav_header,
)
from indextts.inference.synthesis import to_pcm16
from indextts.serving.worker import Job, QueueFullError, SynthesisWorker


@dataclass
class Request:
    text: str
    voice: str
    options: object = None


class ScriptedSynthesizer:
    """Returns each request's text length as audio; 'bad' is a user error, 'crash' a bug; records the batches."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def synthesize_many(self, requests, return_exceptions=False):
        self.gate.wait(10)
        self.batches.append([r.text for r in requests])
        if any(r.text == "crash" for r in requests):
            raise RuntimeError("a bug")
        results = [TextError("nothing speakable") if r.text == "bad" else np.full(len(r.text), 0.5, dtype=np.float32)
                   for r in requests]
        if not return_exceptions and any(isinstance(r, Exception) for r in results):
            raise next(r for r in results if isinstance(r, Exception))
        return results

    def stream(self, text, voice=None, options=None):
        for word in text.split():
            self.gate.wait(10)
            yield word


async def _collect(job: Job, timeout: float = 10.0) -> list[tuple[str, object]]:
    events = []
    while not events or events[-1][0] == "chunk":
        events.append(await asyncio.wait_for(job.events.get(), timeout))
        if not job.stream:
            break
    return events


def _run(coroutine_function, worker: SynthesisWorker):
    worker.start()
    try:
        return asyncio.run(coroutine_function())
    finally:
        worker.stop()


def test_concurrent_jobs_share_one_batch_and_bad_ones_fail_alone():
    synth = ScriptedSynthesizer()
    synth.gate.clear()
    worker = SynthesisWorker(synth, max_queue=8, max_batch=8, batch_wait=0.2)

    async def scenario():
        loop = asyncio.get_running_loop()
        jobs = [Job(Request(text, "v"), False, time.monotonic() + 30, loop) for text in ("aaaa", "bad", "bbbb")]
        for job in jobs:
            worker.submit(job)
        synth.gate.set()
        first = [await _collect(job) for job in jobs]
        jobs = [Job(Request(text, "v"), False, time.monotonic() + 30, loop) for text in ("cccc", "crash")]
        for job in jobs:
            worker.submit(job)
        return first + [await _collect(job) for job in jobs]

    results = _run(scenario, worker)
    assert sorted(synth.batches[0]) == ["aaaa", "bad", "bbbb"]  # one call for all three
    assert sorted(synth.batches[1]) == ["cccc", "crash"]  # a failed call is retried one job at a time
    assert sorted(synth.batches[2:]) == [["cccc"], ["crash"]]
    assert [kind for (kind, _), in results] == ["result", "error", "result", "result", "error"]
    assert isinstance(results[1][0][1], TextError) and len(results[2][0][1]) == 4
    assert isinstance(results[4][0][1], RuntimeError)
    assert worker.batch_sizes() == {1: 2, 2: 1, 3: 1} and worker.admitted == 0


def test_full_queue_refuses_and_expired_jobs_are_skipped():
    synth = ScriptedSynthesizer()
    synth.gate.clear()
    worker = SynthesisWorker(synth, max_queue=2, max_batch=1, batch_wait=0.0)

    async def scenario():
        loop = asyncio.get_running_loop()
        running = Job(Request("first", "v"), False, time.monotonic() + 30, loop)
        expired = Job(Request("late", "v"), False, time.monotonic() + 0.05, loop)
        worker.submit(running)
        worker.submit(expired)
        with pytest.raises(QueueFullError, match="limit is 2"):
            worker.submit(Job(Request("third", "v"), False, time.monotonic() + 30, loop))
        await asyncio.sleep(0.2)
        synth.gate.set()
        return await _collect(running)

    assert _run(scenario, worker)[0][0] == "result"
    assert synth.batches == [["first"]] and worker.admitted == 0


def test_streams_interleave_with_batches():
    synth = ScriptedSynthesizer()
    worker = SynthesisWorker(synth, max_queue=4, max_batch=4, batch_wait=0.0)

    async def scenario():
        loop = asyncio.get_running_loop()
        stream = Job(Request("one two three", "v"), True, time.monotonic() + 30, loop)
        worker.submit(stream)
        first = await asyncio.wait_for(stream.events.get(), 10)
        whole = Job(Request("xyz", "v"), False, time.monotonic() + 30, loop)
        worker.submit(whole)
        return [first, *await _collect(stream)], await _collect(whole)

    stream_events, whole_events = _run(scenario, worker)
    assert stream_events == [("chunk", "one"), ("chunk", "two"), ("chunk", "three"), ("end", None)]
    assert whole_events[0][0] == "result"


def test_encodings_round_trip_with_rate_and_length():
    waveform = np.sin(np.linspace(0, 200, 2400)).astype(np.float32) * 0.5
    for audio_format in ("wav", "flac"):
        decoded, rate = soundfile.read(io.BytesIO(encode_audio(waveform, 24000, audio_format)), dtype="int16")
        assert rate == 24000 and len(decoded) == 2400
        assert np.array_equal(decoded, np.frombuffer(encode_audio(waveform, 24000, "pcm"), "<i2"))
    encoder = stream_encoder("wav", 24000)
    samples = to_pcm16(waveform)
    streamed = encoder.feed(samples[:1000]) + encoder.feed(samples[1000:]) + encoder.finish()
    assert streamed[:44] == streaming_wav_header(24000)
    decoded, rate = soundfile.read(io.BytesIO(streamed), dtype="int16")
    assert rate == 24000 and len(decoded) == 2400


# FFmpeg's container name for each response_format, as av reports it (pinned on purpose).
CONTAINERS = {"mp3": "mp3", "opus": "ogg", "aac": "aac", "flac": "flac", "wav": "wav"}


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("audio_format", [f for f in AUDIO_FORMATS if f != "pcm"])
def test_every_format_decodes_to_the_duration_it_was_given(audio_format, streamed):
    seconds = 1.5
    waveform = (0.5 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * 24000)) / 24000)).astype(np.float32)
    if streamed:
        encoder = stream_encoder(audio_format, 24000)
        pieces = [encoder.feed(to_pcm16(part)) for part in np.array_split(waveform, 3)]
        data = b"".join(pieces) + encoder.finish()
    else:
        data = encode_audio(waveform, 24000, audio_format)
    samples, rate, container = decoded_audio(data)
    assert container == CONTAINERS[audio_format] and rate == (48000 if audio_format == "opus" else 24000)
    slack = 0 if audio_format in ("wav", "flac") else LOSSY_SLACK_SECONDS
    assert abs(samples / rate - seconds) <= slack, (samples, rate)


def test_speed_changes_duration_only():
    waveform = np.sin(2 * np.pi * 220 * np.arange(24000) / 24000).astype(np.float32)
    assert change_speed(waveform, 1.0) is waveform
    faster = change_speed(waveform, 2.0)
    assert len(faster) == 12000
    spectrum = np.abs(np.fft.rfft(faster[2000:10000]))
    assert abs(np.argmax(spectrum) * 24000 / 8000 - 220) < 10  # same pitch, half the time
