"""This project's side of the IndexTTS-2 stage benchmark: the models loaded from a random folder and the
same four stages as benchmarks/v2_reference_runner.py, on the same inputs.

Stages and what each counts (``units``):

- ``semantic``: 16 kHz audio -> w2v-BERT hidden state 17, normalised -> semantic codec codes (codes);
- ``gpt_bN``: speaker latents + emotion vector + duration rows, then greedy decoding of exactly
  ``gpt_codes`` codes for a fixed text, N identical rows (codes over all rows);
- ``s2mel``: codec embeddings + ``gpt_layer``(GPT latents), length regulator, 25 Euler steps with
  CFG 0.7 (seconds of audio the target mel covers);
- ``vocoder_exact`` / ``vocoder_fused``: BigVGAN v2 with the reference's activation operations or the
  compiled polyphase ones (seconds of audio).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from indextts.gpt.generation import GenerationConfig
from indextts.v2.gpt.dims import GPTV2Dims
from indextts.v2.gpt.loading import load_gpt_v2
from indextts.v2.s2mel import S2MelDims, frames_for_codes, load_s2mel
from indextts.v2.semantic import SemanticCodecDims, W2VBertFront, load_semantic_codec
from indextts.v2.vocoder import load_bigvgan_v2

NOISE_SEED = 1234
"""The seed the reference draws its CFM noise with (``torch.manual_seed(1234)`` before ``inference``)."""
HOP, MEL_RATE = 256, 22050
UNIT = {"semantic": "codes/s", "gpt": "codes/s", "s2mel": "RTF", "vocoder": "RTF"}
"""Stage group -> its figure; a stage is named ``group`` or ``group_variant`` (``gpt_b16``, ``vocoder_fused``)."""


@dataclass(frozen=True)
class Workload:
    """The sizes of the stage inputs; ``full`` keeps a CPU run of both sides under 15 minutes."""

    audio_seconds: float
    prompt_seconds: float
    text_tokens: int
    gpt_codes: int
    s2mel_codes: int
    vocoder_frames: int


FULL = Workload(audio_seconds=3.0, prompt_seconds=2.0, text_tokens=24, gpt_codes=32, s2mel_codes=50,
                vocoder_frames=172)
QUICK = Workload(audio_seconds=1.0, prompt_seconds=1.0, text_tokens=6, gpt_codes=4, s2mel_codes=8, vocoder_frames=16)


def make_inputs(cfg, work: Workload, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random inputs of every stage, shaped for the folder's config ``cfg``."""
    generator = torch.Generator().manual_seed(seed)
    feature_frames = int(work.prompt_seconds * 50)
    mel_frames = int(work.prompt_seconds * MEL_RATE / HOP)
    s2mel = S2MelDims.from_config(cfg)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return {
        "audio16k": 0.1 * normal(int(work.audio_seconds * 16000)),
        "gpt_features": normal(feature_frames, GPTV2Dims.from_config(cfg).condition_input_dim),
        "text_ids": torch.randint(2, int(cfg.gpt.number_text_tokens), (work.text_tokens,), generator=generator),
        "gpt_codes": torch.tensor(work.gpt_codes),
        "prompt_features": normal(feature_frames, s2mel.length_regulator.in_channels),
        "prompt_mel": normal(s2mel.DiT.in_channels, mel_frames) - 5.0,
        "style": normal(s2mel.style_encoder.dim),
        "s2mel_codes": torch.randint(0, SemanticCodecDims.from_config(cfg).codebook_size, (work.s2mel_codes,),
                                     generator=generator),
        "s2mel_latents": normal(work.s2mel_codes, s2mel.gpt_layer_input_dim),
        "vocoder_mel": normal(s2mel.DiT.in_channels, work.vocoder_frames) - 5.0,
    }


class OurStages:
    """The four stages on this project's modules, loaded strictly from ``folder``; inputs on ``device``."""

    def __init__(self, folder: Path, inputs: dict, device: str = "cpu", groups: tuple[str, ...] = tuple(UNIT)):
        cfg = OmegaConf.load(folder / "config.yaml")
        self.device = torch.device(device)
        self.inputs = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        if "semantic" in groups:
            self.front = W2VBertFront.from_model_dir(folder, cfg).to(self.device)
        self.codec = load_semantic_codec(folder / "hf_cache" / "semantic_codec_model.safetensors",
                                         SemanticCodecDims.from_config(cfg), self.device)
        if "gpt" in groups:
            self.gpt = load_gpt_v2(folder / cfg.gpt_checkpoint, GPTV2Dims.from_config(cfg), self.device)
        if "s2mel" in groups:
            self.s2mel = load_s2mel(folder / cfg.s2mel_checkpoint, S2MelDims.from_config(cfg)).to(self.device)
        if "vocoder" in groups:
            self.bigvgan = load_bigvgan_v2(folder / "hf_cache" / "bigvgan", self.device)

    def run(self, stage: str) -> tuple[float, float, torch.Tensor]:
        """(seconds, units, output) of one call of ``stage``; the device is synchronised before and after."""
        call = getattr(self, f"stage_{stage.split('_')[0]}")
        synchronize(self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            units, output = call(stage)
        synchronize(self.device)
        return time.perf_counter() - start, units, output

    def stage_semantic(self, _stage: str) -> tuple[int, torch.Tensor]:
        audio = self.inputs["audio16k"][None]
        features, lengths = self.front.embed(audio, torch.tensor([audio.shape[1]], device=self.device))
        codes, _, _ = self.codec.quantize(features, lengths)
        return codes.shape[-1], codes.reshape(-1)

    def stage_gpt(self, stage: str) -> tuple[int, torch.Tensor]:
        rows = int(stage.partition("_b")[2] or 1)
        features = self.inputs["gpt_features"][None].expand(rows, -1, -1)
        lengths = torch.full((rows,), features.shape[1], device=self.device)
        prefix = self.gpt.conditioning_prefix(self.gpt.get_conditioning(features, lengths),
                                              self.gpt.emotion_vector(features, lengths))
        text = self.inputs["text_ids"][None].expand(rows, -1)
        count = int(self.inputs["gpt_codes"])
        config = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, max_new_tokens=count,
                                  min_new_tokens=count)
        codes = self.gpt.generate(prefix, text, torch.full((rows,), text.shape[1]), config)
        return sum(row.numel() for row in codes), codes[0]

    def stage_s2mel(self, _stage: str) -> tuple[float, torch.Tensor]:
        codes = self.inputs["s2mel_codes"]
        content = self.s2mel.content_features(self.codec.vq2emb(codes[None, None]), self.inputs["s2mel_latents"][None])
        frames = int(frames_for_codes(torch.tensor([codes.numel()]))[0])
        prompt_mel = self.inputs["prompt_mel"][None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(NOISE_SEED)
            noise = torch.randn(1, prompt_mel.shape[1], prompt_mel.shape[2] + frames).to(self.device)
        mel = self.s2mel.infer_mel(self.inputs["prompt_features"][None], prompt_mel, self.inputs["style"][None],
                                   content, frames, noise)
        return frames * HOP / MEL_RATE, mel[0]

    def stage_vocoder(self, stage: str) -> tuple[float, torch.Tensor]:
        self.bigvgan.set_activation_mode(stage.split("_")[1])
        mel = self.inputs["vocoder_mel"]
        return mel.shape[-1] * HOP / MEL_RATE, self.bigvgan(mel[None])[0, 0]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
