"""IndexTTS-2 text frontend: the 1.5 rules (``indextts.text``) plus what IndexTTS-2 added.

IndexTTS-2 keeps the 1.5 tokenizer (SentencePiece ``bpe.model``, Latin upper-cased, CJK spaced out)
and normaliser. Its additions, reproduced here:

* hyphenated technical terms (a letter first: ``GPT-5-nano``, ``F5-TTS``) keep their hyphens,
  which the grammars would otherwise read as minus (``GPT负五``); numbers inside are still read
  out (``GPT-五-nano``, ``GPT-five-nano``);
* an optional glossary, ``glossary.yaml`` in the model folder: ``term: reading`` or
  ``term: {zh: reading, en: reading}``; terms are replaced case-insensitively, longest first,
  before any other rule, with the reading of the text's language (the term itself when the
  entry has none). Unlike the reference, a Latin term is not replaced inside a longer word.

Unchanged from 1.5 on purpose: our 1.5 frontend's sentence rule (``indextts.sentences``) is used
for IndexTTS-2 too; the reference's new ``split_segments`` (with ``quick_streaming_tokens``) is a
streaming heuristic of its inference loop, not part of the model's input.

IndexTTS-2.5's tiktoken vocabulary, language prefix and pronunciation annotations are in
``indextts.v2.text25``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from indextts.errors import ConfigError
from indextts.text import TextNormalizer, TextTokenizer

GLOSSARY_FILE = "glossary.yaml"
TECH_TERM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+")
"""A letter, then letters/digits, then one or more ``-part``: not a phone number such as 135-4567."""
_HYPHEN_MARK = "<hyph>"
"""Stands for a term's hyphen while the grammar runs (it passes the grammars unchanged)."""
_HYPHEN_RESTORE = re.compile(rf"\s*{_HYPHEN_MARK}\s*")
LANGUAGES = ("zh", "en")


def load_glossary(path: str | Path) -> dict[str, str | dict[str, str]]:
    """Read a glossary YAML: ``term: reading`` or ``term: {zh: ..., en: ...}``; ConfigError when malformed."""
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"Cannot read the glossary {path}: {error}. Fix the YAML or remove the file.") from error
    content = {} if content is None else content

    def readings_ok(value) -> bool:
        return isinstance(value, str) or (isinstance(value, Mapping) and all(
            k in LANGUAGES and isinstance(v, str) for k, v in value.items()))

    bad = [str(k) for k, v in content.items() if not (isinstance(k, str) and readings_ok(v))] \
        if isinstance(content, Mapping) else ["(the file is not a mapping)"]
    if bad:
        raise ConfigError(
            f"The glossary {path} must map each term to a reading or to {{zh: reading, en: reading}}; "
            f"these entries do not: {', '.join(bad[:5])}. Fix or remove them.")
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in content.items()}


def _term_pattern(term: str) -> re.Pattern:
    """Case-insensitive ``term``, not inside a longer Latin word or number (the reference's ``TTS``
    also matched inside ``IndexTTS``; that is not copied)."""
    before = "(?<![A-Za-z0-9])" if term[:1].isascii() and term[:1].isalnum() else ""
    after = "(?![A-Za-z0-9])" if term[-1:].isascii() and term[-1:].isalnum() else ""
    return re.compile(before + re.escape(term) + after, re.IGNORECASE)


class TextNormalizerV2(TextNormalizer):
    """The 1.5 normaliser with IndexTTS-2's technical-term hyphens and optional glossary."""

    def __init__(self, glossary: Mapping[str, str | Mapping[str, str]] | None = None) -> None:
        super().__init__()
        terms = sorted(glossary or {}, key=len, reverse=True)
        self.glossary = [(_term_pattern(term), term, glossary[term]) for term in terms]

    @classmethod
    def for_model_dir(cls, model_dir: str | Path) -> TextNormalizerV2:
        """With ``<model_dir>/glossary.yaml`` when the folder has one (as the reference loads it)."""
        path = Path(model_dir) / GLOSSARY_FILE
        return cls(load_glossary(path) if path.is_file() else None)

    def apply_glossary(self, text: str, chinese: bool) -> str:
        """Replace every glossary term by its reading in the text's language (longest terms first)."""
        language = "zh" if chinese else "en"
        for pattern, term, reading in self.glossary:
            replacement = reading if isinstance(reading, str) else reading.get(language, term)
            text = pattern.sub(lambda _match, r=replacement: r, text)
        return text

    def _before_wetext(self, body: str, chinese: bool, protect) -> str:
        body = self.apply_glossary(body, chinese)
        return TECH_TERM.sub(lambda m: m.group(0).replace("-", _HYPHEN_MARK), body)

    def _after_wetext(self, body: str) -> str:
        return _HYPHEN_RESTORE.sub("-", body)


def load_v2_tokenizer(model_dir: str | Path, cfg) -> TextTokenizer:
    """The IndexTTS-2 tokenizer of a model folder: its ``dataset.bpe_model`` with ``TextNormalizerV2``."""
    model_dir = Path(model_dir)
    return TextTokenizer(model_dir / cfg.dataset.bpe_model, TextNormalizerV2.for_model_dir(model_dir))
