"""Audio lists: one utterance per line, ``audio_path<TAB>transcript`` (or ``audio_path|transcript``).

Written by preparation and the web UI (``list_line``, ``write_audio_list``), read by extraction
(``parse_audio_list``). A relative audio path is relative to the list's folder; writers store paths
that way (``indextts.contracts.paths``), so a folder of clips and its list move together.

Parsing never loads audio or models. Every line that cannot become an utterance is returned as a
``SkippedLine`` with a reason, so the caller can report it instead of crashing; a list that is not
UTF-8, or that yields no usable line at all, raises ``DataError`` before any model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from indextts.atomic_files import write_bytes_atomic
from indextts.contracts.paths import relative_path
from indextts.errors import DataError

SEPARATORS = ("\t", "|")
SPEAKER_NAME = re.compile(r"^[^/\\\x00]+$")


class SkipReason:
    """Reasons an audio-list line is not used (the ``reason`` field of skipped.jsonl)."""

    MALFORMED_LINE = "malformed_line"
    MISSING_FILE = "missing_file"
    NOT_A_FILE = "not_a_file"
    DUPLICATE_AUDIO = "duplicate_audio"
    EMPTY_TRANSCRIPT = "empty_transcript"
    UNSPEAKABLE_TRANSCRIPT = "unspeakable_transcript"
    UNREADABLE_AUDIO = "unreadable_audio"
    SILENT_AUDIO = "silent_audio"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    TOO_MANY_CODES = "too_many_codes"
    TOO_MANY_TEXT_TOKENS = "too_many_text_tokens"


@dataclass(frozen=True)
class Utterance:
    """One usable line of an audio list; ``audio`` is an absolute path to an existing file."""

    speaker: str
    uid: str
    audio: Path
    text: str
    list_path: Path
    line_number: int
    line: str


@dataclass(frozen=True)
class SkippedLine:
    """A line of an audio list that produced no training example, and why."""

    list_path: Path
    line_number: int
    line: str
    reason: str
    detail: str
    audio: str | None = None
    text: str | None = None

    def to_json(self) -> dict:
        return {
            "list": str(self.list_path), "line": self.line_number, "content": self.line,
            "reason": self.reason, "detail": self.detail, "audio": self.audio, "text": self.text,
        }


@dataclass
class SpeakerList:
    """A parsed audio list: the speaker's usable utterances (list order) and its skipped lines."""

    speaker: str
    list_path: Path
    utterances: list[Utterance] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)


def speaker_name_for(list_path: Path, speaker: str | None) -> str:
    """The speaker name: ``speaker`` when given, else the list file's stem; must be a folder name."""
    name = speaker if speaker is not None else list_path.stem
    if not name or name in (".", "..") or not SPEAKER_NAME.match(name) or name != name.strip():
        raise DataError(
            f"'{name}' (for the audio list {list_path}) cannot be used as a speaker name: it becomes "
            "a folder name, so it must be non-empty, without slashes or surrounding spaces. Pass "
            "--speaker NAME to choose one."
        )
    return name


def _read_lines(list_path: Path) -> list[str]:
    if list_path.is_dir():
        raise DataError(f"The audio list {list_path} is a folder. Pass the list file inside it "
                        "(`audio_path<TAB>transcript` lines) as --audio_list.")
    if not list_path.is_file():
        raise DataError(f"The audio list {list_path} does not exist. Check the --audio_list path.")
    raw = list_path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(
            f"The audio list {list_path} is not UTF-8 text (invalid byte at line {line}). Re-save it "
            "as UTF-8, e.g. `iconv -f GBK -t UTF-8 in.lst > out.lst`."
        ) from error
    return text.splitlines()


def _audio_path_problem(audio: Path) -> tuple[str, str] | None:
    """Why ``audio`` cannot be read as an audio file: (reason, detail), or None when it is a file."""
    if audio.is_file():
        return None
    if audio.is_dir():
        return SkipReason.NOT_A_FILE, (f"{audio} is a folder, not an audio file; name one audio file per line "
                                       "(a folder of recordings goes through indextts-prepare first)")
    if audio.exists():
        return SkipReason.NOT_A_FILE, f"{audio} is not a regular file; name an audio file"
    return SkipReason.MISSING_FILE, f"{audio} does not exist"


def split_list_line(line: str) -> tuple[str, str] | None:
    """``(audio path, transcript)`` of one list line, or None when it has no separator."""
    for separator in SEPARATORS:
        if separator in line:
            audio, text = line.split(separator, 1)
            return audio.strip(), text.strip()
    return None


def list_line(list_path: Path, audio: Path, text: str) -> str:
    """The line of ``audio`` (absolute, or relative to the list's folder) saying ``text`` in the list at
    ``list_path``; a transcript that is empty or spans lines or holds a tab is refused (DataError)."""
    if "\t" in text or "\n" in text or "\r" in text or not text.strip():
        raise DataError(f"The transcript of {audio} is empty or holds a tab or line break; edit it to one line "
                        "of text, or leave the clip out.")
    stored = relative_path(list_path.parent / audio, list_path.parent)
    return f"{stored}\t{text.strip()}\n"


