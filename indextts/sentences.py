"""Sentence splitting of a token stream into model-sized chunks (the reference's rule, defects fixed).

The reference reads the tokens left to right into a window. A sentence mark (``. ! ? …``) ends
the current sentence once it holds more than two tokens; a quote right after the mark stays with
it. When the window grows past ``max_tokens`` without a sentence end, that window alone is split
at commas (``,``) and, failing those, at hyphens (``-``); without either it is cut by length.
Finally, neighbouring chunks are merged left to right while they fit.

Where this module deliberately differs from the reference:

1. **No one-token fragments.** The reference cuts a full window of ``max_tokens + 1`` tokens into
   ``max_tokens`` and 1, and a lone token that does not fit beside either neighbour stays a
   one-token "sentence". Here such a chunk takes the last token of the chunk before it (the
   first chunk takes the first token of the next one); every other chunk is the reference's.
2. **Hard cuts land on a word start.** A length cut falls before the last word start (``▁`` then a
   letter, digit or CJK character) in the second half of the window, so no English word and no
   ``▁``/character pair is cut in two, and the rest of the window is carried into the next one
   (so its cut lands on a word start too). Where the token after ``max_tokens`` starts a word, or
   no token of the second half does, the cut is the reference's, after ``max_tokens`` tokens.
3. **No token is duplicated.** The reference appends the quote after a sentence mark to the
   sentence and still reads it again as the start of the next one.
4. **No chunk exceeds** ``max_tokens`` (the reference may attach that quote to a full window), and
   a window is only split at a lower level (commas, then hyphens), never back at a higher one.

Sentence marks are any token made only of ``. ! ? …`` (with or without the ``▁`` prefix).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from indextts.errors import TextError

logger = logging.getLogger(__name__)

SENTENCE_MARKS = ".!?…"
SPLIT_LEVELS = (SENTENCE_MARKS, ",", "-")
QUOTE = "'"
MIN_CHUNK_TOKENS = 2


def _piece_text(token: str) -> str:
    return token.replace("▁", "")


def _is_mark(token: str, marks: str) -> bool:
    text = _piece_text(token)
    return bool(text) and all(c in marks for c in text)


def _starts_word(token: str, following: str | None) -> bool:
    """True when ``token`` begins a word (▁ + letter/digit/CJK), the safest place to cut."""
    if not token.startswith("▁"):
        return False
    rest = token[1:] or following or ""
    return bool(rest) and rest[0].isalnum()


def _hard_cut(window: list[str], following: str | None, max_tokens: int) -> tuple[list[list[str]], list[str]]:
    """Cut a too-long window before its last word start in the second half, else after ``max_tokens``.

    A cut at ``max_tokens`` emits both parts, as the reference does (``_merge`` mends a lone
    token); the rest of an earlier cut is carried into the next window, so that the next cut
    lands on a word start too.
    """
    logger.warning("A sentence of more than %d tokens has no punctuation to split at; cutting it.", max_tokens)
    for cut in range(max_tokens, max(MIN_CHUNK_TOKENS, max_tokens // 2) - 1, -1):
        if _starts_word(window[cut], window[cut + 1] if cut + 1 < len(window) else following):
            break
    else:
        cut = max_tokens
    if cut == max_tokens:
        return [window[:cut], window[cut:]], []
    return [window[:cut]], window[cut:]


def _split_window(window: list[str], following: str | None, level: int,
                  max_tokens: int) -> tuple[list[list[str]], list[str]]:
    """Split a window of ``max_tokens + 1`` tokens: chunks to emit, and the rest to carry on."""
    for lower in range(level + 1, len(SPLIT_LEVELS)):
        if any(_is_mark(token, SPLIT_LEVELS[lower]) for token in window):
            chunks, rest = _stream(window, lower, max_tokens, following)
            return chunks + ([rest] if rest else []), []
    return _hard_cut(window, following, max_tokens)


def _stream(tokens: Sequence[str], level: int, max_tokens: int,
            following: str | None = None) -> tuple[list[list[str]], list[str]]:
    """Read ``tokens`` left to right, ending a chunk at each mark of ``SPLIT_LEVELS[level]``.

    Returns the finished chunks and the unfinished rest. ``following`` is the token after
    ``tokens`` in the whole stream (it tells whether a final ``▁`` starts a word).
    """
    marks, chunks, current = SPLIT_LEVELS[level], [], []
    index = 0
    while index < len(tokens):
        current.append(tokens[index])
        if len(current) > max_tokens:
            after = tokens[index + 1] if index + 1 < len(tokens) else following
            finished, current = _split_window(current, after, level, max_tokens)
            chunks += finished
        elif _is_mark(tokens[index], marks) and len(current) > MIN_CHUNK_TOKENS:
            follows_quote = index + 1 < len(tokens) and _piece_text(tokens[index + 1]) == QUOTE
            if level == 0 and follows_quote and len(current) < max_tokens:
                index += 1
                current.append(tokens[index])
            chunks.append(current)
            current = []
        index += 1
    return chunks, current


def _mend_lone_tokens(chunks: list[list[str]]) -> list[list[str]]:
    """Give each one-token chunk a token of its neighbour (the one before it, else the one after)."""
    for i, chunk in enumerate(chunks):
        if len(chunk) == 1 and len(chunks) > 1:
            if i > 0:
                chunks[i - 1], chunks[i] = chunks[i - 1][:-1], chunks[i - 1][-1:] + chunk
            else:
                chunks[0], chunks[1] = chunk + chunks[1][:1], chunks[1][1:]
    return chunks


def _merge(chunks: list[list[str]], max_tokens: int) -> list[list[str]]:
    """Merge neighbours left to right while they fit, then mend the one-token chunks left."""
    merged: list[list[str]] = []
    for chunk in chunks:
        if merged and len(merged[-1]) + len(chunk) <= max_tokens:
            merged[-1] = merged[-1] + chunk
        else:
            merged.append(chunk)
    return _mend_lone_tokens(merged)


def split_sentences(tokens: Sequence[str], max_tokens_per_sentence: int) -> list[list[str]]:
    """Split ``tokens`` into chunks of at most ``max_tokens_per_sentence`` tokens (see the module doc).

    Chunks concatenate back to ``tokens``; none is empty and none holds a single token (unless
    the input has one).
    """
    if max_tokens_per_sentence < 3:
        raise TextError(
            f"max_tokens_per_sentence must be at least 3, got {max_tokens_per_sentence}: shorter "
            "chunks cannot avoid one-token fragments. Raise the limit."
        )
    tokens = list(tokens)
    chunks, rest = _stream(tokens, 0, max_tokens_per_sentence)
    return _merge(chunks + ([rest] if rest else []), max_tokens_per_sentence)
