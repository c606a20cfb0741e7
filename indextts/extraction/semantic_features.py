"""Generation 2 (IndexTTS-2 / 2.5) features: semantic codes, speaker conditions and emotion vectors.

Every part reads the clip at 16 kHz (the w2v-BERT front and, for 2.5, CAMPPlus's Kaldi fbank), so a
worker resamples the file once, to 16 kHz, and hands over the waveform (S,). Per batch:

- codes: w2v-BERT 2.0 (hidden state 17, normalised) over the padded batch, then the semantic
  codec's first quantizer; the half-precision rule of ``CheckedCodes`` applies to this pair;
- condition (with a GPT): IndexTTS-2's speaker latents (32, D) from ``UnifiedVoiceV2.get_conditioning``
  over the fp32 w2v-BERT features, or 2.5's CAMPPlus row (1, D): ``spk_emb_proj`` of the CAMPPlus
  embedding of the clip, as the 2.5 reference conditions its GPT;
- emotion vector (D,): ``UnifiedVoiceV2.emotion_vector`` over the same features (the reference's
  ``get_emovec`` of the utterance as its own emotion reference).

Conditions and emotion vectors are computed in fp32, one clip at a time unless ``batch_conditions``
(then from the padded batch's fp32 features), as generation 1 does.
"""

from __future__ import annotations

import numpy as np
import torch

from indextts.errors import AudioError
from indextts.extraction.features import BatchFeatures, CheckedCodes, host_arrays
from indextts.runtime import autocast
from indextts.v2.campplus import campplus_features
from indextts.v2.semantic.features import frame_counts
from indextts.v2.semantic.w2v_bert import MIN_SAMPLES, SAMPLE_RATE

SEMANTIC_SAMPLE_RATE = SAMPLE_RATE
"""w2v-BERT and CAMPPlus's fbank both read 16 kHz audio."""


class WaveformInput:
    """Generation 2's model input: the 16 kHz waveform (S,) itself, refused when too short for w2v-BERT."""

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.shape[-1] < MIN_SAMPLES:
            raise AudioError(f"{audio.shape[-1]} samples at 16 kHz; the w2v-BERT front needs at least {MIN_SAMPLES}")
        return audio


class SemanticFeatureModels(CheckedCodes):
    """The w2v-BERT front and semantic codec, and (optionally) the GPT (and 2.5's CAMPPlus), on one device."""

    def __init__(self, front, codec, gpt, campplus, device: torch.device, precision: str = "fp32",
                 batch_conditions: bool = False, check_batches: int | None = None):
        super().__init__(device, precision, check_batches)
        self.front, self.codec, self.gpt, self.campplus = front, codec, gpt, campplus
        self.batch_conditions = batch_conditions
        self._fp32_features: tuple[torch.Tensor, torch.Tensor] | None = None

    def code_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(B,) 16 kHz sample counts -> (B,) semantic codes: Kaldi frames (100 Hz), stacked by the w2v-BERT
        feature stride (50 Hz, a last half-filled pair kept), halved again by 2.5's codec (25 Hz)."""
        stride, scale = self.front.features.stride, self.codec.dims.downsample_scale
        feature_frames = (frame_counts(sample_lengths) + stride - 1) // stride
        return (feature_frames + scale - 1) // scale

    def _features(self, batch: torch.Tensor, lengths: torch.Tensor, precision: str):
        with torch.inference_mode(), autocast(self.device, precision):
            features, feature_lengths = self.front.embed(batch, lengths)
        if precision == "fp32":
            self._fp32_features = features, feature_lengths
        return features, feature_lengths

    def _codes(self, batch: torch.Tensor, lengths: torch.Tensor, precision: str) -> torch.Tensor:
        features, feature_lengths = self._features(batch, lengths, precision)
        with torch.inference_mode(), autocast(self.device, precision):
            codes, _, _ = self.codec.quantize(features, feature_lengths)
        return codes[:, 0]

    def _speaker_rows(self, waves: list[torch.Tensor], features: list[torch.Tensor],
                      lengths: torch.Tensor) -> list[torch.Tensor]:
        """2.5: the CAMPPlus row (1, D) of each clip; 2: the speaker latents (32, D) of each clip's features."""
        if self.gpt.uses_campplus:
            return [self.gpt.campplus_conditioning(self.campplus(campplus_features(w)[None]))[0] for w in waves]
        if self.batch_conditions:
            return list(self.gpt.get_conditioning(torch.stack(features), lengths))
        return [self.gpt.get_conditioning(f[None, :int(n)], n[None])[0] for f, n in zip(features, lengths)]

    def _conditions(self, waves: list[torch.Tensor]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """fp32 conditions and emotion vectors of the batch's clips (16 kHz waveforms on the host)."""
        waves = [w.to(self.device) for w in waves]
        with torch.inference_mode():
            if self.batch_conditions:
                if self._fp32_features is None:  # an unchecked half-precision batch made no fp32 pass
                    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
                    self._features(padded, torch.tensor([w.shape[-1] for w in waves], device=self.device), "fp32")
                features, lengths = self._fp32_features
                emotions = list(self.gpt.emotion_vector(features, lengths))
                features = list(features)
            else:
                alone = [self.front.embed(w[None], torch.tensor([w.shape[-1]], device=self.device)) for w in waves]
                features = [f[0] for f, _ in alone]
                lengths = torch.cat([n for _, n in alone])
                emotions = [self.gpt.emotion_vector(f[None], n[None])[0] for f, n in zip(features, lengths)]
            speakers = self._speaker_rows(waves, features, lengths)
        return host_arrays(speakers), host_arrays(emotions)

    def __call__(self, waves: list[torch.Tensor]) -> BatchFeatures:
        """Codes and (with a GPT) conditions and emotion vectors for each 16 kHz waveform (S_i,)."""
        self._fp32_features = None
        rows, precision = self.code_rows(waves)
        if self.gpt is None:
            return BatchFeatures(rows, None, precision)
        conditions, emotions = self._conditions(waves)
        return BatchFeatures(rows, conditions, precision, emotions)
