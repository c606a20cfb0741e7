"""Audio input: read a file as mono 24 kHz samples, and the log-mel features every model uses.

The log-mel matches the reference (torchaudio ``MelSpectrogram`` with power 1, HTK mel filters
without area normalisation, then ``log(clamp(x, 1e-7))``) but is computed with ``torch.stft``
so that torchaudio is not needed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch
from torch import nn

from indextts.errors import AudioError
from indextts.checkpoint_folder.layout import CONFIG_FILENAME

SAMPLE_RATE = 24000
LOG_CLAMP = 1e-7


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read an audio file as a float32 waveform (S,) at ``sample_rate``, mono, clipped to [-1, 1].

    Multi-channel files are averaged to mono; other sample rates are resampled with soxr.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"Audio file {path} does not exist. Check the path (relative paths are "
                         "resolved from the current directory).")
    try:
        samples, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as error:
        reason = str(error).strip().rstrip(".")  # libsndfile's messages end with a full stop
        raise AudioError(f"Cannot read the audio file {path}: {reason}. Convert it to WAV or FLAC "
                         "(for example with ffmpeg) and try again.") from error
    if samples.shape[0] == 0:
        raise AudioError(f"The audio file {path} holds no samples. Use a recording with speech in it.")
    mono = resample(samples.mean(axis=1), file_rate, sample_rate)
    return torch.from_numpy(np.clip(mono, -1.0, 1.0).astype(np.float32, copy=False))


def require_speech(audio: torch.Tensor, sample_rate: int, path: str | Path) -> None:
    """AudioError unless a reference recording (S,) holds speech by extraction's rule: at least
    ``MIN_SPEECH_SECONDS`` long and a peak above ``SILENCE_PEAK_DBFS``."""
    seconds = audio.numel() / sample_rate
    if seconds < MIN_SPEECH_SECONDS:
        raise AudioError(f"The reference audio {path} is too short ({seconds:.2f} s < {MIN_SPEECH_SECONDS} s). "
                         "Use a recording of a few seconds of clear speech.")
    if is_silent(audio):
        raise AudioError(f"The reference audio {path} is silent (peak {peak_dbfs(audio):.1f} dBFS < "
                         f"{SILENCE_PEAK_DBFS} dBFS). Use a recording of clear speech at a normal level.")


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Mono audio (S,) at ``from_rate`` as float32 at ``to_rate`` (soxr, HQ); the same samples when the rates match."""
    if from_rate == to_rate:
        return audio
    return soxr.resample(audio, from_rate, to_rate, quality="HQ").astype(np.float32)


def _hz_to_mel(frequency: float) -> float:
    return 2595.0 * math.log10(1.0 + frequency / 700.0)


def htk_mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int,
                       sample_rate: int) -> torch.Tensor:
    """Triangular HTK-scale mel filters without area normalisation, (n_freqs, n_mels)."""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    mel_points = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2)
    hz_points = 700.0 * (10.0 ** (mel_points / 2595.0) - 1.0)
    widths = hz_points[1:] - hz_points[:-1]
    slopes = hz_points.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class MelSpectrogramFeatures(nn.Module):
    """Log-mel spectrogram: waveform (B, S) or (S,) -> (B, n_mels, S // hop + 1).

    STFT with a periodic Hann window, centred with reflect padding, magnitude (power 1), HTK mel
    filters from ``mel_fmin`` to ``mel_fmax`` (Nyquist when None), natural log clamped at 1e-7.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_fft: int = 1024, hop_length: int = 256,
                 win_length: int | None = None, n_mels: int = 100, mel_fmin: float = 0.0,
                 mel_fmax: float | None = None):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length or n_fft
        f_max = float(sample_rate // 2) if mel_fmax is None else float(mel_fmax)
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer(
            "mel_filters",
            htk_mel_filterbank(n_fft // 2 + 1, float(mel_fmin), f_max, n_mels, sample_rate),
            persistent=False,
        )

    @classmethod
    def from_config(cls, mel_cfg) -> "MelSpectrogramFeatures":
        """Build from a config's ``dataset.mel`` section (keys as in the release config.yaml)."""
        if mel_cfg.get("normalize", False):
            raise AudioError("dataset.mel.normalize: true is not supported; the IndexTTS release "
                             f"configs use false. Set it to false in {CONFIG_FILENAME}.")
        return cls(
            sample_rate=mel_cfg["sample_rate"], n_fft=mel_cfg["n_fft"],
            hop_length=mel_cfg["hop_length"], win_length=mel_cfg.get("win_length"),
            n_mels=mel_cfg["n_mels"], mel_fmin=mel_cfg.get("mel_fmin", 0),
            mel_fmax=mel_cfg.get("mel_fmax"),
        )

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Waveform (B, S) or (S,) -> log-mel (B, n_mels, F), F = S // hop + 1, in float32."""
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        spectrum = torch.stft(
            audio.float(), n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
            window=self.window, center=True, pad_mode="reflect", normalized=False, onesided=True,
            return_complex=True,
        ).abs()  # (B, n_fft // 2 + 1, F)
        mel = torch.matmul(spectrum.transpose(1, 2), self.mel_filters).transpose(1, 2)
        return torch.log(torch.clamp(mel, min=LOG_CLAMP))


SILENCE_PEAK_DBFS = -60.0
"""Audio whose peak stays below this level holds no usable speech: extraction skips such an
utterance and inference refuses it as a reference."""
MIN_SPEECH_SECONDS = 0.5
"""The shortest recording that is used as speech (extraction's --min_duration default)."""


def peak_dbfs(audio: torch.Tensor) -> float:
    """Peak level of a waveform (S,) in dB relative to full scale (-inf for digital silence)."""
    peak = float(audio.abs().max()) if audio.numel() else 0.0
    return -math.inf if peak == 0 else 20 * math.log10(peak)


def is_silent(audio: torch.Tensor) -> bool:
    """True when the peak of ``audio`` (S,) is below ``SILENCE_PEAK_DBFS``."""
    return peak_dbfs(audio) < SILENCE_PEAK_DBFS
