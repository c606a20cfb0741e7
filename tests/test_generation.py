"""Mel-code generation: conformance goldens, agreement with transformers' own generate(), batching, options."""

from __future__ import annotations

import inspect

import pytest
import torch
import transformers
from helpers import conformance_folders
from safetensors.torch import load_file
from transformers import GenerationMixin, GPT2Model, GPT2PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from indextts.checkpoint_folder import CheckpointFolder
from indextts.errors import InferenceError
from indextts.gpt.generation import FAKE_PROMPT_TOKEN, GenerationConfig, generate_codes, stream_codes

GOLDEN_MAX_NEW_CODES = 30
GOLDEN_BEAMS = 3
GOLDEN_BEAM_REPETITION_PENALTY = 10.0
GREEDY = dict(do_sample=False, num_beams=1, repetition_penalty=1.0)
GREEDY_PENALIZED = dict(do_sample=False, num_beams=1, repetition_penalty=10.0)
BEAM = dict(do_sample=False, num_beams=3, repetition_penalty=10.0, length_penalty=0.0)

GOLDEN_FOLDERS = conformance_folders("expected.safetensors")


@pytest.fixture(scope="module")
def tiny_gpt(tiny_model_dir):
    return CheckpointFolder(tiny_model_dir).load_gpt()


def random_inputs(model, text_lengths: list[int], seed: int = 0):
    """Conditioning (B, 32, D), right-padded text ids (B, L) and lengths (B,) for a few made-up texts."""
    generator = torch.Generator().manual_seed(seed)
    batch, longest = len(text_lengths), max(text_lengths)
    dim = model.mel_embedding.embedding_dim
    conditioning = torch.randn(batch, 32, dim, generator=generator)
    text_ids = torch.randint(2, model.number_text_tokens, (batch, longest), generator=generator)
    lengths = torch.tensor(text_lengths)
    text_ids = text_ids.masked_fill(torch.arange(longest)[None, :] >= lengths[:, None], 0)
    return conditioning, text_ids, lengths


TRANSFORMERS_VERSION = tuple(int(part) for part in transformers.__version__.split(".")[:2])
CACHE_ARGUMENT = "cache" if "cache" in inspect.signature(GPT2Model.forward).parameters else "past_key_values"
"""transformers 5.24 renamed GPT-2's ``past_key_values`` to ``cache``; the cross-check runs on both."""


class TransformersReference(GPT2PreTrainedModel, GenerationMixin):
    """The reference's decoding set-up, run by transformers' ``generate``: fake prompt ids (id 1 per prompt
    row, then start_mel), the prompt embeddings prepended on the first pass, and each later code embedded at
    the position given by the running sequence length minus the prompt length."""

    def __init__(self, model, conditioning, text_ids):
        super().__init__(model.gpt.config)
        self.model = model
        text = model.text_inputs(text_ids, torch.tensor([text_ids.shape[1]]))
        self.prompt = torch.cat([conditioning, text], dim=1)

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        cache = kwargs.get(CACHE_ARGUMENT)
        prompt_length = self.prompt.shape[1]
        if input_ids.shape[1] != 1:
            codes = input_ids[:, prompt_length:]
            positions = torch.arange(codes.shape[1]).expand_as(codes)
            prompt = self.prompt.expand(input_ids.shape[0], -1, -1)
            embeddings = torch.cat([prompt, self.model.mel_inputs(codes, positions)], dim=1)
        else:
            total = attention_mask.shape[1] if attention_mask is not None else cache.get_seq_length() + 1
            embeddings = self.model.mel_inputs(input_ids, torch.full_like(input_ids, total - prompt_length))
        output = self.model.gpt(inputs_embeds=embeddings, use_cache=True, **{CACHE_ARGUMENT: cache},
                                position_ids=torch.zeros(1, embeddings.shape[1], dtype=torch.long))
        return CausalLMOutputWithPast(logits=self.model.mel_logits(output.last_hidden_state),
                                      **{CACHE_ARGUMENT: getattr(output, CACHE_ARGUMENT)})

    def codes(self, max_new_tokens: int, **options) -> list[int]:
        stop = self.model.stop_mel_token
        ids = torch.full((1, self.prompt.shape[1] + 1), FAKE_PROMPT_TOKEN, dtype=torch.long)
        ids[:, -1] = self.model.start_mel_token
        with torch.no_grad():
            out = self.generate(ids, bos_token_id=self.model.start_mel_token, pad_token_id=stop,
                                eos_token_id=stop, max_length=ids.shape[1] + max_new_tokens, **options)
        codes = out[0, ids.shape[1]:].tolist()
        return codes[: codes.index(stop) + 1] if stop in codes else codes


@pytest.mark.parametrize("folder", GOLDEN_FOLDERS, ids=[p.name for p in GOLDEN_FOLDERS])
def test_conformance_codes(folder):
    golden = load_file(folder / "expected.safetensors")
    model = CheckpointFolder(folder).load_gpt()
    settings = {
        "greedy_codes": GenerationConfig(**GREEDY, max_new_tokens=GOLDEN_MAX_NEW_CODES),
        "beam_codes": GenerationConfig(do_sample=False, num_beams=GOLDEN_BEAMS, length_penalty=0.0,
                                       repetition_penalty=GOLDEN_BEAM_REPETITION_PENALTY,
                                       max_new_tokens=GOLDEN_MAX_NEW_CODES),
    }
    indices = sorted(int(name.rsplit("_", 1)[1]) for name in golden if name.startswith("text_"))
    for prefix, config in settings.items():
        for i in indices:
            text = golden[f"text_{i}"][None]
            codes = generate_codes(model, golden[f"cond_{i}"][None], text, torch.tensor([text.shape[1]]), config)
            assert codes[0].tolist() == golden[f"{prefix}_{i}"].tolist(), f"{folder.name}: {prefix}_{i}"


@pytest.mark.parametrize(
    "options",
    [
        GREEDY,
        GREEDY_PENALIZED,
        BEAM,
        dict(do_sample=False, num_beams=4, repetition_penalty=2.0, length_penalty=1.0),
        dict(do_sample=False, num_beams=3, repetition_penalty=10.0, length_penalty=0.0, min_new_tokens=20),
        dict(do_sample=True, num_beams=1, repetition_penalty=10.0, top_k=30, top_p=0.8, temperature=1.0),
        dict(do_sample=True, num_beams=1, repetition_penalty=3.0, top_k=5, top_p=0.9, temperature=0.7),
        dict(do_sample=True, num_beams=3, repetition_penalty=10.0, top_k=30, top_p=0.8, length_penalty=0.0),
        dict(do_sample=True, num_beams=2, repetition_penalty=1.5, top_k=0, top_p=1.0, temperature=1.3),
    ],
    ids=["greedy", "greedy-penalty", "beam3", "beam4-length-penalty", "beam3-min-new", "sample",
         "sample-warped", "beam-sample", "beam-sample-unfiltered"],
)
@pytest.mark.skipif(TRANSFORMERS_VERSION < (5, 24),
                    reason="cross-check against transformers' own generate(): before 5.24 its beam search cannot run "
                           "this model's decoding set-up and its sampler draws in another order; our decoding is held "
                           "to the reference by the conformance goldens on every version")
def test_matches_transformers_generate(tiny_gpt, options):
    """Same codes as transformers' generate() on the reference set-up, sampling included (same RNG draws)."""
    max_new = 40
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [7])
    reference = TransformersReference(tiny_gpt, conditioning, text_ids).eval()
    for seed in (0, 1):
        torch.manual_seed(seed)
        expected = reference.codes(max_new, **options)
        torch.manual_seed(seed)
        codes = generate_codes(tiny_gpt, conditioning, text_ids, lengths,
                               GenerationConfig(max_new_tokens=max_new, **options))[0]
        assert codes.tolist() == expected, f"seed {seed}"


@pytest.mark.parametrize("options", [GREEDY, GREEDY_PENALIZED, BEAM], ids=["greedy", "greedy-penalty", "beam3"])
def test_batched_rows_equal_unbatched(tiny_gpt, options):
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [9, 3, 14, 6], seed=1)
    config = GenerationConfig(max_new_tokens=40, **options)
    batched = generate_codes(tiny_gpt, conditioning, text_ids, lengths, config)
    for row in range(len(lengths)):
        length = int(lengths[row])
        alone = generate_codes(tiny_gpt, conditioning[row : row + 1], text_ids[row : row + 1, :length],
                               lengths[row : row + 1], config)[0]
        assert batched[row].tolist() == alone.tolist(), f"row {row}"


@pytest.mark.parametrize("num_beams", [1, 3])
def test_seeded_sampling_is_reproducible(tiny_gpt, num_beams):
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [8, 5], seed=2)

    def run(**seeding):
        config = GenerationConfig(num_beams=num_beams, max_new_tokens=30, **seeding)
        return [codes.tolist() for codes in generate_codes(tiny_gpt, conditioning, text_ids, lengths, config)]

    first = run(seed=11)
    assert run(seed=11) == first
    assert run(generator=torch.Generator().manual_seed(11)) == first
    assert run(seed=12) != first


@pytest.mark.parametrize("options", [GREEDY, BEAM, dict(num_beams=1), dict()],
                         ids=["greedy", "beam3", "sample", "beam-sample"])
def test_max_and_min_new_tokens(tiny_gpt, options):
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [6, 11], seed=3)
    stop = tiny_gpt.stop_mel_token
    for codes in generate_codes(tiny_gpt, conditioning, text_ids, lengths,
                                GenerationConfig(max_new_tokens=12, seed=0, **options)):
        assert 1 <= len(codes) <= 12
        assert stop not in codes[:-1].tolist()
    forced = GenerationConfig(max_new_tokens=25, min_new_tokens=25, seed=0, **options)
    for codes in generate_codes(tiny_gpt, conditioning, text_ids, lengths, forced):
        assert len(codes) == 25
        assert stop not in codes.tolist()
        assert codes.dtype == torch.long


def test_stop_code_ends_each_row(tiny_gpt):
    """With the stop code strongly favoured every row stops at once and keeps the stop code."""
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [4, 9], seed=4)
    stop = tiny_gpt.stop_mel_token
    bias = tiny_gpt.mel_head.bias
    original = bias.detach().clone()
    try:
        with torch.no_grad():
            bias[stop] += 1000.0
        for options in (GREEDY, BEAM):
            for codes in generate_codes(tiny_gpt, conditioning, text_ids, lengths,
                                        GenerationConfig(max_new_tokens=20, **options)):
                assert codes.tolist() == [stop]
    finally:
        with torch.no_grad():
            bias.copy_(original)


@pytest.mark.parametrize(
    "options",
    [dict(temperature=0.0), dict(top_p=0.0), dict(num_beams=0), dict(max_new_tokens=0),
     dict(max_new_tokens=10, min_new_tokens=11), dict(repetition_penalty=-1.0), dict(top_k=-1)],
)
def test_invalid_settings_raise_clear_error(tiny_gpt, options):
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [3])
    with pytest.raises(InferenceError, match="Invalid generation settings"):
        generate_codes(tiny_gpt, conditioning, text_ids, lengths, GenerationConfig(**options))


def test_too_many_new_tokens_for_the_position_table(tiny_gpt):
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [3])
    too_many = tiny_gpt.mel_pos_embedding.emb.num_embeddings
    with pytest.raises(InferenceError, match="max_mel_tokens"):
        generate_codes(tiny_gpt, conditioning, text_ids, lengths, GenerationConfig(max_new_tokens=too_many))


@pytest.mark.parametrize("options", [GREEDY, dict(num_beams=1, seed=5)], ids=["greedy", "sample"])
def test_a_model_in_train_mode_gives_the_eval_codes_and_keeps_its_mode(tiny_gpt, options):
    """GPT-2's dropout (p = 0.1) would change the codes, and a captured graph would replay one dropout mask."""
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [7, 4], seed=6)
    config = GenerationConfig(max_new_tokens=30, **options)
    expected = [codes.tolist() for codes in generate_codes(tiny_gpt, conditioning, text_ids, lengths, config)]
    tiny_gpt.train()
    tiny_gpt.conditioning_encoder.eval()  # a mixed mode comes back as it was
    try:
        got = [codes.tolist() for codes in generate_codes(tiny_gpt, conditioning, text_ids, lengths, config)]
        assert tiny_gpt.training and tiny_gpt.gpt.training and not tiny_gpt.conditioning_encoder.training
    finally:
        tiny_gpt.eval()
    assert got == expected


@pytest.mark.parametrize("options", [GREEDY, BEAM, dict(num_beams=1, seed=7), dict(seed=8)],
                         ids=["greedy", "beam3", "sample", "beam-sample"])
def test_streamed_codes_grow_into_the_generated_codes(tiny_gpt, options):
    conditioning, text_ids, lengths = random_inputs(tiny_gpt, [8, 5], seed=9)
    config = GenerationConfig(max_new_tokens=40, min_new_tokens=24, **options)
    final = [codes.tolist() for codes in generate_codes(tiny_gpt, conditioning, text_ids, lengths, config)]
    streamed = list(stream_codes(tiny_gpt, conditioning, text_ids, lengths, config, every=4))
    assert [final for _, final in streamed] == [False] * (len(streamed) - 1) + [True]
    items = [[codes.tolist() for codes in item] for item, _ in streamed]
    assert items[-1] == final
    assert len(items) > 1
    for row in range(len(final)):
        settled = [len(item[row]) for item in items[:-1]]
        assert settled == sorted(settled)
        assert all(item[row] == final[row][: len(item[row])] for item in items[:-1])
        assert settled[-1] > 0, "nothing settled before the end"
