"""Kaldi-compatible log mel filter-bank features, as ``torchaudio.compliance.kaldi.fbank`` computes them.

CAMPPlus takes these features (80 bins at 16 kHz). torchaudio pins the torch version it runs with,
so the documented Kaldi algorithm is written here in torch, with torchaudio's defaults: 25 ms frames
every 10 ms that fit entirely in the signal, DC offset removed per frame, pre-emphasis 0.97 (the
first sample repeated before the frame), a Povey window (Hann without the periodic end, to the
power 0.85), zero-padding to a power of two, the power spectrum, triangular filters on the mel scale
1127 ln(1 + f / 700) from 20 Hz to Nyquist, and the log floored at float32's epsilon. No dither.
"""

from __future__ import annotations

import math

import torch

from indextts.errors import AudioError

FRAME_LENGTH_S = 0.025
FRAME_SHIFT_S = 0.010
PREEMPHASIS = 0.97
POVEY_EXPONENT = 0.85
LOW_FREQ_HZ = 20.0


def _kaldi_mel(hz: float) -> float:
    return 1127.0 * math.log(1.0 + hz / 700.0)


def _kaldi_mel_of(hz: torch.Tensor) -> torch.Tensor:
    return 1127.0 * (1.0 + hz / 700.0).log()


def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float) -> torch.Tensor:
    """Triangular filters equally spaced on the Kaldi mel scale, (num_bins, padded_window // 2 + 1).

    The last (Nyquist) column is zero, as in Kaldi. Computed in float32 as torchaudio does.
    """
    fft_bins = padded_window // 2
    low, high = _kaldi_mel(LOW_FREQ_HZ), _kaldi_mel(0.5 * sample_rate)
    delta = (high - low) / (num_bins + 1)
    index = torch.arange(num_bins).unsqueeze(1)
    left, center, right = (low + (index + offset) * delta for offset in (0.0, 1.0, 2.0))
    bin_mels = _kaldi_mel_of(sample_rate / padded_window * torch.arange(fft_bins)).unsqueeze(0)
    rising = (bin_mels - left) / (center - left)
    falling = (right - bin_mels) / (right - center)
    banks = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1))


def kaldi_fbank(waveform: torch.Tensor, sample_rate: int = 16000, num_mel_bins: int = 80) -> torch.Tensor:
    """Log mel filter-bank energies of a mono waveform (S,): (frames, num_mel_bins).

    frames = 1 + (S - 400) // 160 at 16 kHz; AudioError when S is shorter than one frame.
    """
    window = int(sample_rate * FRAME_LENGTH_S)
    shift = int(sample_rate * FRAME_SHIFT_S)
    if waveform.shape[-1] < window:
        raise AudioError(f"The audio is {waveform.shape[-1]} samples long, shorter than one {window}-sample "
                         "filter-bank frame (25 ms). Use a longer speaker reference recording.")
    frames = waveform.float().unfold(0, window, shift)  # (M, window)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - PREEMPHASIS * previous
    frames = frames * torch.hann_window(window, periodic=False, device=frames.device).pow(POVEY_EXPONENT)
    padded_window = 1 << (window - 1).bit_length()
    frames = torch.nn.functional.pad(frames, (0, padded_window - window))
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (M, padded_window // 2 + 1)
    energies = power @ kaldi_mel_banks(num_mel_bins, padded_window, sample_rate).to(power.device).T
    return torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()
