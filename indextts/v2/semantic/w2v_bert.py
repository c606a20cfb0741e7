"""The w2v-BERT 2.0 front of IndexTTS-2: 16 kHz audio -> normalised hidden state 17, (B, T, 1024).

``Wav2Vec2BertModel`` is transformers' own: a stock architecture, so writing it again would only add
risk. Its input features (Kaldi-style 80-band fbank, per-utterance normalisation, frames stacked by
2 -> 160 values at 50 Hz) are computed by ``features.SeamlessFeatures`` for a whole padded batch in
torch, with the window and filters of transformers' ``SeamlessM4TFeatureExtractor`` read from the folder. Both
are read from a local folder (``<model_dir>/hf_cache/w2v-bert-2.0/`` or an explicit path) with
``local_files_only``; the layers after the hidden state used are dropped after the strict load,
since their output is never read. The hidden state is normalised by ``wav2vec2bert_stats.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from indextts.config import CONFIG_FILENAME
from indextts.dims import SectionDims
from indextts.errors import AudioError, CheckpointError, ConfigError
from indextts.families import family_of
from indextts.releases import W2V_BERT
from indextts.v2.semantic.features import FRAME, HOP, MIN_FRAMES, SeamlessFeatures
from indextts.v2.semantic.files import load_w2v_stats, w2v_bert_files

SAMPLE_RATE = 16000
MIN_SAMPLES = FRAME + HOP * (MIN_FRAMES - 1)
W2V_BERT_DIR = Path(next(iter(W2V_BERT.files.values()))).parent
"""``hf_cache/w2v-bert-2.0`` inside a model folder."""
STATS_FILE = "wav2vec2bert_stats.pt"
"""The release file name, used when the config has no ``w2v_stat`` key."""


@dataclass(frozen=True, kw_only=True)
class W2VBertDims(SectionDims):
    """The config's ``w2v_bert`` section (absent in the release config, whose values are the defaults)."""

    section: ClassVar[str] = "w2v_bert"
    optional: ClassVar[bool] = True
    hidden_state: int = 17
    """Index into ``hidden_states`` (0 = the projected input features, i = the output of layer i)."""


def _load_model(folder: Path):
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    from transformers.utils import logging as transformers_logging

    extractor = SeamlessM4TFeatureExtractor.from_pretrained(folder, local_files_only=True)
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # a local load of one model: its bar is noise in every command
    try:
        model, info = Wav2Vec2BertModel.from_pretrained(
            folder, local_files_only=True, output_loading_info=True, dtype=torch.float32)
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
    problems = {key: sorted(info[key]) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")
                if info.get(key)}
    if problems:
        raise CheckpointError(
            f"The w2v-BERT weights in {folder} do not fit its config.json ({problems}). Fetch the "
            f"folder again from {W2V_BERT.repo_id} (`indextts download 2`).")
    return extractor, model


class W2VBertFront(nn.Module):
    """Feature extractor + ``Wav2Vec2BertModel`` up to ``hidden_state`` + the release statistics."""

    def __init__(self, extractor, model: nn.Module, mean: torch.Tensor, std: torch.Tensor, hidden_state: int):
        super().__init__()
        layers = model.config.num_hidden_layers
        if not 0 <= hidden_state <= layers:
            raise ConfigError(
                f"w2v_bert.hidden_state is {hidden_state}, but the w2v-BERT model has {layers} layers: "
                f"set it between 0 and {layers} in {CONFIG_FILENAME} (the release uses 17).")
        width = model.config.hidden_size
        if mean.shape != (width,) or std.shape != (width,):
            raise CheckpointError(
                f"The w2v-BERT statistics hold {tuple(mean.shape)} values but the model's hidden size is "
                f"{width}: the statistics file and the w2v-BERT folder do not belong together.")
        model.encoder.layers = model.encoder.layers[:hidden_state]
        self.features = SeamlessFeatures(extractor)
        self.model = model.eval()
        self.hidden_state = hidden_state
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    @classmethod
    def from_files(cls, w2v_dir: str | Path, stats_path: str | Path, hidden_state: int = 17,
                   version: str = "2") -> W2VBertFront:
        """Load from an explicit w2v-BERT folder and statistics file (local files only).

        ``version``: the release a missing statistics file is fetched with.
        """
        mean, std = load_w2v_stats(stats_path, version)
        extractor, model = _load_model(w2v_bert_files(w2v_dir))
        return cls(extractor, model, mean, std, hidden_state)

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, cfg, w2v_dir: str | Path | None = None) -> W2VBertFront:
        """Load as the release folder lays it out: ``hf_cache/w2v-bert-2.0/`` and ``cfg.w2v_stat``."""
        model_dir = Path(model_dir)
        stats = model_dir / cfg.get("w2v_stat", STATS_FILE)
        family = family_of(cfg, str(model_dir / CONFIG_FILENAME))
        return cls.from_files(w2v_dir or model_dir / W2V_BERT_DIR, stats, W2VBertDims.from_config(cfg).hidden_state,
                              family.version)

    def input_features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, S) zero-padded 16 kHz audio, (B,) sample counts -> features (B, T, 160), attention mask (B, T),
        lengths (B,), as the feature extractor computes them for each row alone (see ``features``)."""
        if int(lengths.min()) < MIN_SAMPLES:
            raise AudioError(
                f"A waveform of {int(lengths.min())} samples is too short for the w2v-BERT front, which needs "
                f"at least {MIN_SAMPLES} samples ({MIN_SAMPLES * 1000 // SAMPLE_RATE} ms at 16 kHz): use a "
                "longer speaker or emotion reference.")
        return self.features(audio.to(self.mean.device), lengths.to(self.mean.device))

    @torch.no_grad()
    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, F, 160) features, (B, F) mask -> (B, F, C) normalised hidden state ``hidden_state``."""
        output = self.model(input_features=input_features, attention_mask=attention_mask, output_hidden_states=True)
        return (output.hidden_states[self.hidden_state] - self.mean) / self.std

    def embed(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) zero-padded 16 kHz audio, (B,) sample counts -> normalised features (B, T, C), lengths (B,)."""
        features, mask, lengths = self.input_features(audio, lengths)
        return self(features, mask), lengths

    def embed_waveforms(self, waveforms: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``embed`` of 16 kHz waveforms (S_i,) of any lengths."""
        lengths = torch.tensor([w.shape[-1] for w in waveforms])
        return self.embed(pad_sequence([w.float() for w in waveforms], batch_first=True), lengths)


def save_tiny_w2v_bert(folder: str | Path, hidden_size: int = 16, num_layers: int = 17, seed: int = 0) -> Path:
    """Write a random tiny ``Wav2Vec2BertModel`` and its ``preprocessor_config.json`` in transformers' format.

    The architecture is the release's (relative-key attention, conformer convolution, 160 input
    values) at a tiny width, with ``num_layers`` >= the hidden state used (17), for tests and demos.
    """
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    config = Wav2Vec2BertConfig(
        hidden_size=hidden_size, output_hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=2, intermediate_size=2 * hidden_size, conv_depthwise_kernel_size=5)
    folder = Path(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Wav2Vec2BertModel(config)
    model.save_pretrained(folder)
    SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder
