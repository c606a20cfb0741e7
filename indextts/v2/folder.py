"""The files of an IndexTTS-2 / 2.5 base folder and of the auxiliary models it needs, found locally.

The release folder holds the GPT, S2Mel, the w2v-BERT statistics and the emotion matrices. Four
auxiliary models come from other hub repositories (``indextts.releases`` lists them): w2v-BERT 2.0,
the MaskGCT semantic codec (IndexTTS-2; 2.5 ships ``codec.pth`` in its release), CAMPPlus and
BigVGAN v2. Each auxiliary model is taken from, in this order: an explicit path the caller gives
(``aux_paths``), the folder's ``hf_cache/`` (the layout of the 2.5 reference and of
``indextts download``), or the local Hugging Face hub cache, where the IndexTTS-2 reference's
own downloads land. Nothing is downloaded here: a missing file raises one message that names it,
the repository it comes from and the command that fetches it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from indextts.errors import ConfigError
from indextts.families import Family
from indextts.releases import BIGVGAN_V2, CAMPPLUS, MASKGCT_CODEC, W2V_BERT, RepoFiles, missing_file_error


@dataclass(frozen=True)
class AuxModel:
    """An auxiliary model: what it is, its hub repository, and the files that make it up."""

    key: str
    description: str
    repo: RepoFiles

    @property
    def local_paths(self) -> dict[str, str]:
        """Repository file -> path inside the base folder (``hf_cache/...``)."""
        return self.repo.files

    @property
    def is_folder(self) -> bool:
        """A model made of several files (a transformers or BigVGAN folder) is given as their folder."""
        return len(self.repo.files) > 1

    def in_folder(self, root: Path) -> Path:
        """Where the model lies inside the base folder: the common folder of its files, or its one file."""
        first = root / next(iter(self.local_paths.values()))
        return first.parent if self.is_folder else first


AUX_MODELS: dict[str, AuxModel] = {model.key: model for model in (
    AuxModel("w2v_bert", "w2v-BERT 2.0 speech encoder", W2V_BERT),
    AuxModel("semantic_codec", "MaskGCT semantic codec", MASKGCT_CODEC),
    AuxModel("campplus", "CAMPPlus speaker encoder", CAMPPLUS),
    AuxModel("bigvgan", "BigVGAN v2 vocoder (22.05 kHz, 80 bands)", BIGVGAN_V2),
)}
"""``aux_paths`` key -> auxiliary model."""

CODEC_FILE_25 = "codec.pth"
"""IndexTTS-2.5 ships its semantic codec in the release folder instead of using MaskGCT's."""
VOCAB_FILE_25 = "multilingual_zh_ja_yue_char_del.tiktoken"
"""IndexTTS-2.5's tokenizer vocabulary (its config names no ``bpe_model``)."""


def _hub_cached(model: AuxModel) -> Path | None:
    """The model in the local Hugging Face cache (no network): its file, or the folder of all its files."""
    from huggingface_hub import try_to_load_from_cache

    found = [try_to_load_from_cache(model.repo.repo_id, name) for name in model.local_paths]
    if not all(isinstance(path, str) for path in found):
        return None
    return Path(found[0]).parent if model.is_folder else Path(found[0])


def _absent_file(model: AuxModel, path: Path) -> Path | None:
    """The first file of ``model`` missing at ``path`` (its file, or the folder of its files); None if complete."""
    files = [path / Path(local).name for local in model.local_paths.values()] if model.is_folder else [path]
    return next((file for file in files if not file.is_file()), None)


def find_aux_model(family: Family, root: Path, key: str, explicit: str | Path | None = None) -> Path:
    """The local path of auxiliary model ``key``; CheckpointError naming the file, repository and command."""
    model = AUX_MODELS[key]
    path = Path(explicit).expanduser() if explicit is not None else model.in_folder(root)
    absent = _absent_file(model, path)
    if absent is None:
        return path.resolve()
    cached = _hub_cached(model) if explicit is None else None
    if cached is not None:
        return cached
    searched = "" if explicit is not None else " (the local Hugging Face cache does not hold it either)"
    raise missing_file_error(absent, f"{model.description} file", family.version, model.repo, root,
                             f"give its {'folder' if model.is_folder else 'file'} as auxiliary model path "
                             f"'{key}'{searched}")


@dataclass(frozen=True)
class V2Files:
    """Absolute paths of everything an IndexTTS-2 / 2.5 base folder uses (``qwen`` may be None)."""

    gpt: Path
    s2mel: Path
    w2v_stats: Path
    emotion_matrix: Path
    speaker_matrix: Path
    bpe: Path
    """The tokenizer's BPE vocabulary: ``bpe.model`` (2) or the tiktoken rank file (2.5)."""
    qwen: Path | None
    w2v_bert: Path
    semantic_codec: Path
    campplus: Path
    bigvgan: Path

    @classmethod
    def resolve(cls, root: Path, cfg: Mapping, family: Family,
                aux_paths: Mapping[str, str | Path] | None = None) -> V2Files:
        """Every file, checked to exist; ``aux_paths`` maps ``AUX_MODELS`` keys to explicit paths."""
        aux = dict(aux_paths or {})
        unknown = sorted(set(aux) - set(AUX_MODELS))
        if unknown:
            raise ConfigError(f"Unknown auxiliary model name(s) {unknown}; the names are {sorted(AUX_MODELS)}.")
        release = {name: _release_file(family, root, cfg[key]) for name, key in _RELEASE_KEYS.items()}
        bpe_name = VOCAB_FILE_25 if family.multilingual else cfg["dataset"]["bpe_model"]
        qwen = root / str(cfg["qwen_emo_path"]).strip() if cfg.get("qwen_emo_path") else None
        if family.multilingual:
            codec = _release_file(family, root, CODEC_FILE_25)
        else:
            codec = find_aux_model(family, root, "semantic_codec", aux.get("semantic_codec"))
        return cls(**release, bpe=_release_file(family, root, bpe_name),
                   qwen=qwen if qwen is not None and qwen.is_dir() else None,
                   w2v_bert=find_aux_model(family, root, "w2v_bert", aux.get("w2v_bert")),
                   semantic_codec=codec,
                   campplus=find_aux_model(family, root, "campplus", aux.get("campplus")),
                   bigvgan=find_aux_model(family, root, "bigvgan", aux.get("bigvgan")))


_RELEASE_KEYS = {"gpt": "gpt_checkpoint", "s2mel": "s2mel_checkpoint", "w2v_stats": "w2v_stat",
                 "emotion_matrix": "emo_matrix", "speaker_matrix": "spk_matrix"}
"""``V2Files`` field -> the config key naming that release file."""


def _release_file(family: Family, root: Path, name: str) -> Path:
    path = root / str(name).strip()
    if not path.is_file():
        raise missing_file_error(path, f"{family} release file", family.version, model_dir=root)
    return path
