"""What extraction asks of a base folder's model family: one implementation per model generation.

``extraction_family(folder)`` is the one place that chooses: ``MelCodeExtraction`` for IndexTTS
1.0/1.5 (generation 1) and ``SemanticExtraction`` for IndexTTS-2/2.5 (generation 2). Each says

- at which rate a worker reads the audio (``sample_rate``; resampled once from the file's rate)
  and which rate each part uses (``audio_rates``, recorded in speaker_info.json for generation 2),
  and turns the waveform into the models' input (``model_input``);
- how a transcript is counted (``text_counter``: 2.5 adds the language of the transcript);
- which files the outputs depend on (``required_files``, part of every utterance's fingerprint);
- the models (``load_models``: codes, conditions and, for generation 2, emotion vectors), the
  condition's shape and the emotion vector's width;
- what the speaker entry and the manifest rows add (``speaker_fields``; nothing for generation 1,
  whose files stay as they were).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.contracts import speaker_info
from indextts.errors import CheckpointError, DataError, TextError
from indextts.extraction.features import BpeTextCounter, FeatureModels, MelInput, TextCount

SEMANTIC_CODE_KIND = "semantic"
MEL_CODE_KIND = "mel"


def _check_files(folder: CheckpointFolder, files: list[Path], needs: str) -> list[Path]:
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CheckpointError(
            f"The checkpoint folder {folder.root} lacks {', '.join(missing)}. Extraction needs {needs}: "
            "download the IndexTTS release files into it or pass --model_dir.")
    return files


def mel_code_rate(cfg) -> float:
    """Generation 1's DVAE codes per second of audio: one per ``gpt.mel_length_compression`` samples."""
    return int(cfg.dataset.sample_rate) / int(cfg.gpt.get("mel_length_compression", 1024))


class MelCodeExtraction:
    """Generation 1: DVAE codes over the 24 kHz log-mel; conformer + perceiver latents (32, D)."""

    code_kind = MEL_CODE_KIND
    emotion_dim: int | None = None
    family_version: str | None = None
    """speaker_info.json entries of generation 1 name no family."""

    def __init__(self, folder: CheckpointFolder):
        self.folder = folder
        self.sample_rate = folder.sample_rate
        self.audio_rates = {"mel": self.sample_rate}
        self.code_rate = mel_code_rate(folder.cfg)

    def required_files(self, with_conditions: bool) -> list[Path]:
        paths = self.folder.paths
        files = [self.folder.config_file, paths.dvae, paths.bpe] + ([paths.gpt] if with_conditions else [])
        return _check_files(self.folder, files, f"{CONFIG_FILENAME}, dvae.pth, bpe.model and (with "
                                                "--extract_condition) gpt.pth")

    def condition_shape(self) -> tuple[int, int]:
        return self.folder.condition_latents, int(self.folder.cfg.gpt.model_dim)

    def model_input(self) -> MelInput:
        return MelInput(MelSpectrogramFeatures.from_config(self.folder.cfg.dataset.mel))

    def text_counter(self) -> BpeTextCounter:
        from indextts.text import TextTokenizer

        return BpeTextCounter(partial(TextTokenizer, self.folder.paths.bpe))

    def load_models(self, device: torch.device, with_conditions: bool, **settings) -> FeatureModels:
        gpt = self.folder.load_gpt(device) if with_conditions else None
        return FeatureModels(self.folder.load_dvae(device), gpt, device, **settings)

    def speaker_fields(self) -> dict:
        return {}


class Text25Counter:
    """IndexTTS-2.5's count: the language read from the script, then its prefix and prepared text."""

    def __init__(self, vocabulary: Path, model_dir: Path):
        self.vocabulary, self.model_dir = vocabulary, model_dir
        self._loaded = None

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _loaded=None)

    def load(self):
        if self._loaded is None:
            from indextts.v2.text import TextNormalizerV2
            from indextts.v2.text25 import Tokenizer25

            self._loaded = Tokenizer25.from_file(self.vocabulary), TextNormalizerV2.for_model_dir(self.model_dir)
        return self._loaded

    def count(self, text: str) -> TextCount:
        from indextts.v2.text25 import detect_language, encode_prepared, language_id, prepare_text

        tokenizer, normalizer = self.load()
        language = detect_language(text)
        prepared = prepare_text(text, language, normalizer)
        if not prepared.strip():
            raise TextError("the transcript has no token after normalisation")
        return TextCount(len(encode_prepared(tokenizer, prepared, language)), [], language, language_id(language))


