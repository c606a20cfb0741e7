"""Text frontend: normalisation, tokenisation and sentence splitting.

The release ``bpe.model`` was trained on text prepared in a fixed way: numbers, dates, units and
symbols read out (Chinese or English), punctuation folded onto a small set, Latin letters
upper-cased and every CJK character separated by spaces. Training and inference both go through
``TextTokenizer.encode`` so the model always sees text prepared exactly that way.

Documented behaviour on awkward input:

* empty or whitespace-only text, or text with nothing speakable left after normalisation
  (no Latin letter, digit, Chinese character or special token) raises ``TextError``;
* characters of unsupported scripts (Cyrillic, kana, emoji, ...) are removed with a logged
  warning; Latin letters with accents are folded to plain ASCII;
* long text (tens of thousands of characters) is normalised piece by piece and split into
  model-sized chunks by ``TextTokenizer.split_sentences`` (rule: ``indextts.sentences``);
* quotes of every kind (ASCII, curly, CJK corner brackets) come out as ``'``; the normalised text
  never holds a backslash (wetext's escaped quotes are undone, input backslashes dropped).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from indextts.errors import TextError
from indextts.sentences import split_sentences

logger = logging.getLogger(__name__)

# Characters the release data treated as CJK (each one is a separate word for SentencePiece).
_CJK_CHAR = re.compile(
    "([\u1100-\u11ff\u2e80-\ua4cf\ua840-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff65-\uffdc"
    "\U00020000-\U0002ffff])"
)
# Chinese ideographs only: these decide the language and count as speakable.
_HANZI = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_LATIN = re.compile("[A-Za-z]")
_SPEAKABLE = re.compile("[A-Za-z0-9\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")

# User tokens such as <laugh>: kept verbatim by the normaliser and the tokenizer.
SPECIAL_TOKEN = re.compile(r"<[A-Za-z0-9_]+>")
_PLACEHOLDER = re.compile(r"<zq([a-z]+)>")

_INITIALS = "zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw]"
_FINALS = sorted(
    "a o e i u v ü ai ei ao ou an en ang eng ong er ia ie iao iu ian in iang ing iong ua uo "
    "uai ui uan un uang ueng ue ve üe uan van üan vn ün".split(),
    key=len,
    reverse=True,
)
# A pinyin syllable with its tone digit (1-5, 5 = neutral tone), e.g. zhong4, lv4, xue2.
PINYIN_WITH_TONE = re.compile(
    rf"(?<![A-Za-z])(?:(?:{_INITIALS})?(?:{'|'.join(_FINALS)})|ng|m|n)[1-5](?![0-9])",
    re.IGNORECASE,
)
# A transliterated name: Chinese runs joined by an interpunct or dash, e.g. 迈克尔·乔丹.
# Anchored at the start of a Chinese run so long runs without a joiner cost linear time.
_NAME = re.compile("(?<![\u4e00-\u9fff])[\u4e00-\u9fff]+(?:[·・‧•\\-—][\u4e00-\u9fff]+){1,2}")
_NAME_JOINER = re.compile("[·・‧•—]")
# 's after these words is "is"; after other words it is usually a possessive.
_IS_CONTRACTION = re.compile(
    r"\b(what|where|who|which|how|here|there|it|he|she|that|this)'s\b", re.IGNORECASE
)

# Punctuation folded onto the small set the tokenizer was trained with (longest match first).
PUNCTUATION_MAP = {
    "……": "…", "...": "…", ",,,": "…", "，，，": "…",
    "：": ",", "；": ",", ";": ",", ":": ",", "，": ",", "、": ",",
    "。": ".", "！": "!", "？": "?",
    "·": "-", "—": "-", "～": "-", "~": "-",
    **dict.fromkeys("“”\"‘’（）()《》【】[]「」『』", "'"),  # every quote and bracket reads as '
}
_PUNCTUATION = re.compile("|".join(re.escape(k) for k in sorted(PUNCTUATION_MAP, key=len, reverse=True)))
_ELLIPSIS_RUN = re.compile("…+")
_SPACES = re.compile(r"\s+")
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
# Normalise piece by piece, choosing the language of each: cut after Chinese sentence ends and
# line breaks, after !/? before a space, and after a full stop followed by Chinese. A full stop
# before Latin text is not a cut (abbreviations such as "Dr. Smith" are read as a whole).
_SEGMENT_END = re.compile(r"(?<=[。！？\n])|(?<=[!?])(?=\s)|(?<=\.)(?=\s*[\u4e00-\u9fff])")


def _placeholder(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"<zq{letters}>"


def _placeholder_index(letters: str) -> int:
    index = 0
    for char in letters:
        index = index * 26 + ord(char) - ord("a") + 1
    return index - 1


def _is_unsupported(char: str) -> bool:
    """True for characters the models cannot speak and the normaliser cannot read out."""
    if char in "\t\n\r" or _HANZI.match(char) or char in "üÜ":
        return False
    if char == "\\":  # never speakable, and the normalised text must hold no backslash
        return True
    category = unicodedata.category(char)
    if category[0] == "L":
        return not char.isascii()
    if category in ("Cc", "Cf", "Co", "Cs", "Cn", "Mn", "Me"):
        return True
    # Arrows, dingbats, emoji and other pictographs; keeps ° ℃ € ¥ and similar.
    return category == "So" and 0x2190 <= ord(char) and not _CJK_CHAR.match(char)


def _fold_characters(text: str) -> str:
    """Full-width letters/digits to ASCII and accented Latin letters to plain ones (ü stays for pinyin)."""
    folded = []
    for char in text:
        if "\uff10" <= char <= "\uff5a" and char.isalnum():
            char = unicodedata.normalize("NFKC", char)
        elif not char.isascii() and char not in "üÜ" and unicodedata.category(char)[0] == "L":
            base = unicodedata.normalize("NFKD", char)[0]
            if base.isascii():
                char = base
        folded.append(char)
    return "".join(folded)


def _correct_pinyin(syllable: str) -> str:
    """Spell ü as v (lü4 -> lv4, ju4 -> jv4, xue2 -> xve2), keeping the writer's letter case."""
    syllable = syllable.replace("ü", "v").replace("Ü", "V")
    if syllable[0] in "jqxJQX" and syllable[1] in "uU":
        syllable = syllable[0] + ("v" if syllable[1] == "u" else "V") + syllable[2:]
    return syllable


