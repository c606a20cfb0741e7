"""Benchmark the text frontend: normalise + tokenise mixed Chinese/English sentences.

    python benchmarks/bench_text.py checkpoints/bpe.model            # release tokenizer
    python benchmarks/bench_text.py ../shared/conformance/text/bpe.model --count 1000

(run from the repository root after `make install`, or with PYTHONPATH=.). Prints sentences per
second and the total time; the normaliser's one-off start-up is reported separately.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from indextts.errors import IndexTTSError
from indextts.text import TextNormalizer, TextTokenizer

TEMPLATES = (
    "我们的新产品在{year}年{month}月{day}日正式发布，售价{price}元。",
    "会议定在下午{hour}:{minute:02d}开始，请大家准时参加！",
    "他的体重是{small}.{digit}公斤，身高1.{digit}米。",
    "这个字读音是chong2，不是zhong4，第{small}页有说明。",
    "迈克尔·乔丹一共拿了{small}个冠军。",
    "It's a beautiful day, isn't it? Let's walk {small} miles.",
    "The price dropped by {small}% to ${price}.{cents:02d} last week.",
    "这份 quarterly report 显示我们的 revenue 增长了{small}%。",
    "Meet me at {hour}:{minute:02d} PM on Friday, room {price}.",
    "电话号码是138-{phone:04d}-8000，请记下来。",
    "第一章：开始……第{small}章：结束。",
    "“你好”用英文怎么说？（Hello）",
)


def mixed_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` sentences cycling through the templates with random numbers."""
    rng = random.Random(seed)
    sentences = []
    for i in range(count):
        template = TEMPLATES[i % len(TEMPLATES)]
        sentences.append(
            template.format(
                year=rng.randint(1900, 2099),
                month=rng.randint(1, 12),
                day=rng.randint(1, 28),
                price=rng.randint(1, 99999),
                hour=rng.randint(1, 12),
                minute=rng.randint(0, 59),
                small=rng.randint(2, 99),
                digit=rng.randint(0, 9),
                cents=rng.randint(0, 99),
                phone=rng.randint(0, 9999),
            )
        )
    return sentences


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bpe_model", help="SentencePiece model, e.g. checkpoints/bpe.model")
    parser.add_argument("--count", type=int, default=1000, help="number of sentences (default 1000)")
    args = parser.parse_args()
    try:
        started = time.perf_counter()
        tokenizer = TextTokenizer(args.bpe_model, TextNormalizer())
        setup = time.perf_counter() - started
        sentences = mixed_sentences(args.count)
        started = time.perf_counter()
        total_tokens = sum(len(tokenizer.encode(s)) for s in sentences)
        elapsed = time.perf_counter() - started
    except IndexTTSError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"normaliser + tokenizer start-up: {setup:.2f} s")
    print(
        f"{len(sentences)} sentences ({total_tokens} tokens) in {elapsed:.2f} s: "
        f"{len(sentences) / elapsed:.0f} sentences/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
