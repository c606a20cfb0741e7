"""What IndexTTS-2 / 2.5 takes from a reference clip: w2v-BERT features and the S2Mel prompt.

A clip is read twice from its file, resampled once to each rate that a part uses (the reference
resamples its 22.05 kHz copy again to 16 kHz; this project never resamples twice), and cut to
``MAX_PROMPT_SECONDS`` as the reference cuts it:

- 16 kHz: w2v-BERT 2.0 features (T, 1024) (the GPT's speaker latents and emotion vector are computed
  from them) and the Kaldi fbank for CAMPPlus's style vector (192,);
- 22.05 kHz: the S2Mel log-mel (80, F) that the flow matching continues from.

The prompt's content features for the length regulator (``semantic``) are the quantized codec
features (``S_ref``) for IndexTTS-2 and the w2v-BERT features themselves for IndexTTS-2.5, as the
two references compute them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from indextts.audio import load_audio
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.v2.campplus import campplus_features
from indextts.v2.s2mel.mel import S2MelSpectrogram

MAX_PROMPT_SECONDS = 15
"""The reference cuts speaker and emotion clips to their first 15 seconds."""
PROMPT_KEYS = ("reference_mel", "prompt_semantic", "style")
"""The names of a :class:`SpeakerPrompt`'s tensors in ``speakers.safetensors`` ("<speaker>.<key>")."""


@dataclass
class SpeakerPrompt:
    """The S2Mel prompt of a voice: semantic (Tp, C) content features, mel (80, F) at 22.05 kHz, style (192,)."""

    semantic: torch.Tensor
    mel: torch.Tensor
    style: torch.Tensor

    def tensors(self) -> dict[str, torch.Tensor]:
        """The prompt under ``PROMPT_KEYS``, float32 CPU copies (what a run's speakers file stores)."""
        values = (self.mel, self.semantic, self.style)
        return {key: value.detach().float().cpu().contiguous() for key, value in zip(PROMPT_KEYS, values)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> SpeakerPrompt:
        return cls(semantic=tensors["prompt_semantic"], mel=tensors["reference_mel"], style=tensors["style"])

    def to(self, device: str | torch.device) -> SpeakerPrompt:
        return SpeakerPrompt(self.semantic.to(device), self.mel.to(device), self.style.to(device))


@dataclass
class EncodedClip:
    """A reference clip: its w2v-BERT features (T, 1024) and its S2Mel prompt."""

    features: torch.Tensor
    prompt: SpeakerPrompt


class ClipEncoder(nn.Module):
    """w2v-BERT front, semantic codec, CAMPPlus and the S2Mel mel of one base folder: clip -> EncodedClip.

    ``quantize_prompt``: IndexTTS-2's prompt content is ``codec.quantize(features)``; 2.5's is the features.
    """

    def __init__(self, front: nn.Module, codec: nn.Module, campplus: nn.Module, mel: S2MelSpectrogram,
                 quantize_prompt: bool):
        super().__init__()
        self.front, self.codec, self.campplus, self.mel = front, codec, campplus, mel
        self.quantize_prompt = quantize_prompt

    @classmethod
    def from_models(cls, models, device: str | torch.device = "cpu") -> ClipEncoder:
        """Load the parts from ``models`` (a :class:`indextts.v2.models.V2Models`)."""
        mel = S2MelSpectrogram.from_config(models.cfg.s2mel, str(models.root / CONFIG_FILENAME))
        return cls(models.load_semantic_front(device), models.load_semantic_codec(device),
                   models.load_campplus(device), mel.to(device), models.uses_gpt_layer)

    @property
    def device(self) -> torch.device:
        return self.mel.window.device

    def read(self, path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
        """The clip (S16,) at 16 kHz and (S22,) at the mel's rate, each resampled once from the file, cut."""
        rates = (16000, self.mel.sample_rate)
        return tuple(load_audio(path, rate)[: MAX_PROMPT_SECONDS * rate].to(self.device) for rate in rates)

    @torch.inference_mode()
    def features(self, audio_16k: torch.Tensor) -> torch.Tensor:
        """w2v-BERT features (T, 1024) of a 16 kHz clip (S,)."""
        features, _ = self.front.embed_waveforms([audio_16k])
        return features[0]

    @torch.inference_mode()
    def encode(self, path: str | Path) -> EncodedClip:
        """Features and S2Mel prompt of the clip at ``path`` (AudioError when it cannot be read)."""
        return self.encode_audio(*self.read(path))

    @torch.inference_mode()
    def encode_audio(self, audio_16k: torch.Tensor, audio_22k: torch.Tensor) -> EncodedClip:
        """Features and S2Mel prompt of a clip already read (:meth:`read`): (S16,) and (S22,)."""
        features = self.features(audio_16k)
        semantic = self.codec.quantize(features[None])[1][0] if self.quantize_prompt else features
        style = self.campplus(campplus_features(audio_16k)[None])[0]
        mel = self.mel(audio_22k)[0]
        return EncodedClip(features, SpeakerPrompt(semantic, mel, style))
