"""IndexTTS-2 text frontend: technical terms, the glossary, and the text goldens."""

from __future__ import annotations

import json

import pytest
from helpers import V2_CONFORMANCE
from omegaconf import OmegaConf

from indextts.errors import ConfigError
from indextts.text import TextNormalizer, TextTokenizer
from indextts.tiny import train_tiny_bpe
from indextts.v2.text import TextNormalizerV2, load_glossary, load_v2_tokenizer

GLOSSARY = {"M.2": {"en": "M dot two", "zh": "M 二"}, "C++": {"en": "C plus plus", "zh": "C 加加"},
            "TTS": "T T S", "PCIe 4.0": {"zh": "PCIE 四点零"}}
TEXT_GOLDENS = sorted(p.parent for p in V2_CONFORMANCE.glob("*/expected_text.json")) if V2_CONFORMANCE.is_dir() else []


@pytest.fixture(scope="module")
def normalizer() -> TextNormalizerV2:
    return TextNormalizerV2(GLOSSARY)


# Expected strings below were produced by the IndexTTS-2 reference (v2.0.0 front.py, wetext grammars),
# reviewed, and pinned on purpose.
@pytest.mark.parametrize("text,normalized", [
    ("GPT-5-Nano is the smallest variant in the GPT-5 model family.",
     "GPT-five-Nano is the smallest variant in the GPT-five model family."),
    ("GPT-5-Nano 是 GPT-5 模型家族中最小的变体", "GPT-五-Nano 是 GPT-五 模型家族中最小的变体"),
    ("2025/09/08 IndexTTS-2 全球发布", "二零二五年九月八日 IndexTTS-二 全球发布"),
    ("电话：135-4567-8900", "电话,一三五四五六七八九零零"),
])
def test_technical_terms_keep_their_hyphens_and_phone_numbers_do_not_change(normalizer, text, normalized):
    assert normalizer.normalize(text) == normalized


def test_the_15_normaliser_is_unchanged():
    assert TextNormalizer().normalize("GPT-5 模型") == "GPT负五 模型"


@pytest.mark.parametrize("text,normalized", [
    ("我们用 C++ 和 TTS 写的", "我们用 C 加加 和 T T S 写的"),
    ("The M.2 slot supports PCIe 4.0.", "The M dot two slot supports PCIE four point oh."),
    ("F5-TTS and IndexTTS", "F five-T T S and IndexTTS"),
])
def test_glossary_reads_terms_in_the_text_language_but_not_inside_words(normalizer, text, normalized):
    assert normalizer.normalize(text) == normalized


def test_glossary_file_is_read_from_the_model_folder(tmp_path):
    (tmp_path / "glossary.yaml").write_text("NVMe: N V M E\nM.2:\n  en: M dot two\n", encoding="utf-8")
    assert load_glossary(tmp_path / "glossary.yaml") == {"NVMe": "N V M E", "M.2": {"en": "M dot two"}}
    assert TextNormalizerV2.for_model_dir(tmp_path).normalize("an NVMe drive") == "an N V M E drive"
    assert TextNormalizerV2.for_model_dir(tmp_path / "absent").glossary == []


@pytest.mark.parametrize("content", ["- a\n- b\n", "M.2:\n  fr: M point deux\n", "X: [1, 2]\n", "a: [\n"])
def test_malformed_glossary_is_a_config_error(tmp_path, content):
    path = tmp_path / "glossary.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=f"glossary {path}"):
        load_glossary(path)
    assert path.read_text(encoding="utf-8") == content


def test_v2_tokenizer_uses_the_folder_bpe_model_and_the_v2_normaliser(tmp_path):
    (tmp_path / "bpe.model").write_bytes(train_tiny_bpe())
    tokenizer = load_v2_tokenizer(tmp_path, OmegaConf.create({"dataset": {"bpe_model": "bpe.model"}}))
    assert isinstance(tokenizer.normalizer, TextNormalizerV2)
    plain = TextTokenizer(tmp_path / "bpe.model", tokenizer.normalizer)
    assert tokenizer.encode("GPT-5 模型") == plain.encode("GPT-五 模型", normalize=False)


@pytest.mark.parametrize("folder", TEXT_GOLDENS, ids=[f.name for f in TEXT_GOLDENS])
def test_text_goldens(folder):
    tokenizer = TextTokenizer(folder / "bpe.model", TextNormalizerV2())
    for case in json.loads((folder / "expected_text.json").read_text(encoding="utf-8")):
        assert tokenizer.tokenize(case["normalized"], normalize=False) == case["tokens"], case["text"]
        assert tokenizer.encode(case["normalized"], normalize=False) == case["ids"], case["text"]
        assert tokenizer.normalizer.normalize(case["text"]) == case["normalized"], case["text"]
