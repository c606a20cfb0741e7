"""Which recordings belong to which speaker: files, folders, or one subfolder per speaker."""

from __future__ import annotations

from pathlib import Path

import soundfile

from indextts.errors import PrepareError
from indextts.contracts.audio_list import speaker_name_for

EXTRA_EXTENSIONS = {"aif", "oga", "opus", "wave"}
"""Common extensions of formats libsndfile reads under another name (AIFF, OGG, WAV)."""
SKIPPED_FORMATS = {"RAW"}
"""Headerless PCM cannot be read without knowing its layout."""


def audio_extensions() -> set[str]:
    """Lower-case extensions of the formats the installed libsndfile reads (mp3 where it can)."""
    formats = {name.lower() for name in soundfile.available_formats() if name not in SKIPPED_FORMATS}
    return formats | EXTRA_EXTENSIONS


def _audio_files(folder: Path, extensions: set[str], recursive: bool) -> list[Path]:
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower().lstrip(".") in extensions
                  and not p.name.startswith("."))


def _speaker_subfolders(folder: Path, extensions: set[str]) -> dict[str, list[Path]] | None:
    """One speaker per subfolder when ``folder`` holds no recording itself, only subfolders with some."""
    if _audio_files(folder, extensions, recursive=False):
        return None
    speakers = {sub.name: _audio_files(sub, extensions, recursive=True)
                for sub in sorted(folder.iterdir()) if sub.is_dir() and not sub.name.startswith(".")}
    speakers = {name: files for name, files in speakers.items() if files}
    return speakers or None


def _check_unique_stems(speaker: str, files: list[Path]) -> None:
    stems: dict[str, Path] = {}
    for file in files:
        if file.stem in stems:
            raise PrepareError(
                f"Two recordings of speaker '{speaker}' share the name '{file.stem}' ({stems[file.stem]} and "
                f"{file}); clips are named after their recording. Rename one of them and run again."
            )
        stems[file.stem] = file


def discover_speakers(inputs: list[Path], speaker: str | None) -> dict[str, list[Path]]:
    """Map speaker names to their recordings (sorted absolute paths).

    With ``speaker`` every recording under ``inputs`` is that speaker's. Without it, a single folder
    whose subfolders hold the recordings gives one speaker per subfolder; otherwise a single input
    names the speaker (folder name or file stem).
    """
    extensions = audio_extensions()
    missing = [str(path) for path in inputs if not path.exists()]
    if missing:
        raise PrepareError(f"Input not found: {', '.join(missing)}. Pass existing files or folders to --input.")
    inputs = [path.expanduser().resolve() for path in inputs]
    if speaker is None and len(inputs) == 1 and inputs[0].is_dir():
        speakers = _speaker_subfolders(inputs[0], extensions)
        if speakers is None:
            speakers = {inputs[0].name: _audio_files(inputs[0], extensions, recursive=True)}
    elif speaker is None and len(inputs) > 1:
        raise PrepareError(f"{len(inputs)} inputs were given without --speaker. Name the speaker they all "
                           "belong to with --speaker NAME, or put each speaker's recordings in its own "
                           "subfolder of one folder and pass that folder.")
    else:
        name = speaker or inputs[0].stem
        speakers = {name: sorted({file for path in inputs for file in (
            _audio_files(path, extensions, recursive=True) if path.is_dir() else [path])})}
    for name, files in speakers.items():
        speaker_name_for(Path(name), name)
        if not files:
            raise PrepareError(f"No recording found for speaker '{name}' in {', '.join(map(str, inputs))}. "
                               f"Readable extensions: {', '.join(sorted(extensions))}.")
        _check_unique_stems(name, files)
    return speakers
