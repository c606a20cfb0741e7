"""w2v-BERT 2.0 input features for a padded batch, in torch: what ``SeamlessM4TFeatureExtractor`` computes.

The extractor works one utterance at a time in numpy (a Python loop over frames); this computes the
same numbers for a whole zero-padded batch at once, on any device: Kaldi-style frames (25 ms every
10 ms, no padding), DC offset removed, pre-emphasis 0.97, Povey window, 512-point power spectrum,
the extractor's own 80 mel filters, log with a floor, per-utterance mean/variance normalisation
over the valid frames (variance with ddof 1), then pairs of frames stacked into 160 values.
The window and filters are taken from the loaded extractor, so its ``preprocessor_config.json``
decides them. As the extractor, the spectrum is rounded to complex64 before its magnitude.
"""

from __future__ import annotations

import torch
from torch import nn

FRAME = 400
HOP = 160
FFT = 512
WAVEFORM_SCALE = 2**15
"""Kaldi compliance: samples as 16-bit integers."""
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
VARIANCE_EPS = 1e-7
PAD_MULTIPLE = 2
"""The extractor pads the frame count to a multiple of 2, then drops what does not fill a stride."""
MIN_FRAMES = 2
"""Normalisation needs two frames (the extractor's ddof-1 variance of one frame is NaN)."""


def frame_counts(num_samples: torch.Tensor) -> torch.Tensor:
    """(B,) sample counts -> (B,) Kaldi frame counts (no padding: the last partial window is dropped)."""
    return 1 + (num_samples - FRAME).div(HOP, rounding_mode="floor")


class SeamlessFeatures(nn.Module):
    """Batched ``SeamlessM4TFeatureExtractor``: (B, S) 16 kHz audio + lengths -> stacked features and mask.

    The window and filters are buffers (not saved), so they follow the module to its device.
    """

    def __init__(self, extractor):
        super().__init__()
        self.register_buffer("window", torch.as_tensor(extractor.window, dtype=torch.float64), persistent=False)
        self.register_buffer("mel_filters", torch.as_tensor(extractor.mel_filters, dtype=torch.float64),
                             persistent=False)
        self.stride = extractor.stride
        self.padding_value = float(extractor.padding_value)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S) waveforms in [-1, 1] -> (B, F, 80) log mel filterbank of every full window."""
        frames = (audio.double() * WAVEFORM_SCALE).unfold(1, FRAME, HOP)
        frames = frames - frames.mean(-1, keepdim=True)
        frames = torch.cat([frames[..., :1] * (1 - PREEMPHASIS), frames[..., 1:] - PREEMPHASIS * frames[..., :-1]], -1)
        spectrum = torch.fft.rfft(frames * self.window, n=FFT).to(torch.complex64)
        power = spectrum.to(torch.complex128).abs() ** 2
        return (power @ self.mel_filters).clamp(min=MEL_FLOOR).log().float()

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, S) zero-padded audio, (B,) sample counts -> features (B, T, 80 * stride), attention mask (B, T),
        lengths (B,): the stacked frames holding a real frame (a last half-filled one included, as the
        extractor keeps it; its mask is 0 like the extractor's)."""
        mel = self.log_mel(audio)
        counts = frame_counts(lengths.to(audio.device))
        valid = (torch.arange(mel.shape[1], device=audio.device) < counts[:, None]).unsqueeze(-1)
        mean = (mel * valid).sum(1, keepdim=True) / counts[:, None, None]
        variance = ((mel - mean) ** 2 * valid).sum(1, keepdim=True) / (counts[:, None, None] - 1)
        normalised = torch.where(valid, (mel - mean) / torch.sqrt(variance + VARIANCE_EPS), self.padding_value)
        padded = -(-mel.shape[1] // PAD_MULTIPLE) * PAD_MULTIPLE
        kept = padded - padded % self.stride
        normalised = torch.nn.functional.pad(normalised, (0, 0, 0, padded - mel.shape[1]), value=self.padding_value)
        valid = torch.nn.functional.pad(valid[..., 0], (0, padded - mel.shape[1]))[:, :kept]
        features = normalised[:, :kept].reshape(audio.shape[0], kept // self.stride, -1)
        lengths = ((counts + self.stride - 1) // self.stride).clamp(max=features.shape[1])
        return features, valid[:, 1::self.stride].long(), lengths
