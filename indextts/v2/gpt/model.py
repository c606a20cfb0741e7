"""UnifiedVoice v2: the IndexTTS-2 / 2.5 GPT that maps (speaker, emotion, text) to semantic codes.

The GPT-2 stack, the text/mel embeddings, heads and the segment layout are those of IndexTTS 1.5
(``indextts.gpt.model.UnifiedVoice``, reused). What changes is the conditioning prefix before the text:

    IndexTTS-2:   [32 speaker latents + emotion vector | speed_emb(1) | speed_emb(0)]   (34 rows)
    IndexTTS-2.5: [spk_emb_proj(CAMPPlus) + emotion vector | 0 | 0]                     (3 rows)

- speaker latents: a conformer + perceiver over w2v-BERT features (B, T, 1024), as 1.5 does over mels;
- emotion vector: a second conformer + a one-latent perceiver over w2v-BERT features (of the emotion
  reference), then ``emovec_layer`` and ``emo_layer``; two references are blended with ``alpha``;
- the two duration rows are the speed embeddings the reference always feeds (index 1, then 0); IndexTTS-2.5
  has no speed embedding and feeds two zero rows;
- IndexTTS-2.5 adds a language embedding to every text row (start and stop included).

Build it with ``UnifiedVoiceV2(GPTV2Dims.from_config(cfg))``; load ``gpt.pth`` with
``indextts.v2.gpt.loading.load_gpt_v2``.
"""

from __future__ import annotations

import torch
from torch import nn

from indextts.errors import DataError, InferenceError
from indextts.gpt.conformer import length_mask
from indextts.gpt.decode_step import GENERATED_POSITION_OFFSET
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.gpt.model import TrainOutput, UnifiedVoice, build_conformer_perceiver
from indextts.v2.gpt.dims import GPTV2Dims

DURATION_ROWS = 2
"""Rows after the speaker/emotion row(s) in the prefix: the two duration (speed) embeddings."""
SPEED_INDEX_HALF, SPEED_INDEX_FULL = 1, 0
"""``speed_emb`` rows the reference feeds, in prefix order (its ``duration_emb_half``, then ``duration_emb``)."""


