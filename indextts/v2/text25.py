"""IndexTTS-2.5 text frontend: a Whisper-style byte-level BPE, a language prefix, pronunciation annotations.

IndexTTS-2.5 drops ``bpe.model`` for the tiktoken vocabulary ``multilingual_zh_ja_yue_char_del.tiktoken``
(one ``base64(token) rank`` per line) in the model folder, extended with Whisper's special tokens
plus 30 ``<|SPECIAL_TOKEN_n|>`` and 20 ``<|TTS/...|>`` tokens. The BPE is implemented here (it is
small, and avoids a dependency): text is cut by the GPT-2 pattern, each piece is a vocabulary entry
or is merged pair by pair, lowest rank first, as tiktoken does.

A text of language ``lang`` is prepared as the reference does: Chinese/English normalised
(``TextNormalizerV2``; the annotations are kept out of it), lower-cased (``es``: upper-cased),
pronunciation annotations ``<word|READING>`` rewritten -- kana readings as `` かな ``, others
wrapped in ``<|SPECIAL_TOKEN_2|>`` (Chinese word: pinyin) or ``<|SPECIAL_TOKEN_1|>`` (CMU phones),
upper-cased -- and encoded after the prefix ``<|lang|> ``. The language id feeds the GPT's language
embedding. Differences from the reference: punctuation is folded after numbers are read (the
reference folds ``:`` first, so ``8:00`` is not read as a time), and Japanese word segmentation
(fugashi) and the Japanese/Spanish normalisers (NeMo) are not included: such text is encoded as given.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import regex

from indextts.errors import TextError
from indextts.releases import missing_file_error
from indextts.text import PUNCTUATION_MAP
from indextts.v2.folder import VOCAB_FILE_25 as VOCAB_FILE
from indextts.v2.text import TextNormalizerV2

LANGUAGE_CODES = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr bg lt "
    "la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km sn yo so af oc "
    "ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba jw su yue minnan wuyu "
    "dialect zh/en en/zh common").split()
"""The reference's language list; a code's position is its language id (unknown codes use ``common``)."""
LANGUAGE_TOKENS = 99
"""Only the first 99 codes are special tokens (``<|yue|>`` and later are plain text, as in the reference)."""
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|startoftranscript|>", *[f"<|{c}|>" for c in LANGUAGE_CODES[:LANGUAGE_TOKENS]],
    *[f"<|{e}|>" for e in "ASR AED SER Speech /Speech BGM /BGM Laughter /Laughter Applause /Applause".split()],
    *[f"<|{e}|>" for e in "HAPPY SAD ANGRY NEUTRAL".split()],
    "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>",
    *[f"<|SPECIAL_TOKEN_{i}|>" for i in range(1, 31)],
    *[f"<|TTS/{t}|>" for t in ("B", "O", "Q", "A", "CO", "CL", "H", *[f"SP{i:02d}" for i in range(1, 14)])],
    *[f"<|{i * 0.02:.2f}|>" for i in range(1501)])
"""Added after the vocabulary, in this order (ids from the vocabulary size on)."""
PIECE = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
ANNOTATION = re.compile(r"<([^|>\n]+)\|([^>\n]+)>")
KANA = re.compile(r"[\u3040-\u309F]+|[\u30A0-\u30FF]+")
HANZI = re.compile(r"[\u4e00-\u9fff]")
SPECIAL_MARK = re.compile(r"<\|([^|]+)\|>")
NORMALISED_LANGUAGES = ("zh", "zhen", "en")
LOWER_CASED_LANGUAGES = ("ja", "zh", "zhen", "en")
_PUNCTUATION = re.compile("|".join(re.escape(k) for k in sorted(PUNCTUATION_MAP, key=len, reverse=True)))


HANGUL = re.compile(r"[\uAC00-\uD7AF\u1100-\u11FF\u3130-\u318F]")
SCRIPT_LANGUAGES = ((KANA, "ja"), (HANGUL, "ko"), (HANZI, "zh"))
"""Scripts that name a language, in the order they are looked for (kana before Han: Japanese uses both)."""
DEFAULT_LANGUAGE = "en"


def detect_language(text: str) -> str:
    """The language code of a transcript from its script: kana -> ja, Hangul -> ko, Han -> zh, else en.

    The 2.5 reference takes the language from its caller (``--lang``, default ZH) and detects
    nothing; extraction has no language column in its audio lists, so it reads the script instead.
    """
    for pattern, language in SCRIPT_LANGUAGES:
        if pattern.search(text):
            return language
    return DEFAULT_LANGUAGE


def language_id(lang: str) -> int:
    """The reference's ``lang_to_token``: the code's position in ``LANGUAGE_CODES`` (else ``common``)."""
    lang = lang.lower()
    return LANGUAGE_CODES.index(lang if lang in LANGUAGE_CODES else "common")


def apply_pronunciation_annotations(text: str) -> str:
    """``<word|READING>`` -> `` READING `` for kana, else the upper-cased reading between special tokens."""
    def rewrite(match: re.Match) -> str:
        reading = match.group(2).upper()
        if KANA.fullmatch(reading):
            return f" {reading} "
        token = "<|SPECIAL_TOKEN_2|>" if HANZI.search(match.group(1)) else "<|SPECIAL_TOKEN_1|>"
        return f"{token}{reading}{token}"
    return ANNOTATION.sub(rewrite, text)


def _byte_pair_merge(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    """tiktoken's merge: join the adjacent pair of lowest rank (leftmost first) until none is in the vocabulary."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        pairs = [(ranks[pair], i) for i in range(len(parts) - 1) if (pair := parts[i] + parts[i + 1]) in ranks]
        if not pairs:
            break
        _, i = min(pairs)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[part] for part in parts]


