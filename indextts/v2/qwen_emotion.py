"""The IndexTTS-2 release's text-to-emotion model: a small Qwen chat model that scores eight emotions.

As the reference's ``QwenEmotion``: the description is sent under the system prompt "文本情感分类"
(text emotion classification) with thinking off; the answer is JSON (or ``key: value`` pairs) keyed by
the Chinese emotion names; scores are clamped to [0, 1.2], missing ones are 0, and an all-zero answer
becomes calm 1.0. The model cannot tell sad from melancholic, so a description naming melancholy swaps
the two scores (the reference's workaround). Unlike the reference, the answer is decoded greedily and
capped at ``MAX_ANSWER_TOKENS``. Loading needs transformers and the folder ``qwen_emo_path``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from indextts.v2.emotion import EMOTIONS, MAX_EMOTION_VALUE

SYSTEM_PROMPT = "文本情感分类"
CHINESE_NAMES = ("高兴", "愤怒", "悲伤", "恐惧", "反感", "低落", "惊讶", "自然")
"""The model's names of ``EMOTIONS``, in that order."""
MELANCHOLIC_WORDS = ("低落", "melancholy", "melancholic", "depression", "depressed", "gloomy")
END_OF_THINKING = 151668
"""Qwen3's ``</think>`` token; the answer follows its last occurrence."""
MAX_ANSWER_TOKENS = 256
PAIR = re.compile(r'([^\s":.,{}]+?)"?\s*:\s*([\d.]+)')


def parse_scores(answer: str, description: str) -> tuple[float, ...]:
    """Eight weights in ``EMOTIONS`` order from the model's ``answer`` to ``description``."""
    try:
        found = json.loads(answer)
    except json.JSONDecodeError:
        found = {m.group(1): float(m.group(2)) for m in PAIR.finditer(answer)}
    if not isinstance(found, dict):
        found = {}
    english = dict(zip(CHINESE_NAMES, EMOTIONS))
    scores = {name: found.get(name, found.get(english[name], 0.0)) for name in CHINESE_NAMES}
    if any(word in description.lower() for word in MELANCHOLIC_WORDS):
        scores["悲伤"], scores["低落"] = scores["低落"], scores["悲伤"]
    values = [max(0.0, min(MAX_EMOTION_VALUE, float(scores[name]))) for name in CHINESE_NAMES]
    if all(value <= 0.0 for value in values):
        values[EMOTIONS.index("calm")] = 1.0
    return tuple(values)


class QwenEmotion:
    """The chat model in ``folder`` (transformers format) on ``device``."""

    def __init__(self, folder: str | Path, device: str | torch.device = "cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=dtype).to(device).eval()

    @torch.inference_mode()
    def weights(self, description: str) -> tuple[float, ...]:
        """Eight emotion weights in ``EMOTIONS`` order for a description of how to speak."""
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": description}]
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                    enable_thinking=False)
        inputs = self.tokenizer([prompt], return_tensors="pt").to(self.model.device)
        generated = self.model.generate(**inputs, max_new_tokens=MAX_ANSWER_TOKENS, do_sample=False,
                                        pad_token_id=self.tokenizer.eos_token_id)
        answer = generated[0][inputs.input_ids.shape[1]:].tolist()
        start = len(answer) - answer[::-1].index(END_OF_THINKING) if END_OF_THINKING in answer else 0
        return parse_scores(self.tokenizer.decode(answer[start:], skip_special_tokens=True), description)
