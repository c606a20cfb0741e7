"""One model thread behind the HTTP server: a bounded queue, dynamic batching and streaming.

torch modules are not re-entrant, so every call into the synthesiser happens on a single worker
thread; the event loop only admits jobs and awaits their events. Each round the worker
1. takes the jobs that arrived (waiting up to ``batch_wait`` after the first one for more),
2. runs the waiting whole-text jobs as ``synthesize_many`` calls over groups of similar input
   length, so concurrent requests share generation and vocoder batches (a request's own error,
   returned in place of its result, fails only that request), and
3. advances every open stream by one sentence, so streams and batches interleave fairly.

A call that fails unexpectedly is retried one job at a time, so a bug triggered by one request
fails that request alone. Jobs whose client
gave up (timeout, disconnect) are skipped or closed. Events reach the request's event loop through
``call_soon_threadsafe``; the worker never touches asyncio objects directly.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from indextts.errors import IndexTTSError
from indextts.inference.synthesis import length_batches

logger = logging.getLogger(__name__)

MAX_LENGTH_RATIO = 2.0  # longest / shortest input length (characters) in one batch


class QueueFullError(IndexTTSError):
    """The server already holds as many requests as it admits; retry later."""


class WorkerStoppedError(IndexTTSError):
    """The model thread has stopped (server shutting down)."""


@dataclass(eq=False)
class Job:
    """One admitted request: what to say, how to answer, and when its client stops waiting.

    ``request`` is the synthesiser's SpeechRequest; ``events`` receives ("result", SynthesisResult),
    ("chunk", AudioChunk), ("end", None) or ("error", exception) on ``loop``.
    """

    request: Any
    stream: bool
    deadline: float
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def wanted(self) -> bool:
        """False once the client has gone or its time is up."""
        return not self.cancelled.is_set() and time.monotonic() < self.deadline

    def send(self, kind: str, payload: Any = None) -> None:
        """Hand one event to the request's event loop (safe from any thread; dropped if the loop is closed)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, payload))
        except RuntimeError:
            self.cancelled.set()


@dataclass(eq=False)
class _OpenStream:
    job: Job
    chunks: Iterator