class UnifiedVoiceV2(UnifiedVoice):
    """The IndexTTS-2 / 2.5 GPT, built from its dims; state dict names as in the release ``gpt.pth``."""

    def __init__(self, dims: GPTV2Dims):
        super().__init__(dims)
        self.spk_cond_mode = dims.spk_cond_mode

    @property
    def uses_campplus(self) -> bool:
        """Whether the speaker row is a projected CAMPPlus embedding (IndexTTS-2.5)."""
        return self.spk_cond_mode == "campplus"

    def _build_conditioning(self, dims: GPTV2Dims) -> None:
        """Speaker (conformer + perceiver, or CAMPPlus projection), emotion and duration/language modules."""
        if dims.uses_campplus:
            self.spk_emb_proj = nn.Linear(dims.campplus_dim, dims.model_dim)
        else:
            self.conditioning_encoder, self.perceiver_encoder = build_conformer_perceiver(
                dims.condition_input_dim, dims.model_dim, dims.condition_module, dims.condition_num_latent)
        self.emo_conditioning_encoder, self.emo_perceiver_encoder = build_conformer_perceiver(
            dims.condition_input_dim, dims.emotion_latent_dim, dims.emo_condition_module, 1)
        if dims.uses_campplus:
            self.lang_embedding = nn.Embedding(dims.num_languages + 1, dims.model_dim)
        self.emo_layer = nn.Linear(dims.model_dim, dims.model_dim)
        self.emovec_layer = nn.Linear(dims.emotion_latent_dim, dims.model_dim)
        if not dims.uses_campplus:
            self.speed_emb = nn.Embedding(2, dims.model_dim)
            nn.init.zeros_(self.speed_emb.weight)  # the reference initialises it with std 0

    def _check_mel_length(self, length: int, position_offset: int = 0) -> None:
        """As 1.5, counted in semantic codes (1.5's estimate in seconds of 24 kHz audio does not apply)."""
        if length + position_offset + 2 > self.mel_pos_embedding.length:
            raise DataError(
                f"A clip has {length} semantic codes but the GPT accepts at most {self.max_mel_tokens} "
                "(gpt.max_mel_tokens). Leave longer clips out of the dataset or cut them."
            )

    def get_conditioning(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """IndexTTS-2 speaker latents: features (B, T, 1024) w2v-BERT, lengths (B,) or None -> (B, 32, D)."""
        if self.uses_campplus:
            raise InferenceError(
                "This IndexTTS-2.5 GPT conditions on a CAMPPlus speaker embedding, not on w2v-BERT features: "
                "call campplus_conditioning with the (B, 192) embedding instead of get_conditioning."
            )
        encoded, mask = self.conditioning_encoder(features, lengths)
        return self.perceiver_encoder(encoded, mask)

    def campplus_conditioning(self, embedding: torch.Tensor) -> torch.Tensor:
        """IndexTTS-2.5 speaker row: CAMPPlus embedding (B, 192) -> (B, 1, D)."""
        if not self.uses_campplus:
            raise InferenceError(
                "This IndexTTS-2 GPT conditions on w2v-BERT features (get_conditioning); only an IndexTTS-2.5 "
                "GPT (gpt.spk_cond_mode: campplus) takes a CAMPPlus embedding."
            )
        return self.spk_emb_proj(embedding).unsqueeze(1)

    def emotion_vector(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Emotion vector of a reference: features (B, T, 1024) w2v-BERT, lengths (B,) or None -> (B, D)."""
        encoded, mask = self.emo_conditioning_encoder(features, lengths)
        latent = self.emo_perceiver_encoder(encoded, mask)[:, 0]  # (B, emotion_latent_dim)
        return self.emo_layer(self.emovec_layer(latent))

    def merge_emotion(self, speaker_features: torch.Tensor, emotion_features: torch.Tensor,
                      speaker_lengths: torch.Tensor | None = None, emotion_lengths: torch.Tensor | None = None,
                      alpha: float = 1.0) -> torch.Tensor:
        """Blend of the speaker's and the emotion reference's emotion vectors: base + alpha (emo - base), (B, D).

        As the reference's ``merge_emovec``: alpha 1 is the emotion reference alone, 0 the speaker alone.
        """
        base = self.emotion_vector(speaker_features, speaker_lengths)
        emotion = self.emotion_vector(emotion_features, emotion_lengths)
        return base + alpha * (emotion - base)

    def conditioning_prefix(self, speaker: torch.Tensor, emotion: torch.Tensor) -> torch.Tensor:
        """The rows before the text: speaker (B, S, D) latents, emotion (B, D) -> (B, S + 2, D).

        Each speaker row gets the emotion vector added; then the two duration rows (IndexTTS-2:
        ``speed_emb`` 1 and 0; IndexTTS-2.5: zeros).
        """
        batch, _, dim = speaker.shape
        if self.uses_campplus:
            duration = speaker.new_zeros(batch, DURATION_ROWS, dim)
        else:
            indices = torch.tensor([SPEED_INDEX_HALF, SPEED_INDEX_FULL], device=speaker.device)
            duration = self.speed_emb(indices).to(speaker.dtype).unsqueeze(0).expand(batch, -1, -1)
        return torch.cat([speaker + emotion.unsqueeze(1), duration], dim=1)

    def text_inputs(self, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                    languages: torch.Tensor | None = None) -> torch.Tensor:
        """Embedded text segment [start, text..., stop, padding] -> (B, L+2, D); padding rows are 0.

        ``languages`` (B,) language ids (IndexTTS-2.5 only) add ``lang_embedding`` to every valid row.
        """
        embeds = super().text_inputs(text_ids, text_lengths)
        if languages is None:
            return embeds
        if not self.uses_campplus:
            raise InferenceError(
                "Language ids were given to an IndexTTS-2 GPT, which has no language embedding; "
                "pass languages only to an IndexTTS-2.5 model."
            )
        valid = length_mask(text_lengths.to(embeds.device) + 2, embeds.shape[1])
        language = self.lang_embedding(languages.to(embeds.device)).unsqueeze(1)  # (B, 1, D)
        return embeds + language * valid.unsqueeze(-1).to(embeds.dtype)

    def forward_latents(self, prefix: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                        codes: torch.Tensor, code_lengths: torch.Tensor,
                        languages: torch.Tensor | None = None) -> torch.Tensor:
        """GPT latents as the reference's ``forward`` gives S2Mel: prefix (B, C, D) from ``conditioning_prefix``,
        text_ids (B, L), codes (B, N), lengths (B,) -> (B, N, D); row j predicts code j, rows >= length undefined.
        """
        text = self.text_inputs(text_ids, text_lengths, languages)
        _, mel_hidden = self._forward_sequence(prefix, text, text_lengths, codes, code_lengths)
        return mel_hidden[:, : codes.shape[1]]

    def forward_train(self, prefix: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                      codes: torch.Tensor, code_lengths: torch.Tensor, languages: torch.Tensor | None = None,
                      generation_positions: bool = False) -> TrainOutput:
        """Teacher-forced text and code cross-entropy over the conditioning layout of ``inference_speech``.

        Sequence per row: [prefix | start_text, text..., stop_text | start_mel, codes...], padding masked,
        positions restarting at 0 in each segment, as the reference's ``forward``; targets and losses as
        1.5's ``forward_train``. ``generation_positions`` puts code k at mel position k + 1 instead, where
        decoding feeds it (the reference counts the ``start_mel`` step twice): the argmax of those mel
        logits over greedy codes gives back the codes.
        """
        text = self.text_inputs(text_ids, text_lengths, languages)
        offset = GENERATED_POSITION_OFFSET if generation_positions else 0
        return self._train_output(prefix, text, text_ids, text_lengths, codes, code_lengths, offset)

    def generate(self, prefix: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                 config: GenerationConfig | None = None,
                 languages: torch.Tensor | None = None) -> list[torch.LongTensor]:
        """Semantic codes for a batch, as the reference's ``inference_speech`` decodes them.

        prefix (B, C, D), text_ids (B, L) without start/stop tokens, text_lengths (B,); ``config`` as
        ``indextts.gpt.generation.generate_codes`` (greedy: ``do_sample=False, num_beams=1``). One int64
        tensor per row, ending with the stop code when the model produced it.
        """
        with torch.no_grad():
            text = self.text_inputs(text_ids.to(prefix.device), text_lengths.to(prefix.device), languages)
        return generate_codes(self, prefix, text_ids, text_lengths, config, text_embeddings=text)

