"""``indextts download``: a release folder from the model hub, every file verified, resumable.

First a plan: each repository's files with their size and hash, from the hub's metadata (online) or
from the hub cache (offline, or when the hub cannot be reached: ``indextts.hub`` decides within
seconds). Then, per file: keep it when the folder already holds it verified; else copy it from the
hub cache; else download it into ``DIR/.indextts-download/`` with HTTP range requests, so a stopped
download continues from the bytes it has. Each file is verified (size, and the sha256 or git blob
hash the hub gives) before it moves into place. ``config.yaml`` moves in last and the completion
marker after it, so an unfinished folder has no marker (and usually no ``config.yaml``).
The layout is described in ``indextts.releases``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from indextts import __version__
from indextts.atomic_files import write_json_atomic
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.errors import IndexTTSError
from indextts.hub import hub_endpoint, prepare_hub_source
from indextts.releases import RELEASES, Release, RepoFiles

MARKER = ".indextts-download.json"
STAGING = ".indextts-download"
CHUNK_BYTES = 8 << 20
HASH_NAMES = {64: "sha256", 40: "git-sha1"}
"""Length of a hub-cache blob name (its etag) -> the hash it is: LFS files by sha256, others by git blob id."""


@dataclass(frozen=True)
class FileJob:
    """One file of the release folder: where it comes from, where it goes, what it must be."""

    repo_id: str
    revision: str
    """The commit it was listed at (the hub's, or the hub cache's snapshot)."""
    repo_path: str
    local: str
    """Its path inside the release folder ('/'-separated)."""
    size: int
    digest: tuple[str, str] | None
    """(``sha256`` or ``git-sha1``, hex) where the hub or the cache gives one."""
    source: Path | None = None
    """A local copy to take it from (the hub cache, or the packaged 1.0 config); None downloads it."""


def release_named(version: str) -> Release:
    """The release for ``version`` as typed (``1.5``, ``1.0``, ``2``, ``2.5``)."""
    if version not in RELEASES:
        raise IndexTTSError(
            f"'{version}' is not a release that `indextts download` knows. The releases are: "
            + ", ".join(f"{key} ({release.name})" for key, release in RELEASES.items())
            + ". Run for example `indextts download 1.5`.")
    return RELEASES[version]


def file_digest(path: Path, kind: str) -> str:
    """The ``sha256`` or ``git-sha1`` (git's blob id: sha1 of 'blob <size>\\0' + content) of a file."""
    digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def mismatch(path: Path, job: FileJob) -> str:
    """Why ``path`` is not ``job``'s file ('' when it is: the right size and, where known, hash)."""
    size = path.stat().st_size
    if size != job.size:
        return f"{size} bytes instead of {job.size}"
    if job.digest is not None:
        kind, expected = job.digest
        actual = file_digest(path, kind)
        if actual != expected:
            return f"{kind} {actual} instead of {expected}"
    return ""


def _transfer_errors() -> tuple[type[BaseException], ...]:
    """Connection errors of the HTTP clients huggingface_hub uses (httpx2 from 2.x on, httpx before)."""
    clients = [name for name in ("httpx2", "httpx") if importlib.util.find_spec(name)]
    return (OSError, *(importlib.import_module(name).TransportError for name in clients))


def _selected(part: RepoFiles, names: set[str], where: str) -> dict[str, str]:
    """repo path -> folder path of the files to take from ``part``, which lists ``names`` at ``where``."""
    missing = sorted(set(part.files) - names)
    if missing:
        raise IndexTTSError(
            f"{where} lacks {', '.join(missing)}, which the {part.repo_id} part of the release needs. "
            "Nothing was written. Check --revision, or report it if the release repository changed.")
    chosen = dict(part.files)
    if part.whole_repo:
        chosen.update({name: name for name in sorted(names - set(chosen)) if name != ".gitattributes"})
    escaping = [name for name in chosen if name.startswith("/") or ".." in PurePosixPath(name).parts]
    if escaping:
        raise IndexTTSError(f"{where} lists {', '.join(escaping)}, which would land outside the release folder. "
                            "Nothing was written. Check HF_ENDPOINT: the hub does not list such paths.")
    return chosen


def _hub_digest(sibling) -> tuple[str, str] | None:
    if sibling.lfs is not None:
        return "sha256", sibling.lfs.sha256
    return ("git-sha1", sibling.blob_id) if sibling.blob_id else None


def _cached_copy(repo_id: str, repo_path: str, revision: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, repo_path, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _listed_online(part: RepoFiles, revision: str | None) -> list[FileJob]:
    """The files of ``part`` at ``revision`` with the hub's sizes and hashes (one metadata call)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        info = HfApi(endpoint=hub_endpoint()).model_info(part.repo_id, revision=revision, files_metadata=True)
    except (HfHubHTTPError, *_transfer_errors()) as error:
        raise IndexTTSError(
            f"The model hub ({hub_endpoint()}) did not list {part.repo_id} at revision {revision or 'main'}: "
            f"{str(error).splitlines()[0]}. Nothing was written. Check the revision name and the network "
            "(HF_ENDPOINT, proxy, `hf auth login` for a gated repository).") from None
    siblings = {sibling.rfilename: sibling for sibling in info.siblings or ()}
    chosen = _selected(part, set(siblings), f"{part.repo_id} at {revision or 'main'} (commit {info.sha})")
    return [FileJob(part.repo_id, info.sha, path, local, siblings[path].size, _hub_digest(siblings[path]),
                    _cached_copy(part.repo_id, path, info.sha)) for path, local in chosen.items()]


def _blob_digest(cached: Path) -> tuple[str, str] | None:
    """The hash a hub-cache file is stored under (its blob's name), when it is one."""
    name = Path(os.path.realpath(cached)).name
    kind = HASH_NAMES.get(len(name))
    return (kind, name) if kind and re.fullmatch("[0-9a-f]+", name) else None


def _listed_in_cache(part: RepoFiles, revision: str | None, offline_reason: str) -> list[FileJob]:
    """The files of ``part`` from the hub cache alone (its snapshot folder is named by the commit);
    ``offline_reason`` says why, if one is missing."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = None if part.whole_repo else list(part.files)
    try:
        folder = Path(snapshot_download(part.repo_id, revision=revision, allow_patterns=patterns,
                                        local_files_only=True))
    except LocalEntryNotFoundError:
        folder = None
    names = {path.relative_to(folder).as_posix(): path for path in folder.rglob("*")
             if path.is_file()} if folder else {}
    if not set(part.files) <= set(names):
        raise IndexTTSError(
            offline_reason + "Nothing was written. Check the network and HF_ENDPOINT (or unset HF_HUB_OFFLINE), "
            "then run the same command again.")
    chosen = _selected(part, set(names), f"The hub cache's {part.repo_id}")
    return [FileJob(part.repo_id, folder.name, path, local, names[path].stat().st_size,
                    _blob_digest(names[path]), names[path]) for path, local in chosen.items()]


def _packaged_config_job(key: str) -> FileJob:
    from indextts.config import RELEASE_CONFIGS

    path = RELEASE_CONFIGS[key]
    return FileJob("index-tts-lora", __version__, path.name, CONFIG_FILENAME, path.stat().st_size,
                   ("sha256", file_digest(path, "sha256")), path)


def plan(release: Release, revision: str | None) -> list[FileJob]:
    """Every file of ``release``'s folder, config.yaml last; writes nothing.

    Before each repository, ``prepare_hub_source`` probes the hub (once it fails, the hub's offline
    mode is on and the rest come from the cache without a probe)."""
    jobs: list[FileJob] = []
    for part in release.repos:
        part_revision = revision if part.follows_revision else None
        offline_reason = prepare_hub_source(part.repo_id)
        jobs += (_listed_in_cache(part, part_revision, offline_reason) if offline_reason
                 else _listed_online(part, part_revision))
    if release.packaged_config:
        jobs.append(_packaged_config_job(release.packaged_config))
    return sorted(jobs, key=lambda job: (job.local == CONFIG_FILENAME, job.local))


def _fetch(job: FileJob, partial: Path) -> None:
    """Download ``job``'s file into ``partial``, continuing after the bytes it already holds."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    partial.parent.mkdir(parents=True, exist_ok=True)
    if partial.exists() and partial.stat().st_size > job.size:
        partial.unlink()  # longer than the file: not a prefix of it
    url = hf_hub_url(job.repo_id, job.repo_path, revision=job.revision, endpoint=hub_endpoint())
    try:
        with open(partial, "ab") as handle:
            http_get(url, handle, resume_size=handle.tell(), headers=build_hf_headers(),
                     expected_size=job.size, displayed_filename=job.local)
    except (HfHubHTTPError, *_transfer_errors()) as error:
        kept = partial.stat().st_size if partial.exists() else 0
        raise IndexTTSError(
            f"The download of {job.repo_id}/{job.repo_path} stopped: {str(error).splitlines()[0]}. "
            f"The {kept} bytes received are kept in {partial}, and the files finished so far stay in place; "
            "run the same command again to continue from there.") from None


def _install(job: FileJob, folder: Path, report: Callable[[str], None]) -> None:
    """Put ``job``'s verified file at its place in ``folder`` (from its source or the hub)."""
    target = folder / job.local
    staged = folder / STAGING / f"{job.local}.part"
    if job.source is not None:
        staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(job.source, staged)
    else:
        _fetch(job, staged)
    problem = mismatch(staged, job)
    if problem:
        staged.unlink()
        where = f"The copy in {job.source}" if job.source else f"The download from {hub_endpoint()}"
        raise IndexTTSError(
            f"{where} of {job.repo_id}/{job.repo_path} is not the released file ({problem}), so it was not "
            f"installed into {folder}. Run the command again to fetch it anew"
            + (f"; delete the damaged copy {os.path.realpath(job.source)} first." if job.source else
               "; if it fails the same way, the mirror serves a different file (check HF_ENDPOINT)."))
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, target)
    report(f"{'copied' if job.source else 'downloaded'} {job.local}")


def _marker(release: Release, jobs: list[FileJob]) -> dict:
    return {"release": release.name, "complete": True, "files": [
        {"path": job.local, "repo": job.repo_id, "revision": job.revision, "repo_path": job.repo_path,
         "size": job.size, **({job.digest[0]: job.digest[1]} if job.digest else {})} for job in jobs]}


def _pending(folder: Path, jobs: list[FileJob]) -> list[FileJob]:
    """The jobs whose file ``folder`` does not hold verified. Refuses, before any write, to replace
    differing files in a folder this command has not written to."""
    ours = (folder / MARKER).is_file() or (folder / STAGING).is_dir()
    pending, foreign = [], []
    for job in jobs:
        target = folder / job.local
        problem = mismatch(target, job) if target.is_file() else "missing"
        if problem:
            pending.append(job)
            if problem != "missing" and not ours:
                foreign.append(f"{job.local} ({problem})")
    if foreign:
        raise IndexTTSError(
            f"{folder} already holds files that differ from the release and that `indextts download` did not "
            f"write: {', '.join(foreign)}. Nothing was changed. Move them away, or pass another --dir.")
    return pending


def download_release(version: str, out_dir: str | Path | None = None, revision: str | None = None,
                     report: Callable[[str], None] = print) -> Path:
    """Fetch release ``version`` into ``out_dir`` (its default folder if None); returns the folder."""
    release = release_named(version)
    folder = Path(out_dir if out_dir is not None else release.default_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise IndexTTSError(f"--dir {folder} is a file, not a folder. Nothing was written. "
                            "Pass a folder (it is created if missing).")
    jobs = plan(release, revision)
    pending = _pending(folder, jobs)
    if pending:
        (folder / STAGING).mkdir(parents=True, exist_ok=True)  # marks the folder as this command's until complete
        (folder / MARKER).unlink(missing_ok=True)
        if pending[-1].local == CONFIG_FILENAME:
            (folder / CONFIG_FILENAME).unlink(missing_ok=True)  # stale: without it the folder looks unfinished
    for job in jobs:
        if job in pending:
            _install(job, folder, report)
        else:
            report(f"kept {job.local} (verified)")
    write_json_atomic(folder / MARKER, _marker(release, jobs))
    shutil.rmtree(folder / STAGING, ignore_errors=True)
    report(f"{release.name} is complete in {folder} ({len(jobs)} files, "
           f"{sum(job.size for job in jobs) / 1e9:.2f} GB, each verified)")
    return folder