class TextNormalizer:
    """Reads out numbers, dates, units and symbols, and folds punctuation (Chinese and English).

    Built on the ``wetext`` finite-state normalisers, which ship prebuilt with the package and
    work offline. Pinyin with tone digits (``zhong4``), names joined by ``·`` and special tokens
    (``<laugh>``) pass through unchanged.
    """

    def __init__(self) -> None:
        from wetext import Normalizer

        self._zh = Normalizer(lang="zh", operator="tn", remove_erhua=False)
        self._en = Normalizer(lang="en", operator="tn")

    @staticmethod
    def use_chinese(text: str) -> bool:
        """Chinese rules when the text has Chinese characters, no Latin letters, or tone pinyin."""
        if _HANZI.search(text) or not _LATIN.search(text):
            return True
        return PINYIN_WITH_TONE.search(text) is not None

    def normalize(self, text: str) -> str:
        """Return the normalised text; raises ``TextError`` when nothing speakable is left."""
        if not isinstance(text, str):
            raise TextError(f"Expected text as a str, got {type(text).__name__}. Pass the text itself.")
        if not text.strip():
            raise TextError("The text is empty or only whitespace. Give at least one word to speak.")
        cleaned = _fold_characters(text)
        dropped = sorted({c for c in cleaned if _is_unsupported(c)})
        if dropped:
            logger.warning(
                "Removed characters the model cannot speak (only Chinese and English are "
                "supported): %s", " ".join(dropped)
            )
            cleaned = "".join(c for c in cleaned if not _is_unsupported(c))
        pieces = [self._normalize_segment(s) for s in _SEGMENT_END.split(cleaned)]
        result = _SPACES.sub(" ", "".join(pieces)).strip()
        if not _SPEAKABLE.search(result) and not SPECIAL_TOKEN.search(result):
            raise TextError(
                f"The text {text[:80]!r} has nothing speakable after normalisation (no Chinese "
                "character, Latin letter or digit). Only Chinese and English text can be spoken."
            )
        return result

    def _normalize_segment(self, segment: str) -> str:
        if not segment.strip():
            return segment
        leading = segment[: len(segment) - len(segment.lstrip())]
        trailing = segment[len(segment.rstrip()) :]
        protected: list[str] = []

        def protect(original: str) -> str:
            protected.append(original)
            return _placeholder(len(protected) - 1)

        body = SPECIAL_TOKEN.sub(lambda m: protect(m.group(0)), _SPACES.sub(" ", segment.strip()))
        body = _IS_CONTRACTION.sub(r"\1 is", body.replace("’", "'"))
        chinese = self.use_chinese(body)
        body = self._before_wetext(body, chinese, protect)
        if chinese:
            body = PINYIN_WITH_TONE.sub(lambda m: protect(_correct_pinyin(m.group(0))), body)
            body = _NAME.sub(lambda m: protect(_NAME_JOINER.sub("-", m.group(0))), body)
        body = self._after_wetext(self._run_wetext(body, chinese))
        body = _PLACEHOLDER.sub(lambda m: protected[_placeholder_index(m.group(1))], body)
        body = _PUNCTUATION.sub(lambda m: PUNCTUATION_MAP[m.group(0)], body)
        body = _ELLIPSIS_RUN.sub("…", body).replace("ü", "u").replace("Ü", "U")
        return leading + body + trailing

    def _before_wetext(self, body: str, chinese: bool, protect) -> str:
        """Hook for a variant's own rules before the grammar runs; ``protect(s)`` keeps ``s`` verbatim."""
        return body

    def _after_wetext(self, body: str) -> str:
        """Hook for a variant's own rules on the grammar's output (before protected text returns)."""
        return body

    def _run_wetext(self, text: str, chinese: bool) -> str:
        try:
            normalized = (self._zh if chinese else self._en).normalize(text)
            # Both grammars escape quotes in their output (the reference's ``\'`` defect), the
            # Chinese one as soon as the quoted text holds a number or a date; undo that. The input
            # holds no backslash (dropped as unsupported), so every one here is an escape.
            return _ESCAPE.sub(r"\1", normalized)
        except Exception:  # wetext raises bare assertions on inputs its grammar cannot tag
            logger.warning("wetext could not normalise %r; keeping it as written.", text[:80])
            return text


