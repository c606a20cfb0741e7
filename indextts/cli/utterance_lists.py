"""The two batch inputs of ``indextts-infer``: a text file (one utterance per line) and the
reference fork's list format ``uid|prompt_text|prompt_wav|target_text``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indextts.errors import InferenceError


@dataclass
class Utterance:
    """One line of a --text_file or --list file: what to say and where to write it."""

    line_number: int
    text: str
    output: Path
    reference_audio: Path | None = None


def read_text_file(path: Path, output_dir: Path) -> list[Utterance]:
    """One utterance per non-blank line -> output_dir/<line number, 4 digits>.wav."""
    return [Utterance(number, line.strip(), output_dir / f"{number:04d}.wav")
            for number, line in enumerate(_read_lines(path), start=1) if line.strip()]


def read_list_file(path: Path, output_dir: Path) -> tuple[list[Utterance], list[str]]:
    """Parse ``uid|prompt_text|prompt_wav|target_text`` lines.

    Each line becomes output_dir/<uid>.wav speaking ``target_text``; ``prompt_wav`` (relative to
    the list file's folder) is the zero-shot reference when no speaker is chosen. Returns the
    utterances and one message per malformed line.
    """
    utterances, problems = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 4 or not fields[0]:
            problems.append(f"{path}:{number}: expected 'uid|prompt_text|prompt_wav|target_text' "
                            f"(4 fields separated by '|', uid not empty), got {len(fields)} field(s).")
            continue
        uid, _, prompt_wav, target_text = fields
        reference = path.parent / prompt_wav if prompt_wav else None
        utterances.append(Utterance(number, target_text, output_dir / f"{uid}.wav", reference))
    return utterances, problems


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InferenceError(f"Cannot read the text file {path}: {error}. Give a UTF-8 text file.") from error
