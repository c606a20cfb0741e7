"""Intelligibility scores: WER for English words, CER for Chinese characters, mixed text per script.

Reference and hypothesis both go through the project's text normaliser (``TextNormalizer``), so
"7" and "seven", "3点" and "三点" are the same words; then case and punctuation are dropped. The
normalised text is cut into tokens by script: each Chinese character is one token, each run of
Latin letters, digits and apostrophes is one word. Three edit distances (jiwer) are kept per
utterance:

* ``en``: English words only (the WER of seed-tts-eval for English text);
* ``zh``: Chinese characters only (its CER for Chinese text);
* ``mixed``: the whole token sequence in order, each character and each word one token (the
  "mixed error rate" of code-switching ASR). For purely English text it equals the WER, for purely
  Chinese text the CER; checkpoints are ranked by it.

Rates over many utterances are pooled (summed errors over summed reference tokens), not averaged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import jiwer

from indextts.errors import TextError
from indextts.text import TextNormalizer

SCRIPTS = ("mixed", "en", "zh")
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
_TOKEN = re.compile(rf"[{_HAN}]|[a-z0-9]+(?:'[a-z0-9]+)*")
_HAN_CHAR = re.compile(rf"[{_HAN}]")


@dataclass(frozen=True)
class EditCounts:
    """Edit operations of one alignment: errors = substitutions + deletions + insertions."""

    errors: int
    reference_tokens: int

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(self.errors + other.errors, self.reference_tokens + other.reference_tokens)

    @property
    def rate(self) -> float | None:
        """errors / reference tokens; None when the reference had no token of this kind."""
        return self.errors / self.reference_tokens if self.reference_tokens else None


@dataclass(frozen=True)
class Score:
    """One utterance's edit counts per script (``SCRIPTS``) and the normalised strings compared."""

    counts: dict[str, EditCounts]
    reference: str
    hypothesis: str


@lru_cache(maxsize=1)
def _normalizer() -> TextNormalizer:
    return TextNormalizer()


def scoring_tokens(text: str) -> list[str]:
    """Normalise ``text`` (numbers read out, punctuation and case dropped) into scoring tokens.

    Chinese characters are one token each, Latin words one token each; text with nothing
    speakable (an empty transcript) gives no tokens.
    """
    try:
        normalised = _normalizer().normalize(text)
    except TextError:
        return []
    return _TOKEN.findall(normalised.lower())


def edit_counts(reference: list[str], hypothesis: list[str]) -> EditCounts:
    """Word-level edit distance between two token lists (jiwer), with empty lists allowed."""
    if not reference:
        return EditCounts(len(hypothesis), 0)
    if not hypothesis:
        return EditCounts(len(reference), len(reference))
    # Tokens never contain spaces, so jiwer's default split on spaces gives them back unchanged.
    output = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    return EditCounts(output.substitutions + output.deletions + output.insertions, len(reference))


def _by_script(tokens: list[str]) -> dict[str, list[str]]:
    chinese = [t for t in tokens if _HAN_CHAR.fullmatch(t)]
    return {"mixed": tokens, "zh": chinese, "en": [t for t in tokens if not _HAN_CHAR.fullmatch(t)]}


def score(reference: str, hypothesis: str) -> Score:
    """Edit counts of ``hypothesis`` (an ASR transcript) against ``reference`` (the intended text)."""
    reference_tokens, hypothesis_tokens = scoring_tokens(reference), scoring_tokens(hypothesis)
    references, hypotheses = _by_script(reference_tokens), _by_script(hypothesis_tokens)
    counts = {script: edit_counts(references[script], hypotheses[script]) for script in SCRIPTS}
    return Score(counts, " ".join(reference_tokens), " ".join(hypothesis_tokens))


def pooled(counts: Iterable[EditCounts]) -> EditCounts:
    """The sum of many utterances' counts, whose ``rate`` is the corpus-level error rate."""
    return sum(counts, EditCounts(0, 0))


def language_of(text: str) -> str:
    """"zh" when ``text`` has a Chinese character (mixed text included), else "en"."""
    return "zh" if _HAN_CHAR.search(text) else "en"
