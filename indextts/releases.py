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

A file of a release that is not on disk is reported by :func:`missing_file_error`, the one message
that names the file, where it comes from and the command that fetches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indextts.checkpoint_folder.layout import CONFIG_FILENAME, DEFAULT_MODEL_DIR
from indextts.errors import CheckpointError

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


def _model_dir_of(path: Path) -> Path:
    """The release folder ``path`` belongs in: the folder above ``hf_cache/``, else the file's own folder."""
    parts = path.parts[:-1]
    return Path(*parts[:parts.index(AUX_DIR)]) if AUX_DIR in parts else path.parent


def _repo_files(source: RepoFiles, path: Path) -> str:
    """The file of ``source`` that ``path`` is (matched by name), else all the files it takes from there."""
    for repo_file, local in source.files.items():
        if Path(local).name == path.name:
            return repo_file
    return path.name if source.whole_repo else ", ".join(source.files)


def missing_file_error(path: str | Path, what: str, version: str, source: RepoFiles | None = None,
                       model_dir: str | Path | None = None, remedy: str = "") -> CheckpointError:
    """The error for a release file that does not exist: the file, the hub repository and the file in
    it that it comes from, and the ``indextts download`` command that fetches it.

    ``version`` is the release (a ``RELEASES`` key) to download; ``source`` the repository (default:
    that release's own); ``model_dir`` the folder to download into (default: the one ``path`` belongs
    in); ``remedy`` a further way out, appended as ", or ...".
    """
    path = Path(path)
    source = source or RELEASES[version].repos[0]
    folder = _model_dir_of(path) if model_dir is None else Path(model_dir)
    return CheckpointError(
        f"The {what} {path} does not exist. It comes from the Hugging Face repository {source.repo_id} "
        f"({_repo_files(source, path)}); fetch it with `indextts download {version} --dir {folder}` "
        f"(nothing is downloaded otherwise){', or ' + remedy if remedy else ''}.")