class SynthesisWorker:
    """Runs ``synthesizer`` (the IndexTTS inference API) on one thread for many concurrent requests.

    Args:
        synthesizer: object with ``synthesize_many(list[SpeechRequest], return_exceptions=True)`` and
            ``stream(text, voice=..., options=...)``.
        max_queue: most jobs admitted at once (waiting, batched or streaming); more raise QueueFullError.
        max_batch: most whole-text requests in one ``synthesize_many`` call.
        batch_wait: seconds to wait for more requests after the first one of a round.
    """

    def __init__(self, synthesizer, max_queue: int = 64, max_batch: int = 16, batch_wait: float = 0.01):
        self.synthesizer = synthesizer
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._streams: list[_OpenStream] = []
        self._admitted = 0
        self._batch_sizes: Counter[int] = Counter()  # requests per synthesize_many call -> number of calls
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="indextts-synthesis", daemon=True)

    @property
    def admitted(self) -> int:
        """Jobs admitted and not finished yet."""
        return self._admitted

    def batch_sizes(self) -> dict[int, int]:
        """How many ``synthesize_many`` calls ran with each number of requests (retries included)."""
        with self._lock:
            return dict(sorted(self._batch_sizes.items()))

    @property
    def alive(self) -> bool:
        """True while the model thread runs."""
        return self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        """Start the model thread."""
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, let the current model call finish, and fail the jobs still waiting."""
        self._stopping.set()
        self._inbox.put(None)
        self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        """Admit ``job`` or raise QueueFullError (queue full) / WorkerStoppedError (shutting down)."""
        if not self.alive:
            raise WorkerStoppedError("The synthesis worker has stopped; the server is shutting down.")
        with self._lock:
            if self._admitted >= self.max_queue:
                raise QueueFullError(
                    f"The server is busy: {self._admitted} requests are already queued or running "
                    f"(the limit is {self.max_queue}). Retry in a moment.")
            self._admitted += 1
        self._inbox.put(job)

    def _finish(self, job: Job) -> None:
        with self._lock:
            self._admitted -= 1

    def _serve(self) -> None:
        """The model thread's loop (see the module docstring)."""
        while not self._stopping.is_set():
            jobs = self._take_jobs(block=not self._streams)
            waiting = [job for job in jobs if not job.stream]
            for job in jobs:
                if job.stream:
                    self._open_stream(job)
            self._run_batches(waiting)
            self._advance_streams()
        self._fail_remaining()

    def _take_jobs(self, block: bool) -> list[Job]:
        """The jobs that arrived: blocks for the first when ``block``, then gathers for ``batch_wait``."""
        jobs: list[Job] = []
        try:
            first = self._inbox.get(timeout=0.5) if block else self._inbox.get_nowait()
        except queue.Empty:
            return jobs
        if first is None:
            return jobs
        jobs.append(first)
        until = time.monotonic() + self.batch_wait
        while len(jobs) < self.max_batch and not self._stopping.is_set():
            try:
                job = self._inbox.get(timeout=max(until - time.monotonic(), 0.0))
            except queue.Empty:
                break
            if job is None:
                break
            jobs.append(job)
        return jobs

    def _run_batches(self, jobs: list[Job]) -> None:
        """Whole-text jobs in groups of similar input length, shortest group first."""
        jobs = self._drop_unwanted(jobs)
        lengths = [len(job.request.text) for job in jobs]
        for group in length_batches(lengths, self.max_batch, MAX_LENGTH_RATIO):
            self._run_batch([jobs[i] for i in group])

    def _run_batch(self, jobs: list[Job]) -> None:
        """One ``synthesize_many`` call; a request's own error (bad voice or text) fails only that
        request, and an unexpected failure of the call is retried one job at a time."""
        with self._lock:
            self._batch_sizes[len(jobs)] += 1
        try:
            results = self.synthesizer.synthesize_many([job.request for job in jobs], return_exceptions=True)
        except Exception as error:  # noqa: BLE001 - any failure is reported to its own request
            if len(jobs) > 1:
                for job in jobs:
                    self._run_batch([job])
                return
            results = [error]
        for job, result in zip(jobs, results):
            if isinstance(result, Exception):
                self._fail(job, result)
            else:
                job.send("result", result)
                self._finish(job)

    def _open_stream(self, job: Job) -> None:
        if not self._drop_unwanted([job]):
            return
        request = job.request
        try:
            chunks = iter(self.synthesizer.stream(request.text, voice=request.voice, options=request.options))
        except Exception as error:  # noqa: BLE001 - reported to its own request
            self._fail(job, error)
            return
        self._streams.append(_OpenStream(job, chunks))

    def _advance_streams(self) -> None:
        """One sentence more for every open stream; finished, failed and abandoned streams are closed."""
        for stream in list(self._streams):
            if not (stream.job.wanted and self._send_next_chunk(stream)):
                self._close_stream(stream)

    def _send_next_chunk(self, stream: _OpenStream) -> bool:
        """Synthesise and send the stream's next sentence; False when it has ended or failed."""
        try:
            chunk = next(stream.chunks)
        except StopIteration:
            stream.job.send("end")
            return False
        except Exception as error:  # noqa: BLE001 - reported to its own request
            self._report(error)
            stream.job.send("error", error)
            return False
        stream.job.send("chunk", chunk)
        return True

    def _close_stream(self, stream: _OpenStream) -> None:
        self._streams.remove(stream)
        close = getattr(stream.chunks, "close", None)
        if close is not None:
            close()
        self._finish(stream.job)

    def _drop_unwanted(self, jobs: list[Job]) -> list[Job]:
        """The jobs still wanted; the others are finished without work."""
        wanted = []
        for job in jobs:
            if job.wanted:
                wanted.append(job)
            else:
                self._finish(job)
        return wanted

    def _fail(self, job: Job, error: Exception) -> None:
        self._report(error)
        job.send("error", error)
        self._finish(job)

    @staticmethod
    def _report(error: Exception) -> None:
        """User errors are the client's business (one log line); anything else is a bug worth a traceback."""
        if isinstance(error, IndexTTSError):
            logger.info("request failed: %s", error)
        else:
            logger.error("synthesis failed", exc_info=error)

    def _fail_remaining(self) -> None:
        """At shutdown: close open streams and answer every waiting job."""
        for stream in list(self._streams):
            stream.job.send("error", WorkerStoppedError("The server is shutting down."))
            self._close_stream(stream)
        while True:
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._fail(job, WorkerStoppedError("The server is shutting down."))
