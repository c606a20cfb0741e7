"""Text goldens of the IndexTTS-2 and 2.5 frontends (conformance/indextts2/README.md, "text/").

Run by make_goldens.py in two child processes, one per reference checkout: each writes its
tokenizer file into the ``text/`` folder and prints its section of ``expected_text_v2.json``.
The reference normaliser is loaded through its macOS/Windows branch (the ``wetext`` package):
on Linux it would use WeTextProcessing, which needs pynini and compiles its grammars into the
reference checkout. Both branches run the same grammars; ``wetext`` is what this project uses.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

from build_folder import TOKENIZER_CORPUS, cjk_spaced
from tiny_weights import TIKTOKEN_FILE, train_sentencepiece, train_tiktoken

CASES_V2 = [
    "我们的新产品在2025年3月15日正式发布，售价1999元。",
    "会议定在下午3:30开始，请大家准时参加！",
    "The meeting starts at 3:30 PM, and it's 25% off today.",
    "Hello world! How are you doing today? We are testing the text frontend, sentence by sentence.",
    "我爱你 I love you，今天是个好日子 it's a good day。",
    "IndexTTS 正式发布2.0版本了，效果666。电话：135-4567-8900",
    "晕XUAN4是一种GAN3觉，不zuo1死就不会死。",
]
CASES_V25 = [
    ("我们的新产品在2025年3月15日正式发布，售价1999元。", "zh"),
    ("The meeting starts at 3:30 PM, and it's 25% off today.", "en"),
    ("我爱你 I love you，今天是个好日子 it's a good day。", "zhen"),
    ("这个字念<行|XING2>，不念<行|HANG2>。", "zh"),
    ("I am <going|G OW1 . IH0 NG> home now, see you tomorrow.", "en"),
]
SEGMENT_LIMITS_V2 = (120, 12)
SEGMENT_LIMIT_V25 = 16
TEXT_POSITIONS_V25 = 602  # text_pos_embedding rows of the release GPT (max_text_tokens 600 + 2)


def load_normalizer():
    from indextts.utils.front import TextNormalizer
    normalizer = TextNormalizer(enable_glossary=True)
    with mock.patch.object(platform, "system", return_value="Darwin"):
        normalizer.load()
    return normalizer


def section_v2(folder: Path) -> list[dict]:
    """``TextTokenizer`` of v2.0.0 with the normaliser, on a bpe.model trained from the cases."""
    from indextts.utils.front import TextTokenizer

    normalizer = load_normalizer()
    lines = [cjk_spaced(normalizer.normalize(text)) for text in CASES_V2] + TOKENIZER_CORPUS
    (folder / "bpe.model").write_bytes(train_sentencepiece(lines + [line.upper() for line in lines], 300))
    tokenizer = TextTokenizer(str(folder / "bpe.model"), normalizer)
    cases = []
    for text in CASES_V2:
        tokens = tokenizer.tokenize(text)
        case = {"text": text, "normalized": normalizer.normalize(text), "tokens": tokens,
                "ids": tokenizer.convert_tokens_to_ids(tokens)}
        for limit in SEGMENT_LIMITS_V2:
            case[f"segments_max{limit}"] = tokenizer.split_segments(tokens, limit)
        cases.append(case)
    return cases


def prepared_v25(text: str, lang: str, normalizer) -> str:
    """The string ``infer_v2_5.py`` encodes for one segment, before the language prefix."""
    from indextts.infer_v2_5 import apply_pronunciation_annotations

    text = normalizer.clean_pattern.sub(lambda x: normalizer.char_rep_map[x.group()], text)
    if lang.lower() in ["zh", "zhen", "en"]:
        text = normalizer.normalize(text)
    if lang.lower() in ["ja", "zh", "zhen", "en"]:
        text = text.lower()
    text = apply_pronunciation_annotations(text)
    return re.sub(r"<\|([^|]+)\|>", lambda m: f"<|{m.group(1).upper()}|>", text)


def section_v25(folder: Path) -> list[dict]:
    """The 2.5 frontend of v2.5.0 on a tiktoken file trained from the cases."""
    from indextts.infer_v2_5 import IndexTTS2
    from indextts.utils.tokenizer import get_tokenizer, lang_to_token

    normalizer = load_normalizer()
    prepared = [prepared_v25(text, lang, normalizer) for text, lang in CASES_V25]
    (folder / TIKTOKEN_FILE).write_text(train_tiktoken("\n".join(prepared + TOKENIZER_CORPUS) * 3, 400))
    frontend = object.__new__(IndexTTS2)  # only its text-splitting methods are used
    frontend.tokenizer = get_tokenizer(multilingual=True, model_dir=str(folder))
    frontend.gpt = SimpleNamespace(text_pos_embedding=SimpleNamespace(emb=SimpleNamespace(
        num_embeddings=TEXT_POSITIONS_V25)))
    cases = []
    for (text, lang), ready in zip(CASES_V25, prepared):
        prefix = f"<|{lang.lower()}|> "
        segments = frontend.split_text_by_tokens(ready, SEGMENT_LIMIT_V25, prefix)
        cases.append({"text": text, "lang": lang, "lang_id": lang_to_token(lang), "prepared": ready,
                      "ids": frontend.tokenizer.encode(prefix + ready, allowed_special="all"),
                      f"segments_max{SEGMENT_LIMIT_V25}": segments,
                      f"segment_ids_max{SEGMENT_LIMIT_V25}": [
                          frontend.tokenizer.encode(prefix + s, allowed_special="all") for s in segments]})
    return cases