class SemanticExtraction:
    """Generation 2: w2v-BERT -> semantic codec codes; speaker latents (32, D) or 2.5's CAMPPlus row (1, D);
    the emotion vector (D,). Every part reads 16 kHz audio."""

    code_kind = SEMANTIC_CODE_KIND

    def __init__(self, folder: CheckpointFolder):
        from indextts.extraction.semantic_features import SEMANTIC_SAMPLE_RATE

        self.folder, self.models = folder, folder.v2
        self.family_version = folder.family.version
        self.multilingual = folder.family.multilingual
        self.sample_rate = SEMANTIC_SAMPLE_RATE
        self.audio_rates = {"w2v_bert": SEMANTIC_SAMPLE_RATE}
        if self.multilingual:
            self.audio_rates["campplus_fbank"] = SEMANTIC_SAMPLE_RATE
        self.emotion_dim = int(folder.cfg.gpt.model_dim)
        self.code_rate = self._semantic_code_rate()

    def _semantic_code_rate(self) -> float:
        """Semantic codes per second: Kaldi frames every HOP samples, stacked in pairs by the w2v-BERT
        extractor (50 Hz), halved again by a codec that downsamples (2.5: 25 Hz)."""
        from indextts.v2.semantic.codec import SemanticCodecDims
        from indextts.v2.semantic.features import HOP, PAD_MULTIPLE

        scale = SemanticCodecDims.from_config(self.folder.cfg).downsample_scale
        return self.sample_rate / (HOP * PAD_MULTIPLE * scale)

    def required_files(self, with_conditions: bool) -> list[Path]:
        """Config, tokenizer (and glossary), w2v-BERT and its statistics, codec; with conditions the GPT
        and 2.5's CAMPPlus: each checked to exist."""
        from indextts.v2.text import GLOSSARY_FILE

        paths, glossary = self.models.paths, self.folder.root / GLOSSARY_FILE
        files = [self.folder.config_file, paths.bpe, paths.w2v_stats, paths.semantic_codec,
                 *sorted(p for p in paths.w2v_bert.iterdir() if p.is_file()), *([glossary] if glossary.is_file() else [])]
        if with_conditions:
            files += [paths.gpt] + ([paths.campplus] if self.multilingual else [])
        return _check_files(self.folder, files, f"its {self.folder.family} release and auxiliary files")

    def condition_shape(self) -> tuple[int, int]:
        latents = 1 if self.multilingual else int(self.models.gpt_dims.condition_num_latent)
        return latents, int(self.folder.cfg.gpt.model_dim)

    def model_input(self):
        from indextts.extraction.semantic_features import WaveformInput

        return WaveformInput()

    def text_counter(self):
        if self.multilingual:
            return Text25Counter(self.models.paths.bpe, self.folder.root)
        from indextts.v2.text import load_v2_tokenizer

        return BpeTextCounter(partial(load_v2_tokenizer, self.folder.root, self.folder.cfg))

    def load_models(self, device: torch.device, with_conditions: bool, **settings):
        from indextts.extraction.semantic_features import SemanticFeatureModels

        models = self.models
        gpt = models.load_gpt(device) if with_conditions else None
        campplus = models.load_campplus(device) if with_conditions and self.multilingual else None
        return SemanticFeatureModels(models.load_semantic_front(device), models.load_semantic_codec(device), gpt,
                                     campplus, device, **settings)

    def speaker_fields(self) -> dict:
        """What training checks before it uses the data: the family, the code kind and the audio rates."""
        return {"family": self.family_version, "code_kind": self.code_kind, "audio_rates": self.audio_rates}


def extraction_family(folder: CheckpointFolder) -> MelCodeExtraction | SemanticExtraction:
    """The extraction of ``folder``'s model generation."""
    return MelCodeExtraction(folder) if folder.family.generation == 1 else SemanticExtraction(folder)


def check_output_family(root: Path, family: MelCodeExtraction | SemanticExtraction) -> None:
    """Refuse an output folder whose speaker_info.json holds speakers of another model family.

    Training reads one family's codes and conditions, so one output folder holds one family's data
    (IndexTTS 1.0 and 1.5 count as one: their entries name no family).
    """
    entries = speaker_info.read_speaker_entries(root / speaker_info.SPEAKER_INFO)
    others = [entry for entry in entries if entry.get("family") != family.family_version]
    if others:
        names = ", ".join(f"{e['speaker']} ({speaker_info.entry_family_name(e)})" for e in others[:5])
        raise DataError(
            f"{root / speaker_info.SPEAKER_INFO} already holds speakers extracted with another model family "
            f"({names}), and {family.folder.root} is {family.folder.family}. One output folder holds the data of "
            "one family, because training uses only data of its own base's family. Pass another --output_dir "
            "(nothing was written).")
