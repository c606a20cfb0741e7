"""The models of an opened IndexTTS-2 / 2.5 base folder, each loaded strictly on request.

:class:`V2Models` is what ``CheckpointFolder.v2`` holds for a generation-2 folder: the folder's
files (:class:`~indextts.v2.folder.V2Files`, already found) and its config, and one loader per part
of the pipeline (text -> semantic codes -> mel -> waveform):

- ``semantic_front``: w2v-BERT 2.0 features of 16 kHz audio (hidden state 17, normalised);
- ``semantic_codec``: features -> semantic codes, and codes -> embeddings for S2Mel;
- ``gpt``: conditioning (speaker latents or the 2.5 CAMPPlus row, the emotion vector) and codes;
- ``s2mel`` + ``campplus`` (the style of the prompt) + ``vocoder`` (BigVGAN v2): codes to waveform;
- ``emotion``: the eight-emotion matrices; ``tokenizer``: text -> ids.

Each part is read with ``weights_only=True`` or safetensors and ``strict=True``; the dims of each
come from the config once (``indextts.v2.*.dims``). The part modules are imported when a part is
loaded, so that opening a folder does not import transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.families import Family
from indextts.v2.folder import V2Files

DEVICE = str | torch.device


@dataclass
class V2Models:
    """Loaders of the parts of an IndexTTS-2 / 2.5 base folder ``root`` (files already resolved)."""

    root: Path
    cfg: DictConfig
    family: Family
    paths: V2Files

    @property
    def uses_gpt_layer(self) -> bool:
        """IndexTTS-2 adds projected GPT latents to the S2Mel content; 2.5 decodes codes with its codec alone."""
        return not self.family.multilingual

    @cached_property
    def gpt_dims(self):
        from indextts.v2.gpt.dims import GPTV2Dims

        return GPTV2Dims.from_config(self.cfg)

    @cached_property
    def s2mel_dims(self):
        from indextts.v2.s2mel.dims import S2MelDims

        return S2MelDims.from_config(self.cfg)

    def load_gpt(self, device: DEVICE = "cpu"):
        """UnifiedVoiceV2 from ``gpt.pth``, float32, eval mode."""
        from indextts.v2.gpt.loading import load_gpt_v2

        return load_gpt_v2(self.paths.gpt, self.gpt_dims, device, self.root / CONFIG_FILENAME)

    def load_semantic_front(self, device: DEVICE = "cpu"):
        """The w2v-BERT front (``W2VBertFront``) with the release statistics."""
        from indextts.v2.semantic.w2v_bert import W2VBertDims, W2VBertFront

        hidden_state = W2VBertDims.from_config(self.cfg).hidden_state
        return W2VBertFront.from_files(self.paths.w2v_bert, self.paths.w2v_stats, hidden_state).to(device).eval()

    def load_semantic_codec(self, device: DEVICE = "cpu"):
        """The semantic codec: MaskGCT's (2) or the release's ``codec.pth`` (2.5)."""
        from indextts.v2.semantic.codec import SemanticCodecDims
        from indextts.v2.semantic.files import load_semantic_codec

        return load_semantic_codec(self.paths.semantic_codec, SemanticCodecDims.from_config(self.cfg), device)

    def load_s2mel(self, device: DEVICE = "cpu"):
        """S2Mel (length regulator, DiT flow matching, and the 2's ``gpt_layer``)."""
        from indextts.v2.s2mel.checkpoint import load_s2mel

        return load_s2mel(self.paths.s2mel, self.s2mel_dims, self.uses_gpt_layer, device)

    def load_campplus(self, device: DEVICE = "cpu"):
        """The CAMPPlus speaker encoder (the prompt's style for S2Mel; 2.5's speaker condition)."""
        from indextts.v2.campplus import CAMPPlusDims, load_campplus

        return load_campplus(self.paths.campplus, CAMPPlusDims.from_config(self.cfg), device)

    def load_vocoder(self, device: DEVICE = "cpu"):
        """BigVGAN v2 (22.05 kHz, 80 bands) from its hub folder."""
        from indextts.v2.vocoder import load_bigvgan_v2

        return load_bigvgan_v2(self.paths.bigvgan, device)

    def load_emotion(self, device: DEVICE = "cpu"):
        """The speaker and emotion matrices (``feat1.pt``, ``feat2.pt``) split by ``emo_num``."""
        from indextts.v2.emotion import load_emotion_matrices

        return load_emotion_matrices(self.root, self.cfg).to(device)

    def tokenizer(self):
        """The text tokenizer: ``bpe.model`` with the IndexTTS-2 normaliser, or 2.5's tiktoken vocabulary."""
        if self.family.multilingual:
            from indextts.v2.text25 import Tokenizer25

            return Tokenizer25.from_file(self.paths.bpe)
        from indextts.v2.text import load_v2_tokenizer

        return load_v2_tokenizer(self.root, self.cfg)