# A space with a CJK character on one side and a CJK character or punctuation on the other.
_CJK_GAP = re.compile(
    r"(?<=[\u2e80-\ua4cf]) (?=[\u2e80-\ua4cf]|[^\w\s<>])|(?<=[^\w\s<>]) (?=[\u2e80-\ua4cf])"
)


def _space_cjk(text: str) -> str:
    """Separate every CJK character by spaces and upper-case Latin text (release preprocessing)."""
    parts = (p.strip() for p in _CJK_CHAR.split(text))
    return " ".join(p for p in parts if p).upper()


class TextTokenizer:
    """SentencePiece tokenizer over normalised text, compatible with the release ``bpe.model``.

    ``encode``/``tokenize`` normalise first (``normalize=False`` skips that for text that is
    already normalised), then upper-case Latin text, space out CJK characters and run
    SentencePiece. User-defined pieces of the model (added by ``add_special_tokens``) are kept
    intact wherever they appear in the text.
    """

    def __init__(self, bpe_path: str | Path, normalizer: TextNormalizer | None = None,
                 model_proto: bytes | None = None) -> None:
        self.bpe_path = Path(bpe_path)
        if model_proto is None and not self.bpe_path.is_file():
            raise TextError(
                f"SentencePiece model {self.bpe_path} does not exist. Point to the bpe.model of "
                "the checkpoint folder (or of the training run when special tokens were added)."
            )
        try:
            self.sp = (spm.SentencePieceProcessor(model_file=str(self.bpe_path)) if model_proto is None
                       else spm.SentencePieceProcessor(model_proto=model_proto))
        except (OSError, RuntimeError) as error:
            raise TextError(
                f"{self.bpe_path} is not a readable SentencePiece model ({error}). Use the "
                "bpe.model shipped with the checkpoint."
            ) from error
        self.normalizer = normalizer if normalizer is not None else _default_normalizer()
        model = sentencepiece_model_pb2.ModelProto()
        model.ParseFromString(self.sp.serialized_model_proto())
        user_type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
        self.special_tokens = [p.piece for p in model.pieces if p.type == user_type]
        names = sorted(self.special_tokens, key=len, reverse=True)
        self._special = re.compile("(" + "|".join(re.escape(t) for t in names) + ")") if names else None

    def with_special_tokens(self, tokens: Sequence[str]) -> "TextTokenizer":
        """This tokenizer with ``tokens`` added as ``add_special_tokens`` would add them (in memory).

        Ids and pieces equal those of the grown ``bpe.model`` a training run writes, so token
        counts taken here hold for training.
        """
        proto = _with_user_pieces(self.sp.serialized_model_proto(), tokens, self.bpe_path)
        return TextTokenizer(self.bpe_path, self.normalizer, model_proto=proto)

    @staticmethod
    def special_tokens_in(text: str) -> list[str]:
        """The distinct ``<name>`` special tokens written in ``text``, sorted."""
        return special_tokens_in(text)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def unk_token_id(self) -> int:
        return self.sp.unk_id()

    def prepare(self, text: str) -> str:
        """The exact string SentencePiece sees: CJK spaced out, Latin upper-cased, specials kept."""
        unknown = sorted(set(SPECIAL_TOKEN.findall(text)) - set(self.special_tokens))
        if unknown:
            raise TextError(
                f"The text uses special tokens {unknown} that {self.bpe_path} does not define. "
                "Use the tokenizer of the training run that added them (add_special_tokens), "
                "or remove them from the text."
            )
        if self._special is None:
            return _space_cjk(text)
        parts = self._special.split(text)
        prepared = [p if i % 2 else _space_cjk(p) for i, p in enumerate(parts)]
        return " ".join(p for p in prepared if p)

    def tokenize(self, text: str, normalize: bool = True) -> list[str]:
        """Text -> SentencePiece pieces (normalised first unless ``normalize=False``)."""
        if normalize:
            text = self.normalizer.normalize(text)
        return self.sp.encode(self.prepare(text), out_type=str)

    def encode(self, text: str, normalize: bool = True) -> list[int]:
        """Text -> token ids (normalised first unless ``normalize=False``); no start/stop ids."""
        if normalize:
            text = self.normalizer.normalize(text)
        return self.sp.encode(self.prepare(text), out_type=int)

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.sp.piece_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> readable text: CJK characters rejoined, Latin words spaced as written."""
        return _CJK_GAP.sub("", self.sp.decode([int(i) for i in ids]))

    def split_sentences(self, tokens: Sequence[str], max_tokens_per_sentence: int) -> list[list[str]]:
        """See :func:`indextts.sentences.split_sentences`."""
        return split_sentences(tokens, max_tokens_per_sentence)


@lru_cache(maxsize=1)
def _default_normalizer() -> TextNormalizer:
    return TextNormalizer()


def special_tokens_in(text: str) -> list[str]:
    """The distinct ``<name>`` special tokens written in ``text``, sorted (e.g. ``["<laugh>"]``)."""
    return sorted(set(SPECIAL_TOKEN.findall(text)))


def is_speakable(text: str, tokenizer: TextTokenizer) -> bool:
    """True when ``text`` normalises to something the model can speak (see ``TextNormalizer.normalize``)."""
    try:
        tokenizer.normalizer.normalize(text)
    except TextError:
        return False
    return True


def _check_special_token_names(tokens: Sequence[str]) -> None:
    bad = [t for t in tokens if not isinstance(t, str) or not SPECIAL_TOKEN.fullmatch(t)]
    if bad:
        raise TextError(f"Special tokens must look like <name> (letters, digits, underscore), got {bad}. "
                        "Rename them, e.g. <laugh>.")


def _with_user_pieces(serialized: bytes, tokens: Sequence[str], source: Path) -> bytes:
    """The serialized SentencePiece model with ``tokens`` appended as user-defined pieces (new ones only)."""
    _check_special_token_names(tokens)
    model = sentencepiece_model_pb2.ModelProto()
    try:
        model.ParseFromString(serialized)
    except Exception as error:  # protobuf raises DecodeError, a plain Exception subclass
        raise TextError(f"{source} is not a SentencePiece model ({error}).") from error
    known = {p.piece for p in model.pieces}
    for token in dict.fromkeys(tokens):
        if token not in known:
            piece = model.pieces.add()
            piece.piece, piece.score = token, 0.0
            piece.type = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    return model.SerializeToString()


def add_special_tokens(bpe_in: str | Path, bpe_out: str | Path, tokens: Sequence[str]) -> list[int]:
    """Write a copy of ``bpe_in`` with ``tokens`` (e.g. ``<laugh>``) appended as user-defined pieces.

    Existing ids are unchanged, so the base model's text embeddings still line up; new tokens get
    ids from the old vocabulary size on. Returns the id of every requested token (tokens already
    in the model keep theirs).
    """
    bpe_in, bpe_out = Path(bpe_in), Path(bpe_out)
    _check_special_token_names(tokens)
    if not bpe_in.is_file():
        raise TextError(f"SentencePiece model {bpe_in} does not exist; pass the checkpoint's bpe.model.")
    grown = _with_user_pieces(bpe_in.read_bytes(), tokens, bpe_in)
    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(grown)
    ids = {p.piece: i for i, p in enumerate(model.pieces)}
    bpe_out.parent.mkdir(parents=True, exist_ok=True)
    bpe_out.write_bytes(grown)
    return [ids[t] for t in tokens]
