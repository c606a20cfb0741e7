"""Silero VAD v6.2 (16 kHz) as a plain torch module over the pickle-free weights in its wheel.

The ``silero-vad`` wheel loads its model with ``torch.jit.load``, which torch now deprecates (a
warning on every run). The wheel also ships the same weights as ``silero_vad_16k.safetensors``;
this module rebuilds the network around them. It scores every 32 ms frame as the TorchScript
model's ``audio_forward`` does (each 512-sample frame with the 64 samples before it, one LSTM
state carried across the recording), but runs the convolutions of all frames as one batch and
the recurrence as one ``nn.LSTM`` call.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from indextts.errors import PrepareError

WEIGHTS_FILE = "silero_vad_16k.safetensors"
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
"""Each frame is scored together with the last 64 samples of the frame before it."""
N_FFT = 256
HIDDEN = 128


def silero_weights_path() -> Path:
    """The safetensors weights inside the installed ``silero-vad`` wheel (found without importing
    the package, whose import sets torch's thread count to 1 process-wide)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise PrepareError("Slicing needs the 'silero-vad' package (6.2.1 or newer), which is not installed. "
                           "Install it with `pip install 'silero-vad>=6.2.1'`.")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / WEIGHTS_FILE
    if not path.is_file():
        raise PrepareError(f"The installed silero-vad has no {WEIGHTS_FILE} (it ships from version 6.2.1 on). "
                           "Upgrade it with `pip install -U 'silero-vad>=6.2.1'`.")
    return path


class SileroNetwork(nn.Module):
    """STFT convolution -> 4 conv layers -> LSTM -> per-frame speech probability."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, N_FFT + 2, kernel_size=N_FFT, stride=N_FFT // 2, bias=False)
        self.conv1 = nn.Conv1d(N_FFT // 2 + 1, 128, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, HIDDEN, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(HIDDEN, HIDDEN)
        self.final_conv = nn.Conv1d(HIDDEN, 1, kernel_size=1)

    @classmethod
    def from_wheel(cls) -> SileroNetwork:
        from safetensors.torch import load_file

        # The wheel names the recurrence as an LSTMCell; one nn.LSTM layer holds the same four tensors.
        state = {key.replace("lstm_cell.", "lstm.") + ("_l0" if key.startswith("lstm_cell.") else ""): value
                 for key, value in load_file(silero_weights_path()).items()}
        network = cls()
        network.load_state_dict(state, strict=True)
        return network.eval()

    def _frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames with their context (N, 576) -> one feature vector per frame (N, 128)."""
        x = nn.functional.pad(frames, (0, CONTEXT_SAMPLES), mode="reflect").unsqueeze(1)
        x = self.stft_conv(x)
        cutoff = N_FFT // 2 + 1
        x = (x[:, :cutoff] ** 2 + x[:, cutoff:] ** 2).sqrt()
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(x).relu()
        return x.squeeze(-1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Mono 16 kHz audio (S,) -> speech probability per frame (N,), N = ceil(S / 512)."""
        frame_count = -(-audio.numel() // FRAME_SAMPLES)
        padded = nn.functional.pad(audio, (CONTEXT_SAMPLES, frame_count * FRAME_SAMPLES - audio.numel()))
        frames = padded.unfold(0, FRAME_SAMPLES + CONTEXT_SAMPLES, FRAME_SAMPLES)
        hidden, _ = self.lstm(self._frame_features(frames))
        return self.final_conv(hidden.relu().T.unsqueeze(0)).sigmoid().reshape(-1)
