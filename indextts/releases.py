"""The IndexTTS releases that ``indextts download`` fetches, and the folder layout it writes.

One folder per release, ``DIR``::

    DIR/                                   the release repository's files (config.yaml, gpt.pth, ...)
    DIR/hf_cache/w2v-bert-2.0/             facebook/w2v-bert-2.0: config.json, preprocessor_config.json,
                                           model.safetensors (IndexTTS-2 / 2.5)
    DIR/hf_cache/semantic_codec_model.safetensors
                                           amphion/MaskGCT semantic_codec/model.safetensors (IndexTTS-2)
    DIR/hf_cache/campplus_cn_common.bin    funasr/campplus (IndexTTS-2 / 2.5)
    DIR/hf_cache/bigvgan/                  nvidia/bigvgan_v2_22khz_80band_256x: config.json,
                                           bigvgan_generator.pt (IndexTTS-2 / 2.5)
    DIR/.indextts-download.json            written last: the release, commits and verified files

``hf_cache/`` is the layout the IndexTTS-2.5 reference reads (``<model_dir>/hf_cache/...``), so one
folder serves both. IndexTTS-2.5 ships its semantic codec as ``codec.pth`` in the release itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from indextts.checkpoint_folder.layout import CONFIG_FILENAME, DEFAULT_MODEL_DIR

AUX_DIR = "hf_cache"


@dataclass(frozen=True)
class RepoFiles:
    """The files taken from one hub repository and where each lands inside the release folder."""

    repo_id: str
    files: dict[str, str]
    """repo path -> path inside the folder; every one must exist in the repository."""
    whole_repo: bool = False
    """Also take every other file of the repository (except ``.gitattributes``) at its own path."""
    follows_revision: bool = False
    """``--revision`` applies to this repository (the release); auxiliary models use their main branch."""


@dataclass(frozen=True)
class Release:
    """One downloadable release: its name, default folder, repositories and packaged config."""

    name: str
    default_dir: str
    repos: tuple[RepoFiles, ...]
    packaged_config: str | None = None
    """A ``RELEASE_CONFIGS`` key whose packaged yaml becomes ``config.yaml`` (1.0 ships none)."""


def _same_names(*names: str) -> dict[str, str]:
    return {name: name for name in names}


W2V_BERT = RepoFiles("facebook/w2v-bert-2.0", {
    name: f"{AUX_DIR}/w2v-bert-2.0/{name}" for name in ("config.json", "preprocessor_config.json", "model.safetensors")})
MASKGCT_CODEC = RepoFiles("amphion/MaskGCT", {
    "semantic_codec/model.safetensors": f"{AUX_DIR}/semantic_codec_model.safetensors"})
CAMPPLUS = RepoFiles("funasr/campplus", {"campplus_cn_common.bin": f"{AUX_DIR}/campplus_cn_common.bin"})
BIGVGAN_V2 = RepoFiles("nvidia/bigvgan_v2_22khz_80band_256x", {
    name: f"{AUX_DIR}/bigvgan/{name}" for name in ("config.json", "bigvgan_generator.pt")})

RELEASES: dict[str, Release] = {
    "1.5": Release("IndexTTS-1.5", str(DEFAULT_MODEL_DIR), (RepoFiles(
        "IndexTeam/IndexTTS-1.5", _same_names(CONFIG_FILENAME, "bpe.model", "gpt.pth", "dvae.pth",
                                              "bigvgan_generator.pth"), follows_revision=True),)),
    "1.0": Release("IndexTTS-1.0", f"{DEFAULT_MODEL_DIR}/indextts-1.0", (RepoFiles(
        "IndexTeam/Index-TTS", _same_names("bpe.model", "gpt.pth", "dvae.pth", "bigvgan_generator.pth"),
        follows_revision=True),), packaged_config="IndexTTS-1.0"),
    "2": Release("IndexTTS-2", f"{DEFAULT_MODEL_DIR}/indextts-2", (RepoFiles(
        "IndexTeam/IndexTTS-2", _same_names(CONFIG_FILENAME, "bpe.model", "gpt.pth", "s2mel.pth",
                                            "wav2vec2bert_stats.pt", "feat1.pt", "feat2.pt"),
        whole_repo=True, follows_revision=True), W2V_BERT, MASKGCT_CODEC, CAMPPLUS, BIGVGAN_V2)),
    "2.5": Release("IndexTTS-2.5", f"{DEFAULT_MODEL_DIR}/indextts-2.5", (RepoFiles(
        "IndexTeam/IndexTTS-2.5", _same_names(CONFIG_FILENAME, "codec.pth"), whole_repo=True,
        follows_revision=True), W2V_BERT, CAMPPLUS, BIGVGAN_V2)),
}
"""version as typed on the command line -> release."""
