"""Audio for HTTP responses: the speed change and the wav / pcm / flac encodings.

All formats carry 16-bit mono samples at the model's sample rate (24 kHz for the releases), so
``pcm`` is exactly what OpenAI's ``audio/speech`` sends for ``response_format=pcm``. Streamed wav
starts with a header whose RIFF and data sizes are 0xFFFFFFFF ("length unknown"), which ffmpeg,
browsers and libsndfile read up to the end of the stream.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import soundfile

from indextts.synthesis import to_pcm16

AUDIO_FORMATS = ("wav", "pcm", "flac")
STREAM_FORMATS = ("wav", "pcm")
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac"}
MIN_SPEED, MAX_SPEED = 0.25, 4.0
UNKNOWN_SIZE = 0xFFFFFFFF
_SOUNDFILE_FORMATS = {"wav": "WAV", "flac": "FLAC"}


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


def encode_audio(waveform: np.ndarray, sample_rate: int, audio_format: str) -> bytes:
    """The whole waveform (S,) as a complete file: 16-bit wav or flac, or raw little-endian int16 pcm."""
    samples = to_pcm16(waveform)
    if audio_format == "pcm":
        return samples.astype("<i2").tobytes()
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sample_rate, format=_SOUNDFILE_FORMATS[audio_format], subtype="PCM_16")
    return buffer.getvalue()


def encode_pcm(waveform: np.ndarray) -> bytes:
    """One streamed piece: raw little-endian int16 samples of ``waveform`` (S,)."""
    return to_pcm16(waveform).astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int) -> bytes:
    """A 44-byte mono 16-bit PCM wav header whose sizes say "unknown length" (0xFFFFFFFF)."""
    block_align = 2
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * block_align, block_align, 16)
    return (b"RIFF" + struct.pack("<I", UNKNOWN_SIZE) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", UNKNOWN_SIZE))