class Tokenizer25:
    """The IndexTTS-2.5 vocabulary: ordinary BPE plus ``SPECIAL_TOKENS`` (always recognised in text)."""

    def __init__(self, ranks: dict[bytes, int], source: str = "the vocabulary"):
        if len(ranks) < 256 or any(bytes([b]) not in ranks for b in range(256)):
            raise TextError(f"{source} does not hold all 256 single bytes, so it cannot encode every text. "
                            f"Use the {VOCAB_FILE} of the IndexTTS-2.5 release.")
        self.ranks = ranks
        self.specials = {token: len(ranks) + i for i, token in enumerate(SPECIAL_TOKENS)}
        self._special = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))

    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer25:
        """Read a ``.tiktoken`` file (``base64(token) rank`` per line)."""
        path = Path(path)
        if not path.is_file():
            raise missing_file_error(path, "IndexTTS-2.5 vocabulary", "2.5")
        try:
            lines = [line.split() for line in path.read_text(encoding="ascii").splitlines() if line.strip()]
            return cls({base64.b64decode(token, validate=True): int(rank) for token, rank in lines}, str(path))
        except (UnicodeDecodeError, ValueError, binascii.Error) as error:
            raise TextError(f"{path} is not a tiktoken vocabulary (one 'base64 rank' pair per line): {error}. "
                            "Download it again with `indextts download 2.5`.") from error

    @property
    def vocab_size(self) -> int:
        return len(self.ranks) + len(SPECIAL_TOKENS)

    def _encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in PIECE.findall(text):
            data = piece.encode("utf-8")
            ids += [self.ranks[data]] if data in self.ranks else _byte_pair_merge(data, self.ranks)
        return ids

    def encode(self, text: str) -> list[int]:
        """Text -> ids, special tokens recognised anywhere (tiktoken's ``allowed_special="all"``)."""
        ids, start = [], 0
        for match in self._special.finditer(text):
            ids += self._encode_ordinary(text[start:match.start()]) + [self.specials[match.group(0)]]
            start = match.end()
        return ids + self._encode_ordinary(text[start:])


def _normalize_around_annotations(text: str, normalizer: TextNormalizerV2) -> str:
    """Normalise ``text`` with each ``<word|READING>`` held out (as the 2.5 reference protects them)."""
    annotations: list[str] = []

    def hold(match: re.Match) -> str:
        annotations.append(match.group(0))
        return f"<pron_{len(annotations) - 1}>"
    normalized = normalizer.normalize(ANNOTATION.sub(hold, text))
    return _HELD.sub(lambda m: annotations[int(m.group(1))], normalized)


_HELD = re.compile(r"<pron_(\d+)>")


def prepare_text(text: str, lang: str, normalizer: TextNormalizerV2) -> str:
    """The text after the reference's 2.5 preparation, without the language prefix (see the module doc)."""
    lang = lang.lower()
    if lang in NORMALISED_LANGUAGES:
        text = _normalize_around_annotations(text, normalizer)
    else:
        text = _PUNCTUATION.sub(lambda m: PUNCTUATION_MAP[m.group(0)], text.replace("\n", " "))
    if lang in LOWER_CASED_LANGUAGES:
        text = text.lower()
    elif lang == "es":
        text = text.upper()
    text = apply_pronunciation_annotations(text)
    return SPECIAL_MARK.sub(lambda m: f"<|{m.group(1).upper()}|>", text)


def encode_prepared(tokenizer: Tokenizer25, prepared: str, lang: str) -> list[int]:
    """Token ids of ``<|lang|> `` + a text already through ``prepare_text``."""
    return tokenizer.encode(f"<|{lang.lower()}|> " + prepared)


def encode_text(tokenizer: Tokenizer25, text: str, lang: str, normalizer: TextNormalizerV2) -> tuple[list[int], int]:
    """Text of language ``lang`` -> (token ids of ``<|lang|> `` + the prepared text, language id)."""
    return encode_prepared(tokenizer, prepare_text(text, lang, normalizer), lang), language_id(lang)
