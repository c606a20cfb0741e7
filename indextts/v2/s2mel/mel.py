"""The 22.05 kHz, 80-band log-mel of IndexTTS-2 (S2Mel's target and prompt, BigVGAN v2's input).

As the reference's ``mel_spectrogram(center=False)``: reflect-pad (n_fft - hop) / 2 samples on each
side, STFT with a periodic Hann window and no centring, magnitude sqrt(re^2 + im^2 + 1e-9), Slaney
mel filters with Slaney area normalisation (librosa's defaults), then log(clamp(x, 1e-5)).
F = S // hop frames for S samples. The upper filter edge follows infer_v2: the Nyquist frequency when
the config's ``fmax`` is "None" (or null), else 8000 Hz, so a config giving another number is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from indextts.errors import ConfigError

MAGNITUDE_FLOOR = 1e-9
LOG_FLOOR = 1e-5
REFERENCE_FMAX = 8000.0
"""The only upper edge infer_v2 uses besides Nyquist."""
SLANEY_LINEAR_SLOPE = 200.0 / 3
"""Hz per mel below 1 kHz on the Slaney scale; above it the scale is logarithmic (27 mels per 6.4x)."""
SLANEY_BREAK_HZ = 1000.0
SLANEY_LOG_STEP = math.log(6.4) / 27.0


def _hz_to_slaney_mel(hz: torch.Tensor) -> torch.Tensor:
    linear = hz / SLANEY_LINEAR_SLOPE
    break_mel = SLANEY_BREAK_HZ / SLANEY_LINEAR_SLOPE
    logarithmic = break_mel + torch.log(hz.clamp(min=SLANEY_BREAK_HZ) / SLANEY_BREAK_HZ) / SLANEY_LOG_STEP
    return torch.where(hz >= SLANEY_BREAK_HZ, logarithmic, linear)


def _slaney_mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    break_mel = SLANEY_BREAK_HZ / SLANEY_LINEAR_SLOPE
    logarithmic = SLANEY_BREAK_HZ * torch.exp(SLANEY_LOG_STEP * (mel - break_mel))
    return torch.where(mel >= break_mel, logarithmic, mel * SLANEY_LINEAR_SLOPE)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular Slaney-scale filters, each scaled to unit area, (n_mels, n_fft // 2 + 1) float32.

    Equals ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (computed in float64 as librosa does).
    """
    bin_freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = torch.tensor([f_min, f_max], dtype=torch.float64)
    mel_edges = _hz_to_slaney_mel(edges)
    band_mels = torch.linspace(float(mel_edges[0]), float(mel_edges[1]), n_mels + 2, dtype=torch.float64)
    band_hz = _slaney_mel_to_hz(band_mels)
    widths = band_hz[1:] - band_hz[:-1]
    offsets = band_hz.unsqueeze(1) - bin_freqs.unsqueeze(0)  # (n_mels + 2, n_freqs)
    rising = -offsets[:-2] / widths[:-1, None]
    falling = offsets[2:] / widths[1:, None]
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    area_norm = 2.0 / (band_hz[2:] - band_hz[:-2])
    return (filters * area_norm[:, None]).float()


def reference_fmax(value, sample_rate: int, source: str = "the model config") -> float:
    """infer_v2's upper mel edge for the config value ``fmax``: Nyquist for "None"/null, 8000 for 8000."""
    if value is None or value == "None":
        return sample_rate / 2
    if isinstance(value, int | float) and float(value) == REFERENCE_FMAX:
        return REFERENCE_FMAX
    raise ConfigError(
        f"s2mel.preprocess_params.spect_params.fmax is {value!r} in {source}, but the IndexTTS-2 reference "
        f"uses 8000 Hz for any value other than \"None\". Set it to \"None\" (the release value) or 8000.")


class S2MelSpectrogram(nn.Module):
    """Waveform (B, S) or (S,) at ``sample_rate`` -> log-mel (B, n_mels, S // hop); see the module docstring."""

    def __init__(self, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 256, win_length: int = 1024,
                 n_mels: int = 80, f_min: float = 0.0, f_max: float | None = None):
        super().__init__()
        self.sample_rate = sample_rate
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("mel_filters", slaney_mel_filterbank(
            sample_rate, n_fft, n_mels, f_min, sample_rate / 2 if f_max is None else f_max), persistent=False)

    @classmethod
    def from_config(cls, s2mel_section: Mapping, source: str = "the model config") -> "S2MelSpectrogram":
        """Build from the config's ``s2mel`` section (``preprocess_params``, keys as in the release config)."""
        params = s2mel_section["preprocess_params"]
        spect = params["spect_params"]
        return cls(sample_rate=params["sr"], n_fft=spect["n_fft"], hop_length=spect["hop_length"],
                   win_length=spect["win_length"], n_mels=spect["n_mels"], f_min=spect.get("fmin", 0),
                   f_max=reference_fmax(spect.get("fmax", "None"), params["sr"], source))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        side = (self.n_fft - self.hop_length) // 2
        padded = nn.functional.pad(audio.float().unsqueeze(1), (side, side), mode="reflect").squeeze(1)
        spectrum = torch.view_as_real(torch.stft(
            padded, self.n_fft, hop_length=self.hop_length, win_length=self.win_length, window=self.window,
            center=False, normalized=False, onesided=True, return_complex=True))
        magnitude = torch.sqrt(spectrum.pow(2).sum(-1) + MAGNITUDE_FLOOR)  # (B, n_freqs, F)
        return torch.log(torch.clamp(torch.matmul(self.mel_filters, magnitude), min=LOG_FLOOR))
