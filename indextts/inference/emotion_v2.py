"""The emotion an IndexTTS-2/2.5 request speaks with, from its options and the voice's own emotion.

As infer_v2 (docs/emotion.md), with ``e`` the voice's emotion vector (D,) and alpha = ``emotion_alpha``:

- no emotion option: ``e``;
- ``emotion_audio``: the clip's GPT emotion vector ``c`` (first 15 s, 16 kHz), blended ``e + alpha (c - e)``
  (the reference's ``merge_emovec``);
- ``emotion_vector`` w (or ``emotion_text``, read into w by the Qwen emotion model): w scaled by alpha
  (``scale_emotion_vector``), each emotion's example row picked by the closest speaker style
  (``most_similar_rows`` of the voice's CAMPPlus style), then ``sum_k w_k row_k + (1 - sum_k w_k) e``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from indextts.errors import InferenceError
from indextts.inference.synthesis import SynthesisOptions
from indextts.v2.emotion import EmotionMatrices, mix_emotion, scale_emotion_vector

CACHED_CLIPS = 16
"""Emotion clips whose vectors are kept (by resolved path), as voices are kept by their reference path."""
QWEN_SOURCE = "IndexTeam/IndexTTS-2"
"""The release that ships the Qwen emotion model folder (``qwen_emo_path`` in config.yaml)."""


class EmotionControl:
    """Resolves a request's emotion on one base (``models``: V2Models; ``gpt``, ``clips``: loaded parts)."""

    def __init__(self, models, gpt, clips):
        self.models, self.gpt, self.clips = models, gpt, clips
        self._matrices: EmotionMatrices | None = None
        self._clips: dict[Path, torch.Tensor] = {}
        self._qwen = None

    @property
    def matrices(self) -> EmotionMatrices:
        """The emotion matrices of the base, read on first use."""
        if self._matrices is None:
            self._matrices = self.models.load_emotion(self.clips.device)
        return self._matrices

    @torch.inference_mode()
    def resolve(self, emotion: torch.Tensor, style: torch.Tensor, options: SynthesisOptions) -> torch.Tensor:
        """The emotion (D,) float32 to speak with: the voice's ``emotion`` (D,) and ``style`` (192,) under ``options``."""
        base = emotion.float()
        if options.emotion_audio:
            clip = self.clip_emotion(options.emotion_audio)
            return base + options.emotion_alpha * (clip - base)
        weights = options.emotion_vector
        if options.emotion_text:
            weights = self.text_weights(options.emotion_text)
        if weights is None:
            return base
        scaled = torch.tensor(scale_emotion_vector(weights, options.emotion_alpha), device=base.device)[None]
        rows = self.matrices.most_similar_rows(style.float()[None].to(base.device))
        return mix_emotion(self.matrices.weighted_rows(scaled, rows), scaled, base[None])[0]

    def clip_emotion(self, path: str) -> torch.Tensor:
        """The GPT emotion vector (D,) float32 of the clip at ``path`` (AudioError when unreadable), cached."""
        key = Path(path).resolve()
        if key not in self._clips:
            features = self.clips.features(self.clips.read(path)[0])[None]
            dtype = next(self.gpt.parameters()).dtype
            if len(self._clips) >= CACHED_CLIPS:
                self._clips.pop(next(iter(self._clips)))
            self._clips[key] = self.gpt.emotion_vector(features.to(dtype))[0].float()
        return self._clips[key]

    def text_weights(self, text: str) -> tuple[float, ...]:
        """Eight emotion weights for a description, by the base folder's Qwen emotion model."""
        folder = self.models.paths.qwen
        if folder is None:
            expected = self.models.root / str(self.models.cfg.get("qwen_emo_path", "qwen0.6bemo4-merge")).strip()
            raise InferenceError(
                f"emotion_text needs the Qwen emotion model, which is not in the base folder {self.models.root} "
                f"(expected at {expected}, the config's qwen_emo_path). Download that folder from the "
                f"{QWEN_SOURCE} release into the base folder, or give the emotion as emotion_vector or "
                "emotion_audio instead.")
        if self._qwen is None:
            from indextts.v2.qwen_emotion import QwenEmotion

            self._qwen = QwenEmotion(folder, self.clips.device)
        return self._qwen.weights(text)