def write_audio_list(list_path: Path, entries: list[tuple[Path, str]]) -> Path:
    """Write ``(audio, transcript)`` entries as the list ``list_path`` (atomically, UTF-8)."""
    lines = [list_line(list_path, Path(audio), text) for audio, text in entries]
    write_bytes_atomic(list_path, "".join(lines).encode("utf-8"))
    return list_path


def assign_uids(utterances: list[Utterance]) -> list[Utterance]:
    """Give each utterance its uid: the audio file's stem, or ``<stem>_L<line>`` for a later file
    of the list with a stem already used. Uids name the output files, so a derived uid that still
    collides (with a file literally named ``a_L5.wav``) is refused, naming both lines.
    """
    first_line = {}
    for utterance in utterances:
        first_line.setdefault(utterance.audio.stem, utterance.line_number)
    named = [replace(u, uid=u.audio.stem if first_line[u.audio.stem] == u.line_number
                     else f"{u.audio.stem}_L{u.line_number}") for u in utterances]
    first: dict[str, Utterance] = {}
    for utterance in named:
        clash = first.setdefault(utterance.uid, utterance)
        if clash is not utterance:
            raise DataError(
                f"Lines {clash.line_number} ({clash.audio}) and {utterance.line_number} ({utterance.audio}) "
                f"of {utterance.list_path} both get the utterance id '{utterance.uid}', which names their "
                "output files. Rename one of the audio files (ids are file stems, with _L<line> added "
                "when stems repeat)."
            )
    return named


def parse_audio_list(list_path: str | Path, speaker: str | None = None) -> SpeakerList:
    """Parse one audio list into usable utterances and skipped lines (blank and ``#`` lines ignored).

    Relative audio paths resolve against the list file's folder. Uids: see ``assign_uids``.
    """
    list_path = Path(list_path).expanduser().resolve()
    lines = _read_lines(list_path)
    parsed = SpeakerList(speaker=speaker_name_for(list_path, speaker), list_path=list_path)
    seen_audio: dict[Path, int] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue

        def skip(reason: str, detail: str, audio: str | None = None, text: str | None = None) -> None:
            parsed.skipped.append(SkippedLine(list_path, line_number, line, reason, detail, audio, text))

        fields = split_list_line(line)
        if fields is None:
            skip(SkipReason.MALFORMED_LINE, "no TAB or '|' between the audio path and the transcript")
            continue
        audio_field, text = fields
        if not audio_field:
            skip(SkipReason.MALFORMED_LINE, "the audio path is empty", text=text)
            continue
        audio = Path(audio_field).expanduser()
        audio = (audio if audio.is_absolute() else list_path.parent / audio).resolve()
        problem = _audio_path_problem(audio)
        if not text:
            skip(SkipReason.EMPTY_TRANSCRIPT, "the transcript is empty", str(audio), text)
        elif problem is not None:
            skip(*problem, str(audio), text)
        elif audio in seen_audio:
            skip(SkipReason.DUPLICATE_AUDIO, f"the same file is already used on line {seen_audio[audio]}",
                 str(audio), text)
        else:
            seen_audio[audio] = line_number
            parsed.utterances.append(Utterance(parsed.speaker, "", audio, text, list_path, line_number, line))
    parsed.utterances = assign_uids(parsed.utterances)
    return parsed


def parse_audio_lists(list_paths: list[Path], speakers: list[str] | None = None) -> list[SpeakerList]:
    """Parse every list (one speaker each); raise DataError for clashes or when no line is usable."""
    if speakers and len(speakers) != len(list_paths):
        raise DataError(
            f"{len(speakers)} --speaker names were given for {len(list_paths)} --audio_list files. "
            "Give one --speaker per list, in the same order, or none to use the list file names."
        )
    parsed = [parse_audio_list(path, speakers[i] if speakers else None) for i, path in enumerate(list_paths)]
    names = [p.speaker for p in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(
            f"Several audio lists map to the same speaker {duplicates}. One list holds one speaker: "
            "merge those lists, or pass a distinct --speaker for each."
        )
    if not any(p.utterances for p in parsed):
        reasons = sorted({s.reason for p in parsed for s in p.skipped})
        listed = ", ".join(str(p.list_path) for p in parsed)
        raise DataError(
            f"No usable line in {listed} (problems found: {', '.join(reasons) or 'the lists are empty'}). "
            "Each line must be `audio_path<TAB>transcript` (or `audio_path|transcript`) with an "
            "existing audio file (relative paths resolve from the list's folder) and a non-empty "
            "transcript."
        )
    return parsed
