"""The models of synthesis on one device at their precisions, and the batched steps that run them.

:class:`SpeechModels` holds the GPT and BigVGAN and turns batches of sentences into audio:
reference audio -> conditioning, token ids -> codes (``generate_codes``), codes -> GPT latents,
latents -> waveforms. Every step takes a whole batch of sentences: one conditioning pass, one
generation, one latent pass and one vocoder pass per batch.

Precision (vocabulary ``fp32 | bf16 | fp16 | auto``, see :mod:`indextts.runtime`): the GPT runs in
``precision`` (``auto``: fp16 on CUDA like the reference, fp32 on the CPU). BigVGAN runs in fp32
by default; ``vocoder_precision`` fp16/bf16 runs it in half precision except ``conv_post`` and the
final ``tanh`` (and the speaker encoder, used once per voice), which stay in fp32.

``vocoder_mode`` (``auto | exact | fused``) picks BigVGAN's anti-aliased activations: ``exact``
equals the reference bit for bit, ``fused`` is the compiled polyphase form (~140 dB SNR against
``exact``, faster on the CPU; its first call compiles). ``auto``: fused on the CPU, exact on CUDA.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from indextts.audio import MelSpectrogramFeatures, load_audio, require_speech
from indextts.bigvgan.activations import ACTIVATION_MODES
from indextts.errors import InferenceError
from indextts.gpt.generation import GenerationConfig, StreamedCodes, generate_codes, stream_codes
from indextts.gpt.quantize import MODES as QUANTIZATION_MODES
from indextts.gpt.quantize import quantize_for_cpu
from indextts.runtime import dtype_of, resolve_device, resolve_precision
from indextts.inference.synthesis import (
    SentenceBatch,
    SynthesisOptions,
    refuse_v2_options,
    silence_min_total,
    strip_stop_code,
    trim_silence_runs,
)
from indextts.inference.voices import Voice
from indextts.lora import TrainedSpeaker
from indextts.timing import Stopwatch

logger = logging.getLogger(__name__)

VOCODER_EDGE_FRAMES = 16
"""Latent frames at the end of a row that a batch's zero padding changes by more than ~1e-5
(measured on BigVGAN's release layout; its receptive field decays within ~12 frames)."""


def _float32_inputs(module: nn.Module, args: tuple) -> tuple:
    return tuple(a.float() if torch.is_tensor(a) else a for a in args)


def cpu_compiler_available() -> bool:
    """Whether torch.compile can build CPU kernels here (inductor needs a C++ compiler: $CXX, g++, clang++)."""
    return any(shutil.which(name) for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if name)


def resolve_vocoder_mode(mode: str, device: torch.device) -> str:
    """``exact`` or ``fused`` for ``mode`` (auto | exact | fused) on ``device``; InferenceError if unusable.

    ``auto`` is ``fused`` on a CPU with a C++ compiler (the fused activations are compiled), else ``exact``.
    """
    if mode == "auto":
        return "fused" if device.type == "cpu" and cpu_compiler_available() else "exact"
    if mode not in ACTIVATION_MODES:
        raise InferenceError(f"vocoder_mode={mode!r} is not a BigVGAN activation mode; use auto, "
                             f"{' or '.join(ACTIVATION_MODES)} (exact equals the reference bit for bit).")
    if mode == "fused" and device.type == "cpu" and not cpu_compiler_available():
        raise InferenceError("vocoder_mode=fused compiles BigVGAN's activations with torch.compile, which needs a "
                             "C++ compiler on the CPU, and none was found (CXX, g++, c++, clang++). Install one "
                             "(e.g. `apt-get install g++`) or use vocoder_mode=exact.")
    return mode


def prepare_vocoder(bigvgan: nn.Module, device: torch.device, precision: str, mode: str = "exact") -> nn.Module:
    """BigVGAN on ``device`` in ``precision`` with activations in ``mode``.

    In half precision ``conv_post``/``tanh`` and the speaker encoder stay fp32.
    """
    bigvgan = bigvgan.to(device=device, dtype=torch.float32).eval()
    bigvgan.set_activation_mode(mode)
    if precision == "fp32":
        return bigvgan
    bigvgan.to(dtype_of(precision))
    bigvgan.conv_post.float()
    bigvgan.speaker_encoder.float()
    bigvgan.conv_post.register_forward_pre_hook(_float32_inputs)
    return bigvgan


class SpeechModels:
    """GPT + BigVGAN + log-mel features on one device (see the module docstring for precisions).

    ``cfg`` is the checkpoint config (``CheckpointFolder.cfg``); ``gpt`` a UnifiedVoice and
    ``bigvgan`` the vocoder, both float32 as loaded.
    """

    def __init__(self, cfg: DictConfig, gpt: nn.Module, bigvgan: nn.Module, device: str | torch.device = "auto",
                 precision: str = "auto", vocoder_precision: str = "fp32", cpu_quantization: str | None = None,
                 vocoder_mode: str = "auto"):
        self.cfg = cfg
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, cuda_auto="fp16")
        self.vocoder_precision = resolve_precision(vocoder_precision, self.device, cuda_auto="fp32")
        self.dtype = dtype_of(self.precision)
        self.vocoder_dtype = dtype_of(self.vocoder_precision)
        self.gpt = gpt.to(self.device, self.dtype).eval()
        self.vocoder_mode = resolve_vocoder_mode(vocoder_mode, self.device)
        self.bigvgan = prepare_vocoder(bigvgan, self.device, self.vocoder_precision, self.vocoder_mode)
        self.mel = MelSpectrogramFeatures.from_config(cfg.dataset.mel).to(self.device)
        self.sample_rate = int(cfg.dataset.sample_rate)
        self.samples_per_code = int(self.gpt.mel_length_compression)
        self.stop_text_token = int(cfg.gpt.stop_text_token)
        self.stop_mel_token = int(cfg.gpt.stop_mel_token)
        self.max_text_tokens = int(cfg.gpt.max_text_tokens)
        self.max_mel_tokens = int(cfg.gpt.max_mel_tokens)
        self.vocoder_batching = self.device.type == "cuda"
        self.cpu_quantization = self._check_quantization(cpu_quantization)
        self._decoder: tuple[object, nn.Module] | None = None  # (weights key, quantised copy of the GPT)
        self._weights_key: object = None

    def _check_quantization(self, mode: str | None) -> str | None:
        if mode is not None and (self.device.type != "cpu" or self.precision != "fp32" or mode not in QUANTIZATION_MODES):
            raise InferenceError(f"cpu_quantization={mode!r} needs device cpu, precision fp32 and a mode in "
                                 f"{QUANTIZATION_MODES}. Leave it unset on GPUs (use precision fp16 there).")
        return mode

    def decoder(self, weights_key: object) -> nn.Module:
        """The GPT that generates codes: itself, or (opt-in, CPU) a quantised copy of its current weights.

        ``weights_key`` names the weights now in the GPT (the active voice); the copy is rebuilt when it changes.
        Conditioning and latents always use the float32 GPT.
        """
        if self.cpu_quantization is None:
            return self.gpt
        if self._decoder is None or self._decoder[0] != weights_key:
            self._decoder = None  # free the old copy before building the next
            self._decoder = (weights_key, quantize_for_cpu(copy.deepcopy(self.gpt), self.cpu_quantization))
        return self._decoder[1]

    def reference_mel(self, audio_path: str | Path) -> torch.Tensor:
        """Log-mel (100, F) of a reference recording, on the device.

        The recording must hold speech (``require_speech``: long enough, not silent); otherwise AudioError.
        """
        audio = load_audio(audio_path, self.sample_rate)
        require_speech(audio, self.sample_rate, audio_path)
        return self.mel(audio.to(self.device))[0]

    def conditioning(self, mel: torch.Tensor) -> torch.Tensor:
        """Speaker conditioning latents (32, D) in the GPT's dtype from one log-mel (100, F)."""
        lengths = torch.tensor([mel.shape[-1]], device=self.device)
        return self.gpt.get_conditioning(mel.unsqueeze(0).to(self.dtype), lengths)[0]

    def speaker_embedding(self, reference_mel: torch.Tensor) -> torch.Tensor:
        """BigVGAN's speaker embedding (1, E, 1) of a reference mel (F, 100), computed in fp32."""
        return self.bigvgan.embed_speaker(reference_mel.to(self.device, torch.float32).unsqueeze(0))

    @torch.inference_mode()
    def make_voice(self, speaker: TrainedSpeaker | None, reference_audio: str | Path | None, run: str | None) -> Voice:
        """A trained speaker's conditioning and reference mel, or a recording's (zero-shot); with both, the
        recording replaces only the vocoder's reference."""
        if speaker is not None and speaker.is_v2:
            raise InferenceError(f"The voice of run '{run}' was trained on IndexTTS-2/2.5, but this base is IndexTTS "
                                 "1.x. Load it on its own IndexTTS-2/2.5 base folder.")
        mel = None if reference_audio is None else self.reference_mel(reference_audio)  # (100, F)
        condition = self.conditioning(mel) if speaker is None else speaker.condition.to(self.device, self.dtype)
        reference = (speaker.reference_mel if mel is None else mel).transpose(0, 1)
        return Voice(condition, reference.to(self.device), self.speaker_embedding(reference), run)

    def check_options(self, options: SynthesisOptions) -> None:
        """InferenceError for the IndexTTS-2/2.5 options (emotion, duration), which a 1.x GPT cannot follow."""
        refuse_v2_options(options, "IndexTTS 1.x")

    def spoken_voice(self, voice: Voice, options: SynthesisOptions) -> Voice:
        """The voice as spoken: a 1.x voice has no per-request emotion."""
        return voice

    @torch.inference_mode()
    def speak(self, batch: SentenceBatch, stopwatch: Stopwatch) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """Codes (N_i,) and waveforms (N_i * samples_per_code,) of a batch: one pass per stage."""
        text_ids, text_lengths = self.pad_text(batch.id_lists)
        conditions = torch.stack([voice.condition for voice in batch.voices])  # (B, 32, D)
        with stopwatch("generation"):
            generated = self.generate(conditions, text_ids, text_lengths, batch.generation)
        codes = [self.spoken_codes(row, batch.options) for row in generated]
        with stopwatch("latents"):
            latents = self.latents(conditions, text_ids, text_lengths, codes)
        with stopwatch("vocoder"):
            waveforms = self.vocode(latents, [voice.speaker_embedding for voice in batch.voices])
        return [c.cpu() for c in codes], waveforms

    def pad_text(self, id_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token id lists into (B, L) ids and (B,) lengths on the device."""
        ids = [torch.tensor(i, dtype=torch.long) for i in id_lists]
        lengths = torch.tensor([len(i) for i in ids], device=self.device)
        padded = pad_sequence(ids, batch_first=True, padding_value=self.stop_text_token)
        return padded.to(self.device), lengths

    def select_weights(self, weights_key: object) -> None:
        """Name the weights now in the GPT (the active voice), for the quantised decoder's cache."""
        self._weights_key = weights_key

    def generate(self, conditions: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                 generation: GenerationConfig) -> list[torch.Tensor]:
        """Codes for a batch: conditions (B, 32, D), text_ids (B, L), text_lengths (B,) -> B code tensors."""
        decoder = self.decoder(self._weights_key)
        return generate_codes(decoder, conditions.to(self.dtype), text_ids, text_lengths, generation)

    def stream_codes(self, conditions: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                     generation: GenerationConfig, every: int) -> Iterator[StreamedCodes]:
        """:meth:`generate`'s codes as they settle, every ``every`` steps (see ``stream_codes``)."""
        decoder = self.decoder(self._weights_key)
        yield from stream_codes(decoder, conditions.to(self.dtype), text_ids, text_lengths, generation, every)

    def spoken_codes(self, generated: torch.Tensor, options: SynthesisOptions) -> torch.Tensor:
        """Generated codes (N,) without the stop code and with long silences shortened."""
        max_new_tokens = options.generation.max_new_tokens
        if len(generated) >= max_new_tokens and generated[-1] != self.stop_mel_token:
            logger.warning(
                "A sentence reached max_mel_tokens=%d codes without finishing; its end may be cut. "
                "Raise --max_mel_tokens or lower --max_text_tokens_per_sentence.", max_new_tokens)
        codes = strip_stop_code(generated, self.stop_mel_token)
        return trim_silence_runs(codes, options.silence_code, options.max_silence_codes,
                                 silence_min_total(options.silence_trimming))

    def latents(self, conditions: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                codes: list[torch.Tensor]) -> list[torch.Tensor]:
        """GPT latents (N_i, D) for each row's codes (N_i,), in one pass over the batch."""
        code_lengths = torch.tensor([len(c) for c in codes], device=self.device)
        if int(code_lengths.max()) == 0:
            return [torch.zeros(0, self.gpt.model_dim, device=self.device) for _ in codes]
        padded = pad_sequence([c.to(self.device) for c in codes], batch_first=True)
        latents = self.gpt.forward_latents(conditions.to(self.dtype), text_ids, text_lengths, padded, code_lengths)
        return [latents[row, :n] for row, n in enumerate(code_lengths.tolist())]

    def vocode(self, latents: list[torch.Tensor], speaker_embeddings: list[torch.Tensor]) -> list[np.ndarray]:
        """Waveforms (N_i * samples_per_code,) float32 for latents (N_i, D), equal to vocoding each row alone.

        With ``vocoder_batching`` (default on CUDA, where one pass per sentence is launch-bound) the
        rows go through BigVGAN together, zero-padded to the longest. Padding reaches the last
        ``VOCODER_EDGE_FRAMES`` frames of a shorter row, so those are vocoded again from a window
        that ends where the row ends (all windows in one more pass) and spliced in. On the CPU,
        which is compute-bound, rows are vocoded one at a time.
        """
        waveforms = [np.zeros(0, dtype=np.float32)] * len(latents)
        rows = [i for i, latent in enumerate(latents) if len(latent)]
        if not rows:
            return waveforms
        if not self.vocoder_batching:
            for i in rows:
                waveforms[i] = self._vocode_padded([latents[i]], [speaker_embeddings[i]])[0]
            return waveforms
        for i, audio in zip(rows, self._vocode_padded([latents[i] for i in rows], [speaker_embeddings[i] for i in rows])):
            waveforms[i] = audio
        longest = max((len(latents[i]) for i in rows), default=0)
        window = 2 * VOCODER_EDGE_FRAMES
        shorter = [i for i in rows if len(latents[i]) < longest]
        tails = [i for i in shorter if len(latents[i]) > window]
        edge_samples = VOCODER_EDGE_FRAMES * self.samples_per_code
        if tails:
            redone = self._vocode_padded([latents[i][-window:] for i in tails], [speaker_embeddings[i] for i in tails])
            for i, audio in zip(tails, redone):
                waveforms[i][-edge_samples:] = audio[-edge_samples:]
        for _, group in groupby(sorted((i for i in shorter if i not in tails), key=lambda i: len(latents[i])),
                                key=lambda i: len(latents[i])):
            group = list(group)
            for i, audio in zip(group, self._vocode_padded([latents[i] for i in group],
                                                          [speaker_embeddings[i] for i in group])):
                waveforms[i] = audio
        return waveforms

    def _vocode_padded(self, latents: list[torch.Tensor], speaker_embeddings: list[torch.Tensor]) -> list[np.ndarray]:
        """One BigVGAN pass over latents (N_i, D) zero-padded to the longest; each waveform cut to N_i codes."""
        padded = pad_sequence(latents, batch_first=True).to(self.vocoder_dtype)
        embeddings = torch.cat(speaker_embeddings).to(self.vocoder_dtype)
        audio = self.bigvgan(padded, speaker_embedding=embeddings).float().reshape(len(latents), -1).cpu().numpy()
        return [audio[row, : len(latent) * self.samples_per_code].copy() for row, latent in enumerate(latents)]
