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
    utterances and one message per malformed line; raises InferenceError, before anything is
    synthesised, when a uid is not a plain file name or names two lines (see :func:`check_uids`).
    """
    utterances, problems, uids = [], [], {}
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 4 or not fields[0]:
            problems.append(f"{path}:{number}: expected 'uid|prompt_text|prompt_wav|target_text' "
                            f"(4 fields separated by '|', uid not empty), got {len(fields)} field(s).")
            continue
        uid, _, prompt_wav, target_text = fields
        uids.setdefault(uid, []).append(number)
        reference = path.parent / prompt_wav if prompt_wav else None
        utterances.append(Utterance(number, target_text, output_dir / f"{uid}.wav", reference))
    check_uids(path, uids)
    return utterances, problems


def _uid_problem(uid: str) -> str | None:
    if "/" in uid or "\\" in uid:
        return "holds a path separator"
    if ".." in uid:
        return "holds '..'"
    return "holds a NUL character" if "\0" in uid else None


def check_uids(path: Path, uids: dict[str, list[int]]) -> None:
    """Refuse uids that would write outside --output (separators, '..') or overwrite another line's wav.

    ``uids`` maps each uid to the line numbers that use it.
    """
    found = [f"line {lines[0]}: uid '{uid}' {problem}" for uid, lines in uids.items()
             if (problem := _uid_problem(uid))]
    found += [f"lines {', '.join(map(str, lines))}: the same uid '{uid}'" for uid, lines in uids.items()
              if len(lines) > 1]
    if found:
        raise InferenceError(
            f"The list {path} has uids that cannot each name one wav in the output folder ({'; '.join(found)}). "
            "Each uid becomes <output>/<uid>.wav: use plain names without '/', '\\' or '..', each on one line "
            "only, then run again; nothing was synthesised.")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InferenceError(f"Cannot read the text file {path}: {error}. Give a UTF-8 text file.") from error
