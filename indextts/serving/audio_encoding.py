"""Audio for HTTP responses: the speed change and OpenAI's six encodings, whole or streamed.

All formats carry mono audio at the model's sample rate (24 kHz for the releases), from 16-bit
samples, so ``pcm`` is exactly what OpenAI's ``audio/speech`` sends for ``response_format=pcm``.

Whole files: wav, flac, mp3 and opus (in Ogg) are written by libsndfile through soundfile (its
wheels carry libsndfile 1.1 or newer, which writes MP3 and Opus; an older system libsndfile leaves
them to PyAV); aac (ADTS) by FFmpeg through PyAV.

Streams: ``pcm`` is raw samples; ``wav`` starts with a header whose RIFF and data sizes are
0xFFFFFFFF ("length unknown"), which ffmpeg, browsers and libsndfile read up to the end of the
stream; mp3, opus (Ogg), aac (ADTS) and flac are encoded by PyAV into a write-only sink, so the
muxers write a stream that never seeks back (flac's header then leaves the length unknown).
"""

from __future__ import annotations

import functools
import io
import struct

import numpy as np
import soundfile

from indextts.inference.synthesis import to_pcm16

AUDIO_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
STREAM_FORMATS = AUDIO_FORMATS
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "aac": "audio/aac", "flac": "audio/flac",
               "wav": "audio/wav", "pcm": "audio/pcm"}
MIN_SPEED, MAX_SPEED = 0.25, 4.0
UNKNOWN_SIZE = 0xFFFFFFFF
_SOUNDFILE_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"),
                      "opus": ("OGG", "OPUS")}
_PYAV_FORMATS = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac"),
                 "flac": ("flac", "flac")}
"""response_format -> (FFmpeg muxer, encoder)."""
_BIT_RATES = {"mp3": 64_000, "opus": 32_000, "aac": 64_000}
"""Mono speech at 24 kHz: transparent at these rates, half of what FFmpeg picks for music."""


def change_speed(waveform: np.ndarray, speed: float) -> np.ndarray:
    """Play ``waveform`` (S,) ``speed`` times faster with its pitch kept: (round(S / speed),) float32.

    A phase-vocoder time stretch (librosa): the voice keeps its pitch, at the cost of a slightly
    smeared, reverberant sound that grows with the distance from 1.0. The first call imports
    librosa and compiles its kernels (a few seconds); 1.0 returns the waveform unchanged.
    """
    if speed == 1.0 or waveform.size == 0:
        return waveform
    import librosa  # heavy (scipy, numba); only requests that change the speed need it

    return librosa.effects.time_stretch(np.asarray(waveform, dtype=np.float32), rate=speed).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _soundfile_writes(audio_format: str) -> bool:
    """Whether the libsndfile that soundfile loaded writes ``audio_format`` (MP3 and Opus need 1.1+)."""
    if audio_format not in _SOUNDFILE_FORMATS:
        return False
    container, subtype = _SOUNDFILE_FORMATS[audio_format]
    return container in soundfile.available_formats() and subtype in soundfile.available_subtypes(container)


def encode_audio(waveform: np.ndarray, sample_rate: int, audio_format: str) -> bytes:
    """The whole waveform (S,) as a complete file in ``audio_format`` (one of ``AUDIO_FORMATS``)."""
    samples = to_pcm16(waveform)
    if audio_format == "pcm":
        return samples.astype("<i2").tobytes()
    if not _soundfile_writes(audio_format):
        encoder = ContainerStream(audio_format, sample_rate)
        return encoder.feed(samples) + encoder.finish()
    container, subtype = _SOUNDFILE_FORMATS[audio_format]
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format=container, subtype=subtype)
    return buffer.getvalue()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 44-byte mono 16-bit PCM wav header whose sizes say "unknown length" (0xFFFFFFFF)."""
    block_align = 2
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * block_align, block_align, 16)
    return (b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", UNKNOWN_SIZE))


class PCMStream:
    """Streamed raw little-endian int16 samples; the base of the other stream encoders."""

    def __init__(self, audio_format: str, sample_rate: int):
        self.audio_format, self.sample_rate = audio_format, sample_rate

    def feed(self, samples: np.ndarray) -> bytes:
        """The bytes to send for the next int16 samples (S,)."""
        return samples.astype("<i2").tobytes()

    def finish(self) -> bytes:
        """The bytes that end the stream."""
        return b""


class WavStream(PCMStream):
    """A wav whose header says "unknown length", then raw samples."""

    def __init__(self, audio_format: str, sample_rate: int):
        super().__init__(audio_format, sample_rate)
        self._header = streaming_wav_header(sample_rate)

    def feed(self, samples: np.ndarray) -> bytes:
        header, self._header = self._header, b""
        return header + super().feed(samples)


class _Sink:
    """Write-only file for PyAV: without seek, FFmpeg's muxers write a pure stream."""

    def __init__(self):
        self._parts: list[bytes] = []

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class ContainerStream(PCMStream):
    """mp3, opus (Ogg), aac (ADTS) or flac encoded by PyAV as the samples come; each call returns the
    bytes the muxer has written so far (encoders hold back up to a frame until more samples or the end)."""

    def __init__(self, audio_format: str, sample_rate: int):
        import av  # the [serve] extra; only compressed responses need it

        super().__init__(audio_format, sample_rate)
        muxer, codec = _PYAV_FORMATS[audio_format]
        self._sink = _Sink()
        self._container = av.open(self._sink, mode="w", format=muxer)
        self._stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
        if audio_format in _BIT_RATES:
            self._stream.bit_rate = _BIT_RATES[audio_format]
        self._frame_type = av.AudioFrame

    def _mux(self, frame) -> bytes:
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def feed(self, samples: np.ndarray) -> bytes:
        if samples.size == 0:
            return b""
        frame = self._frame_type.from_ndarray(np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
                                              format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        return self._mux(frame)

    def finish(self) -> bytes:
        flushed = self._mux(None)
        self._container.close()
        return flushed + self._sink.take()


def stream_encoder(audio_format: str, sample_rate: int) -> PCMStream:
    """The encoder that streams ``audio_format`` (one of ``STREAM_FORMATS``) at ``sample_rate``."""
    kind = {"pcm": PCMStream, "wav": WavStream}.get(audio_format, ContainerStream)
    return kind(audio_format, sample_rate)
