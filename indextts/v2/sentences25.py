"""IndexTTS-2.5 long text -> sentences of at most ``max_tokens`` ids, each in its own detected language.

The 2.5 reference takes one language for the whole text from its caller. Here the text is cut at sentence
ends first, each sentence's language is read from its script (``detect_language``) and the sentence is
prepared for it (``prepare_text``: normalised, cased, annotations rewritten). Then, as the reference's
``split_text_by_tokens``: a prepared sentence longer than the budget is cut after punctuation, a piece
still too long character by character; neighbouring pieces of one language are merged while
``<|lang|> `` + the text stays within ``max_tokens`` ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from indextts.errors import TextError
from indextts.v2.text import TextNormalizerV2
from indextts.v2.text25 import Tokenizer25, detect_language, encode_prepared, language_id, prepare_text

SENTENCE_END = re.compile(r"(?<=[。！？!?\n])|(?<=[.;；])(?=\s)")
"""Where raw text is cut before language detection (a period only before white space: 3.5 stays whole)."""
CLAUSE_END = re.compile(r"(?<=[，。！？、；：,.!?;:\n])")
"""The reference's cut points inside prepared text that is over the budget."""
UNSPACED_LANGUAGES = ("zh", "ja")
"""Languages whose merged pieces are joined without a space."""


@dataclass
class Sentence25:
    """A prepared sentence ``text``, its token ids (language prefix included), language code and id."""

    text: str
    ids: list[int]
    language: str
    language_id: int


class SentenceSplitter25:
    """Splits text for an IndexTTS-2.5 GPT with ``tokenizer`` and the folder's ``normalizer``."""

    def __init__(self, tokenizer: Tokenizer25, normalizer: TextNormalizerV2):
        self.tokenizer, self.normalizer = tokenizer, normalizer

    def count(self, text: str, language: str) -> int:
        return len(encode_prepared(self.tokenizer, text, language))

    def split(self, text: str, max_tokens: int) -> list[Sentence25]:
        """Sentences of ``text`` of at most ``max_tokens`` ids each; TextError when nothing is speakable."""
        pieces: list[tuple[str, str]] = []  # (prepared piece, language)
        for raw in SENTENCE_END.split(text):
            if not raw.strip():
                continue
            language = detect_language(raw)
            prepared = prepare_text(raw.strip(), language, self.normalizer).strip()
            pieces += [(piece, language) for piece in self._fit(prepared, language, max_tokens)]
        sentences = self._merge(pieces, max_tokens)
        if not sentences:
            raise TextError("The text holds nothing to speak after normalisation. Give text with words in it.")
        return sentences

    def _fit(self, prepared: str, language: str, max_tokens: int) -> list[str]:
        """``prepared`` whole when within the budget, else cut after punctuation, then by characters."""
        if not prepared or self.count(prepared, language) <= max_tokens:
            return [prepared] if prepared else []
        pieces = []
        for clause in (c for c in CLAUSE_END.split(prepared) if c.strip()):
            if self.count(clause, language) <= max_tokens:
                pieces.append(clause.strip())
                continue
            current = ""
            for character in clause:
                if current and self.count(current + character, language) > max_tokens:
                    pieces.append(current.strip())
                    current = character
                else:
                    current += character
            pieces.append(current.strip())
        return [p for p in pieces if p]

    def _merge(self, pieces: list[tuple[str, str]], max_tokens: int) -> list[Sentence25]:
        """Neighbouring pieces of one language joined while they fit the budget."""
        merged: list[tuple[str, str]] = []
        for piece, language in pieces:
            if merged and merged[-1][1] == language:
                joined = merged[-1][0] + ("" if language in UNSPACED_LANGUAGES else " ") + piece
                if self.count(joined, language) <= max_tokens:
                    merged[-1] = (joined, language)
                    continue
            merged.append((piece, language))
        return [Sentence25(text, encode_prepared(self.tokenizer, text, language), language, language_id(language))
                for text, language in merged]
