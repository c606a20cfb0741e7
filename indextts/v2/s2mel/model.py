"""S2Mel: GPT latents and semantic features -> 80-band mel at 22.05 kHz, by conditional flow matching.

``S2Mel`` holds the three parts of the reference's ``MyModel(use_gpt_latent=True)``: the length
regulator, the CFM with its DiT estimator, and ``gpt_layer`` (IndexTTS-2 only; 2.5 has none).
Inference follows infer_v2: the prompt's and the target's semantic features are regulated to mel
frames and concatenated; the prompt mel is given as in-context audio; Euler steps integrate the
flow from the given noise with classifier-free guidance against an all-zero condition.
"""

from __future__ import annotations

import torch
from torch import nn

from indextts.v2.s2mel.dims import S2MelDims
from indextts.v2.s2mel.dit import DiT
from indextts.v2.s2mel.length_regulator import LengthRegulator

DIFFUSION_STEPS = 25
CFG_RATE = 0.7
"""The Euler step count and classifier-free guidance rate infer_v2 uses."""
FRAMES_PER_CODE = 1.72
"""Mel frames (22.05 kHz, hop 256) per semantic code (50 Hz) in infer_v2's target length."""
GPT_LAYER_WIDTHS = (256, 128)
"""Hidden widths of ``gpt_layer`` (hard-coded by the reference)."""


def frames_for_codes(code_counts: torch.Tensor) -> torch.Tensor:
    """Target mel frames for (B,) code counts, truncated as infer_v2 does in float32: (B,) int64."""
    return (code_counts * FRAMES_PER_CODE).long()


class ConditionalFlowMatching(nn.Module):
    """Euler integration of the DiT's velocity with the prompt frames held at zero."""

    def __init__(self, dims: S2MelDims):
        super().__init__()
        self.estimator = DiT(dims)

    def _velocity(self, x: torch.Tensor, prompt: torch.Tensor, lengths: torch.Tensor, t: torch.Tensor,
                  style: torch.Tensor, content: torch.Tensor, cfg_rate: float) -> torch.Tensor:
        """Guided velocity (B, mels, T): the conditional and the all-zero condition run as one batch."""
        if cfg_rate <= 0:
            return self.estimator(x, prompt, lengths, t.expand(x.shape[0]), style, content)
        both = self.estimator(torch.cat([x, x]), torch.cat([prompt, torch.zeros_like(prompt)]), lengths.repeat(2),
                              t.expand(2 * x.shape[0]), torch.cat([style, torch.zeros_like(style)]),
                              torch.cat([content, torch.zeros_like(content)]))
        conditional, unconditional = both.chunk(2)
        return (1.0 + cfg_rate) * conditional - cfg_rate * unconditional

    @torch.inference_mode()
    def generate(self, content: torch.Tensor, prompt_mel: torch.Tensor, style: torch.Tensor, noise: torch.Tensor,
                 steps: int = DIFFUSION_STEPS, cfg_rate: float = CFG_RATE,
                 lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mel (B, mels, T) whose first prompt frames are zero.

        content (B, T, C) regulated features of prompt + target; prompt_mel (B, mels, Tp), Tp <= T;
        style (B, style_dim); noise (B, mels, T) the initial sample; lengths (B,) valid frames (all T).
        """
        prompt_frames = prompt_mel.shape[-1]
        if lengths is None:
            lengths = torch.full((noise.shape[0],), noise.shape[-1], dtype=torch.long, device=noise.device)
        prompt = torch.zeros_like(noise)
        prompt[..., :prompt_frames] = prompt_mel
        x = noise.clone()
        x[..., :prompt_frames] = 0
        times = torch.linspace(0, 1, steps + 1, device=noise.device)
        t = times[0]
        for step in range(1, steps + 1):
            dt = times[step] - times[step - 1]
            x = x + dt * self._velocity(x, prompt, lengths, t, style, content, cfg_rate)
            t = t + dt
            x[..., :prompt_frames] = 0
        return x


class S2Mel(nn.Module):
    """Length regulator, CFM and (IndexTTS-2) gpt_layer; names as the checkpoint's parts ``cfm``, ..."""

    def __init__(self, dims: S2MelDims, with_gpt_layer: bool = True):
        super().__init__()
        dims.check_supported()
        self.cfm = ConditionalFlowMatching(dims)
        self.length_regulator = LengthRegulator(dims.length_regulator)
        if with_gpt_layer:
            widths = (dims.gpt_layer_input_dim, *GPT_LAYER_WIDTHS, dims.length_regulator.in_channels)
            self.gpt_layer = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(widths, widths[1:])))

    def content_features(self, semantic_embeddings: torch.Tensor, gpt_latents: torch.Tensor) -> torch.Tensor:
        """IndexTTS-2's target features: codec embeddings (B, N, C) + gpt_layer(GPT latents (B, N, 1280))."""
        return semantic_embeddings + self.gpt_layer(gpt_latents)

    @torch.inference_mode()
    def infer_mel(self, prompt_features: torch.Tensor, prompt_mel: torch.Tensor, style: torch.Tensor,
                  target_features: torch.Tensor, target_frames: int, noise: torch.Tensor,
                  steps: int = DIFFUSION_STEPS, cfg_rate: float = CFG_RATE) -> torch.Tensor:
        """The target's mel (1, mels, target_frames), as infer_v2 computes it for one sentence.

        prompt_features (1, Np, C) semantic features of the reference audio, prompt_mel (1, mels, Tp)
        its mel, style (1, style_dim) its CAMPPlus vector; target_features (1, N, C); noise
        (1, mels, Tp + target_frames).
        """
        prompt_frames = torch.tensor([prompt_mel.shape[-1]], device=noise.device)
        prompt_condition = self.length_regulator(prompt_features, prompt_frames)
        target_condition = self.length_regulator(target_features, torch.tensor([target_frames], device=noise.device))
        content = torch.cat([prompt_condition, target_condition], dim=1)
        mel = self.cfm.generate(content, prompt_mel, style, noise, steps, cfg_rate)
        return mel[..., prompt_mel.shape[-1]:]
