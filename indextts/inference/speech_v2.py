"""IndexTTS-2 / 2.5 synthesis on one device: voices, emotion, codes, and codes -> 22.05 kHz waveforms.

:class:`SpeechModelsV2` is the generation-2 counterpart of :class:`indextts.inference.speech.SpeechModels`
and offers :class:`indextts.inference.api.IndexTTS` the same steps (``make_voice``, ``speak``):

- a voice is speaker conditioning (S, D), an emotion vector (D,) and the S2Mel prompt
  (:class:`~indextts.v2.prompt.SpeakerPrompt`), from a clip (zero-shot) or a trained speaker;
- each request's emotion options turn the voice's emotion into the one spoken
  (:mod:`indextts.inference.emotion_v2`);
- a batch of sentences: one GPT generation over the conditioning prefixes; then, IndexTTS-2: one GPT
  latent pass, content = ``codec.vq2emb(codes) + s2mel.gpt_layer(latents)``, frames = codes * 1.72;
  IndexTTS-2.5: content = ``codec.decode(codes)``, frames = int(decoded frames * 1.72 * duration_factor);
  then S2Mel and BigVGAN v2 one sentence at a time (flow matching runs over prompt + target, whose
  lengths differ per sentence; row by row keeps each sentence equal to its synthesis alone).

The GPT runs in ``precision``; the codec, S2Mel and BigVGAN run in float32 as the reference does.
Each sentence's S2Mel noise comes from a generator seeded with ``seed + sentence index`` when the
options have a seed (the same noise whichever batch or stream the sentence is in), else from torch's
global generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from indextts.audio import require_speech
from indextts.errors import InferenceError
from indextts.families import Family
from indextts.gpt.generation import GenerationConfig
from indextts.inference.emotion_v2 import EmotionControl
from indextts.inference.speech import resolve_vocoder_mode
from indextts.inference.synthesis import SentenceBatch, SynthesisOptions, strip_stop_code
from indextts.lora import TrainedSpeaker
from indextts.runtime import dtype_of, resolve_device, resolve_precision
from indextts.timing import Stopwatch
from indextts.v2.models import V2Models
from indextts.v2.prompt import ClipEncoder, EncodedClip, SpeakerPrompt
from indextts.v2.s2mel.model import frames_for_codes
from indextts.v2.sentences25 import SentenceSplitter25
from indextts.v2.text import TextNormalizerV2

logger = logging.getLogger(__name__)

SEMANTIC_RATE = 16000
"""The rate w2v-BERT and CAMPPlus read a clip at (``ClipEncoder.read``'s first copy)."""
S2MEL_FRAMES_PER_CODE = 1.72
"""Mel frames per decoded codec frame in infer_v2_5's target length (before ``duration_factor``)."""


@dataclass
class VoiceV2:
    """An IndexTTS-2/2.5 voice: condition (S, D) in the GPT's dtype, emotion (D,), the S2Mel prompt, its run."""

    condition: torch.Tensor
    emotion: torch.Tensor
    prompt: SpeakerPrompt
    run: str | None = None


class SpeechModelsV2:
    """The parts of an IndexTTS-2/2.5 base folder on one device (see the module docstring).

    ``models`` is ``CheckpointFolder(dir).v2``; ``precision`` (fp32 | bf16 | fp16 | auto: fp16 on CUDA)
    is the GPT's; ``vocoder_mode`` as for 1.x (auto | exact | fused).
    """

    def __init__(self, models: V2Models, device: str | torch.device = "auto", precision: str = "auto",
                 vocoder_mode: str = "auto"):
        self.family: Family = models.family
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device, cuda_auto="fp16")
        self.dtype = dtype_of(self.precision)
        self.gpt = models.load_gpt(self.device).to(self.dtype).eval()
        self.clips = ClipEncoder.from_models(models, self.device).eval()
        self.s2mel = models.load_s2mel(self.device).eval()
        self.vocoder = models.load_vocoder(self.device).eval()
        self.vocoder.set_activation_mode(resolve_vocoder_mode(vocoder_mode, self.device))
        self.emotion = EmotionControl(models, self.gpt, self.clips)
        self.sample_rate = int(self.clips.mel.sample_rate)
        self.stop_mel_token = int(models.cfg.gpt.stop_mel_token)
        self.max_text_tokens = int(models.cfg.gpt.max_text_tokens)
        self.max_mel_tokens = int(models.cfg.gpt.max_mel_tokens)

    def select_weights(self, weights_key: object) -> None:
        """Nothing to do: IndexTTS-2 has no quantised decoder copy (kept for the 1.x interface)."""

    @torch.inference_mode()
    def make_voice(self, speaker: TrainedSpeaker | None, reference_audio: str | Path | None,
                   run: str | None) -> VoiceV2:
        """A trained speaker's voice, or a clip's (zero-shot); with both, the clip replaces the S2Mel prompt."""
        if speaker is not None and not speaker.is_v2:
            raise InferenceError(
                f"The voice of run '{run}' was trained on IndexTTS 1.x, but the base is {self.family}: its "
                "conditioning does not fit this GPT. Load it on its own IndexTTS 1.x base folder.")
        clip = None if reference_audio is None else self.encode_reference(reference_audio)
        if speaker is None:
            features = clip.features[None].to(self.dtype)
            if self.gpt.uses_campplus:
                condition = self.gpt.campplus_conditioning(clip.prompt.style[None].to(self.dtype))[0]
            else:
                condition = self.gpt.get_conditioning(features)[0]
            return VoiceV2(condition, self.gpt.emotion_vector(features)[0], clip.prompt, run)
        prompt = clip.prompt if clip is not None else SpeakerPrompt(
            speaker.prompt_semantic, speaker.reference_mel, speaker.style).to(self.device)
        return VoiceV2(speaker.condition.to(self.device, self.dtype), speaker.emotion.to(self.device, self.dtype),
                       prompt, run)

    def encode_reference(self, path: str | Path) -> EncodedClip:
        """The clip at ``path`` encoded; AudioError when it is unreadable, shorter than 0.5 s or silent."""
        audio_16k, audio_22k = self.clips.read(path)
        require_speech(audio_16k, SEMANTIC_RATE, path)
        return self.clips.encode_audio(audio_16k, audio_22k)

    def check_options(self, options: SynthesisOptions) -> None:
        """InferenceError for ``duration_factor`` on IndexTTS-2 (only 2.5 scales durations)."""
        if options.duration_factor != 1.0 and not self.family.multilingual:
            raise InferenceError(
                f"duration_factor={options.duration_factor} needs an IndexTTS-2.5 base; IndexTTS-2 "
                "(this base) has no duration control. Leave it at 1, or load an IndexTTS-2.5 folder.")

    def spoken_voice(self, voice: VoiceV2, options: SynthesisOptions) -> VoiceV2:
        """The voice with the emotion the options ask for (see :class:`EmotionControl`)."""
        emotion = self.emotion.resolve(voice.emotion, voice.prompt.style, options)
        return VoiceV2(voice.condition, emotion.to(voice.condition.dtype), voice.prompt, voice.run)

    def pad_text(self, id_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token id lists into (B, L) ids and (B,) lengths on the device."""
        ids = [torch.tensor(i, dtype=torch.long) for i in id_lists]
        lengths = torch.tensor([len(i) for i in ids], device=self.device)
        return pad_sequence(ids, batch_first=True).to(self.device), lengths

    def generate(self, prefixes: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                 generation: GenerationConfig, languages: torch.Tensor | None) -> list[torch.Tensor]:
        """Codes for a batch: prefixes (B, S + 2, D), text_ids (B, L), lengths (B,), languages (B,) or None."""
        return self.gpt.generate(prefixes, text_ids, text_lengths, generation, languages)

    def spoken_codes(self, generated: torch.Tensor, options: SynthesisOptions) -> torch.Tensor:
        """Generated codes (N,) without the stop code (the references keep silences as generated)."""
        if len(generated) >= options.generation.max_new_tokens and generated[-1] != self.stop_mel_token:
            logger.warning("A sentence reached max_mel_tokens=%d codes without finishing; its end may be cut. "
                           "Raise --max_mel_tokens or lower --max_text_tokens_per_sentence.",
                           options.generation.max_new_tokens)
        return strip_stop_code(generated, self.stop_mel_token)

    @torch.inference_mode()
    def speak(self, batch: SentenceBatch, stopwatch: Stopwatch) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """Codes (N_i,) and waveforms (S_i,) float32 at 22.05 kHz of a batch of sentences of one option set."""
        text_ids, text_lengths = self.pad_text(batch.id_lists)
        prefixes = self.gpt.conditioning_prefix(torch.stack([v.condition for v in batch.voices]),
                                                torch.stack([v.emotion for v in batch.voices]))
        languages = None if batch.languages is None else torch.tensor(batch.languages, device=self.device)
        with stopwatch("generation"):
            generated = self.generate(prefixes, text_ids, text_lengths, batch.generation, languages)
        codes = [self.spoken_codes(row, batch.options) for row in generated]
        with stopwatch("latents"):
            contents = self.contents(prefixes, text_ids, text_lengths, languages, codes, batch.options)
        waveforms = []
        with stopwatch("vocoder"):
            for voice, content, frames, index in zip(batch.voices, *contents, batch.sentence_indices):
                waveforms.append(self.waveform(voice.prompt, content, frames, batch.options, index))
        return [c.cpu() for c in codes], waveforms

    def contents(self, prefixes: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                 languages: torch.Tensor | None, codes: list[torch.Tensor],
                 options: SynthesisOptions) -> tuple[list[torch.Tensor | None], list[int]]:
        """S2Mel content (1, N', C) and target mel frames per row (None and 0 for a row without codes).

        IndexTTS-2: one GPT latent pass over the batch; 2.5: the codec decodes each row alone.
        """
        code_lengths = [len(c) for c in codes]
        if max(code_lengths) == 0:
            return [None] * len(codes), [0] * len(codes)
        if self.family.multilingual:
            decoded = [self.clips.codec.decode(c[None, None].to(self.device))[0] if len(c) else None for c in codes]
            frames = [int(d.shape[1] * S2MEL_FRAMES_PER_CODE * options.duration_factor) if d is not None else 0
                      for d in decoded]
            return decoded, frames
        padded = pad_sequence([c.to(self.device) for c in codes], batch_first=True)
        latents = self.gpt.forward_latents(prefixes, text_ids, text_lengths, padded,
                                           torch.tensor(code_lengths, device=self.device), languages).float()
        contents = [self.s2mel.content_features(self.clips.codec.vq2emb(c[None, None].to(self.device)),
                                                latents[row:row + 1, :n]) if n else None
                    for row, (c, n) in enumerate(zip(codes, code_lengths))]
        return contents, frames_for_codes(torch.tensor(code_lengths)).tolist()

    def waveform(self, prompt: SpeakerPrompt, content: torch.Tensor | None, frames: int,
                 options: SynthesisOptions, sentence_index: int) -> np.ndarray:
        """One sentence's waveform (S,) float32: S2Mel from the prompt and content, then BigVGAN v2."""
        if content is None or frames <= 0:
            return np.zeros(0, dtype=np.float32)
        noise = self.s2mel_noise(prompt.mel.shape[0], prompt.mel.shape[-1] + frames, options.generation.seed,
                                 sentence_index)
        mel = self.s2mel.infer_mel(prompt.semantic[None].float(), prompt.mel[None].float(), prompt.style[None].float(),
                                   content.float(), frames, noise)
        return self.vocoder(mel).float().reshape(-1).cpu().numpy()

    def s2mel_noise(self, bands: int, frames: int, seed: int | None, sentence_index: int) -> torch.Tensor:
        """The flow's initial sample (1, bands, frames), drawn on the CPU from ``seed + sentence_index`` when seeded."""
        generator = None if seed is None else torch.Generator().manual_seed(seed + sentence_index)
        return torch.randn(1, bands, frames, generator=generator).to(self.device)


def load_v2_speech(base, device: str | torch.device = "auto", precision: str = "auto", vocoder_precision: str = "fp32",
                   allow_base_mismatch: bool = False, cpu_quantization: str | None = None,
                   vocoder_mode: str = "auto") -> tuple:
    """(SpeechModelsV2, text front, base, allow_base_mismatch) of a generation-2 CheckpointFolder ``base``.

    The text front is the IndexTTS-2 TextTokenizer or 2.5's :class:`SentenceSplitter25`. The 1.x-only
    runtime options (``vocoder_precision`` other than fp32, ``cpu_quantization``) raise InferenceError.
    """
    if vocoder_precision != "fp32" or cpu_quantization is not None:
        raise InferenceError(
            f"vocoder_precision={vocoder_precision} and cpu_quantization={cpu_quantization} apply to IndexTTS 1.x "
            f"only; {base.family} ({base.root}) runs its codec, S2Mel and BigVGAN v2 in fp32 and does not quantise "
            "its GPT. Leave them at their defaults.")
    models = SpeechModelsV2(base.v2, device, precision, vocoder_mode)
    if base.family.multilingual:
        text = SentenceSplitter25(base.v2.tokenizer(), TextNormalizerV2.for_model_dir(base.root))
    else:
        text = base.v2.tokenizer()
    return models, text, base, allow_base_mismatch
