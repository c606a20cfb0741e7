"""WER/CER scoring on a hand-checked table: normalisation, per-script counts, mixed zh/en, pooling."""

from __future__ import annotations

import pytest

from indextts.evaluation.metrics import (
    EditCounts,
    edit_counts,
    language_of,
    pooled,
    score,
    scoring_tokens,
)

# (reference, hypothesis, {script: (errors, reference tokens)}), each counted by hand:
# mixed = Chinese characters and English words in one sequence, en = words only, zh = characters only.
TABLE = [
    # numbers, case and punctuation normalise equal
    ("The train leaves at 7.", "the train leaves at seven", {"mixed": (0, 5), "en": (0, 5), "zh": (0, 0)}),
    ("I have 25 apples!", "I have twenty-five apples", {"mixed": (0, 5), "en": (0, 5), "zh": (0, 0)}),
    ("火车7点出发。", "火车七点出发", {"mixed": (0, 6), "en": (0, 0), "zh": (0, 6)}),
    ("我今天用 Python 写了一个小程序。", "我今天用python写了一个小程序", {"mixed": (0, 12), "en": (0, 1), "zh": (0, 11)}),
    # one substitution ("leaves" -> "leave")
    ("The train leaves at 7.", "the train leave at seven", {"mixed": (1, 5), "en": (1, 5), "zh": (0, 0)}),
    # a deletion ("the") and an insertion ("now")
    ("Please close the window.", "please close window now", {"mixed": (2, 4), "en": (2, 4), "zh": (0, 0)}),
    # a character substituted (七 -> 八) and one inserted (了)
    ("火车七点出发。", "火车八点出发了", {"mixed": (2, 6), "en": (0, 0), "zh": (2, 6)}),
    # mixed: "Python" heard as two characters: 1 substitution + 1 insertion in the whole sequence;
    # per script the English word is deleted and two characters are inserted
    ("我今天用 Python 写了一个小程序。", "我今天用派森写了一个小程序", {"mixed": (2, 12), "en": (1, 1), "zh": (2, 11)}),
    # mixed: model -> models (substitution) and 需 deleted
    ("这个 model 只需要几分钟就能训练好。", "这个 models 只要几分钟就能训练好", {"mixed": (2, 14), "en": (1, 1), "zh": (1, 13)}),
    # nothing heard: every reference token deleted; nothing to say: every heard token inserted
    ("Hello world", "", {"mixed": (2, 2), "en": (2, 2), "zh": (0, 0)}),
    ("", "hello", {"mixed": (1, 0), "en": (1, 0), "zh": (0, 0)}),
]


@pytest.mark.parametrize("reference, hypothesis, expected", TABLE)
def test_hand_checked_error_counts(reference, hypothesis, expected):
    result = score(reference, hypothesis)
    assert {script: (c.errors, c.reference_tokens) for script, c in result.counts.items()} == expected


def test_scoring_tokens_are_characters_and_words():
    assert scoring_tokens("下午3点有一个 Online 会议。") == ["下", "午", "三", "点", "有", "一", "个", "online", "会", "议"]
    assert scoring_tokens("Don't stop!") == ["don't", "stop"]
    assert scoring_tokens("   ") == [] and scoring_tokens("?!") == []


def test_rates_pool_errors_over_reference_tokens():
    counts = [EditCounts(1, 4), EditCounts(0, 6), EditCounts(3, 0)]
    assert pooled(counts) == EditCounts(4, 10) and pooled(counts).rate == pytest.approx(0.4)
    assert EditCounts(2, 0).rate is None
    assert edit_counts(["a", "b"], ["a", "b"]) == EditCounts(0, 2)


def test_language_of_text():
    assert language_of("The weather is lovely.") == "en"
    assert language_of("这首 song 的旋律非常好听。") == "zh" and language_of("今天天气很好") == "zh"
