"""The FastAPI application: OpenAI-compatible ``POST /v1/audio/speech``, ``GET /v1/voices``, ``GET /health``.

``create_app(synthesizer, settings)`` wires the routes to one SynthesisWorker (the only thread that
touches the model). Handlers only validate, admit, await and encode (encoding runs in a thread
pool), so the event loop never blocks on synthesis.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from indextts.errors import IndexTTSError
from indextts.inference import SpeechRequest, SynthesisOptions
from indextts.serving.audio_encoding import (
    MAX_SPEED,
    MEDIA_TYPES,
    MIN_SPEED,
    change_speed,
    encode_audio,
    stream_encoder,
)
from indextts.inference.synthesis import to_pcm16
from indextts.serving.http_errors import (
    BadRequestError,
    InputTooLongError,
    RequestTimeoutError,
    error_body,
    error_response,
    validation_response,
)
from indextts.serving.emotion_fields import EmotionClip, check_family, decode_clip, request_options
from indextts.serving.router import VoiceRouter
from indextts.serving.worker import Job, SynthesisWorker

CODES_HEADER = "X-IndexTTS-Codes-SHA256"
BODY_BYTES_PER_CHAR = 12  # JSON-escaped, one character outside the BMP takes 12 bytes: \ud83d\ude00
BODY_OVERHEAD_BYTES = 4096  # the other fields


@dataclass
class ServerSettings:
    """How the server admits and runs requests.

    Attributes:
        api_key: when set, every /v1 request needs ``Authorization: Bearer <api_key>``.
        max_queue: most requests admitted at once; more answer 503.
        max_batch, batch_wait: dynamic batching (see SynthesisWorker).
        request_timeout: seconds a request may wait and run before it answers 504 (a stream ends).
        max_input_chars: longest ``input`` accepted (OpenAI's limit is 4096); longer answers 413.
        options: synthesis settings for every request (None: the library defaults).
        expose_codes: add the SHA-256 of the generated codes as a response header (tests, benchmarks).
        max_emotion_audio_bytes: largest emotion clip (decoded ``emotion_audio_base64``) accepted.
    """

    api_key: str | None = None
    max_queue: int = 64
    max_batch: int = 16
    batch_wait: float = 0.01
    request_timeout: float = 300.0
    max_input_chars: int = 4096
    options: SynthesisOptions | None = None
    expose_codes: bool = False
    max_emotion_audio_bytes: int = 4 * 1024 * 1024

    @property
    def max_body_bytes(self) -> int:
        """The longest request body read: the longest input, the largest emotion clip in base64, the rest."""
        return (BODY_BYTES_PER_CHAR * self.max_input_chars + 4 * -(-self.max_emotion_audio_bytes // 3)
                + BODY_OVERHEAD_BYTES)


class SpeechBody(BaseModel):
    """The JSON body of ``POST /v1/audio/speech``: OpenAI's fields (and its default, mp3) plus ``stream``
    and the IndexTTS-2/2.5 extensions (:mod:`indextts.serving.emotion_fields`); others are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = "indextts"
    input: str
    voice: str
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream: bool = False
    emotion_vector: list[float] | None = None
    emotion_alpha: float | None = None
    emotion_text: str | None = None
    emotion_audio_base64: str | None = None
    duration_factor: float | None = None


def codes_digest(codes) -> str:
    """SHA-256 over each sentence's codes (as int64, each prefixed by its length), in sentence order."""
    digest = hashlib.sha256()
    for sentence_codes in codes:
        values = np.asarray(sentence_codes, dtype="<i8").reshape(-1)
        digest.update(len(values).to_bytes(8, "little") + values.tobytes())
    return digest.hexdigest()


def _voice_list(synthesizer: VoiceRouter) -> dict:
    """The body of ``GET /v1/voices``: every voice with its run, speaker and base family."""
    data = [{"id": voice.id, "run": voice.run, "speaker": voice.speaker,
             "family": voice.family.version if voice.family else None} for voice in synthesizer.voices]
    return {"object": "list", "data": data}


def create_app(synthesizer, settings: ServerSettings | None = None) -> FastAPI:
    """The server for ``synthesizer``: a VoiceRouter over several bases, or one IndexTTS (or anything with
    its inference API)."""
    settings = settings or ServerSettings()
    if not isinstance(synthesizer, VoiceRouter):
        synthesizer = VoiceRouter([synthesizer])
    worker = SynthesisWorker(synthesizer, settings.max_queue, settings.max_batch, settings.batch_wait)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        worker.start()
        try:
            yield
        finally:
            await asyncio.to_thread(worker.stop)

    app = FastAPI(title="IndexTTS speech server", lifespan=lifespan)
    app.state.worker = worker

    def voice_ids() -> list[str]:
        return [voice.id for voice in synthesizer.voices]

    app.add_exception_handler(IndexTTSError, lambda _request, error: error_response(error, voice_ids()))
    app.add_exception_handler(RequestValidationError, lambda _request, error: validation_response(error))
    app.add_middleware(_BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.api_key is not None:
        app.add_middleware(_BearerAuth, api_key=settings.api_key)
    app.post("/v1/audio/speech")(_SpeechHandler(synthesizer, worker, settings).handle)

    @app.get("/v1/voices")
    async def voices() -> dict:
        return _voice_list(synthesizer)

    @app.get("/health")
    async def health():
        body = {"status": "ok" if worker.alive else "stopped", "queued": worker.admitted,
                "max_queue": worker.max_queue, "voices": len(synthesizer.voices),
                "batch_sizes": {str(size): calls for size, calls in worker.batch_sizes().items()}}
        return JSONResponse(body, status_code=200 if worker.alive else 503)

    return app


class _BodyLimit:
    """ASGI middleware answering 413 as soon as a request body is over ``max_bytes``.

    A declared Content-Length over the limit is refused before the body is read; a body without one
    (``Transfer-Encoding: chunked``) is counted while the app reads it, and the 413 goes out as soon
    as the count passes the limit: the app sees a disconnect, and nothing past that chunk is read.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> JSONResponse:
        response = error_body(413, f"The request body has {size} bytes; this server reads at most {self.max_bytes}. "
                              "Send shorter input (or a smaller emotion clip).", "input_too_long", "input")
        response.headers["connection"] = "close"  # the server then closes instead of draining the unread rest
        return response

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(str(int(length)))(scope, receive, send)
            return
        received, refused = 0, False

        async def counted_receive():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    await self._too_large(f"more than {self.max_bytes}")(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:  # after the 413, the app's own answer to the disconnect is dropped
                await send(message)

        await self.app(scope, counted_receive, guarded_send)


class _BearerAuth:
    """ASGI middleware: every /v1 request must carry ``Authorization: Bearer <api_key>``, else 401,
    checked before the body is read (so a stranger learns nothing from validation errors)."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.api_key = api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            header = dict(scope.get("headers", ())).get(b"authorization", b"")
            scheme, _, token = header.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                response = error_body(401, "Missing or wrong API key. Send the header 'Authorization: Bearer "
                                      "<key>' with the key the server was started with (--api_key).",
                                      "invalid_api_key", None)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _SpeechHandler:
    """``POST /v1/audio/speech``: validate, admit to the worker, await, encode."""

    def __init__(self, synthesizer, worker: SynthesisWorker, settings: ServerSettings):
        self.synthesizer = synthesizer
        self.worker = worker
        self.settings = settings
        self.options = settings.options or SynthesisOptions()

    async def handle(self, body: SpeechBody) -> Response:
        """Whole audio, or (``stream``) each sentence's audio as soon as it is ready."""
        self._check(body)
        check_family(body, body.voice, self.synthesizer.family_of(body.voice))
        clip = None
        if body.emotion_audio_base64 is not None:
            clip = await asyncio.to_thread(decode_clip, body.emotion_audio_base64,
                                           self.settings.max_emotion_audio_bytes)
        try:
            return await self._answer(body, request_options(self.options, body, clip), clip)
        except BaseException:
            if clip is not None:
                clip.remove()
            raise

    async def _answer(self, body: SpeechBody, options: SynthesisOptions, clip: EmotionClip | None) -> Response:
        """Admit the request and answer its first event; the emotion clip is removed once synthesis has it
        (whole audio, error), or when the stream ends."""
        job = Job(SpeechRequest(body.input, body.voice, options), body.stream,
                  time.monotonic() + self.settings.request_timeout, asyncio.get_running_loop())
        self.worker.submit(job)
        kind, payload = await self._next_event(job)
        if clip is not None and kind != "chunk":
            clip.remove()
        if kind == "error":
            return error_response(payload, [voice.id for voice in self.synthesizer.voices])
        if kind == "end":
            raise BadRequestError("The input produced no audio. Give text with something to say.", "input")
        if body.stream:
            return StreamingResponse(self._stream_body(job, payload, body, clip),
                                     media_type=MEDIA_TYPES[body.response_format],
                                     headers={"X-Sample-Rate": str(payload.sample_rate)})
        return await self._whole(payload, body)

    def _check(self, body: SpeechBody) -> None:
        if not body.input.strip():
            raise BadRequestError("The input is empty. Give the text to speak in 'input'.", "input")
        if len(body.input) > self.settings.max_input_chars:
            raise InputTooLongError(
                f"The input has {len(body.input)} characters; this server accepts at most "
                f"{self.settings.max_input_chars} per request. Split the text into several requests.")

    async def _next_event(self, job: Job) -> tuple[str, object]:
        """The job's next event; RequestTimeoutError (and the job cancelled) once its deadline passes."""
        try:
            return await asyncio.wait_for(job.events.get(), max(job.deadline - time.monotonic(), 0.0))
        except asyncio.TimeoutError:
            job.cancelled.set()
            raise RequestTimeoutError(
                f"The request did not finish within {self.settings.request_timeout:g} s. Retry with a shorter "
                "input, or start the server with a longer --request_timeout.") from None

    async def _whole(self, result, body: SpeechBody) -> Response:
        """The complete file for a SynthesisResult, encoded off the event loop."""
        def encode() -> bytes:
            return encode_audio(change_speed(result.waveform, body.speed), result.sample_rate, body.response_format)

        headers = {"X-Sample-Rate": str(result.sample_rate)}
        if self.settings.expose_codes:
            headers[CODES_HEADER] = codes_digest(result.codes)
        return Response(await asyncio.to_thread(encode), media_type=MEDIA_TYPES[body.response_format],
                        headers=headers)

    async def _stream_body(self, job: Job, first_chunk, body: SpeechBody, clip: EmotionClip | None):
        """The streamed bytes: each sentence's audio in ``response_format`` as it comes, then the end; the
        emotion clip is removed when the stream ends, early or not."""
        encoder = stream_encoder(body.response_format, first_chunk.sample_rate)
        try:
            chunk = first_chunk
            while True:
                encoded = await asyncio.to_thread(
                    lambda c=chunk: encoder.feed(to_pcm16(change_speed(c.waveform, body.speed))))
                if encoded:
                    yield encoded
                kind, chunk = await self._next_event(job)
                if kind != "chunk":
                    break
            ending = await asyncio.to_thread(encoder.finish)
            if ending:
                yield ending
        except RequestTimeoutError:
            pass  # the status line is long gone; the body just ends early
        finally:
            job.cancelled.set()
            if clip is not None:
                clip.remove()
