"""The fixed-shape decode step: one graph under torch.compile, no recompiles, same codes as eager decoding.

The CPU stands in for the GPU here: a step that compiles with ``fullgraph=True`` and keeps one graph over
many steps has no graph break, no data-dependent Python branch and no host sync, which is what CUDA graph
capture needs (tests/test_cuda_decode.py checks the capture itself on a GPU).
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from helpers import conformance_folders
from safetensors.torch import load_file

from indextts.checkpoint_folder import CheckpointFolder
from indextts.gpt import generation
from indextts.gpt.decode_step import DecodeState, decode_step
from indextts.gpt.generation import GenerationConfig, _Decoder, generate_codes
from indextts.gpt.step_runner import SLOT_ROUNDING, DecodeStepRunner, capture_step

STEPS = 24
GOLDEN_MAX_NEW_CODES = 30
GREEDY = dict(do_sample=False, num_beams=1, repetition_penalty=1.0)
BEAM = dict(do_sample=False, num_beams=3, repetition_penalty=10.0, length_penalty=0.0)
GOLDEN_FOLDERS = conformance_folders("expected.safetensors")


@pytest.fixture(scope="module")
def tiny_gpt(tiny_model_dir):
    return CheckpointFolder(tiny_model_dir).load_gpt()


class CountingBackend:
    """A torch.compile backend that counts the graphs it is handed, then runs them with aot_eager.

    aot_eager traces the step through AOTAutograd like inductor does, but compiles nothing, so the graph
    checks stay fast; the inductor run is in ``test_inductor_codes_equal_eager_codes``.
    """

    def __init__(self):
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return torch._dynamo.backends.registry.lookup_backend("aot_eager")(graph_module, example_inputs)


def inputs(model, lengths: list[int], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    dim = model.mel_embedding.embedding_dim
    conditioning = torch.randn(len(lengths), 32, dim, generator=generator)
    text_ids = torch.randint(2, model.number_text_tokens, (len(lengths), max(lengths)), generator=generator)
    return conditioning, text_ids, torch.tensor(lengths)


@pytest.mark.parametrize("beams", [1, 3], ids=["greedy", "beam3"])
def test_step_compiles_to_one_graph_without_recompiles(tiny_gpt, beams):
    """fullgraph=True fails on any graph break; the counter proves >= 20 consecutive steps reuse one graph."""
    torch._dynamo.reset()
    backend = CountingBackend()
    step = torch.compile(decode_step, backend=backend, fullgraph=True, dynamic=False)
    conditioning, text_ids, lengths = inputs(tiny_gpt, [7, 3])
    config = GenerationConfig(max_new_tokens=STEPS + 1, num_beams=beams)
    with torch.no_grad():
        text = tiny_gpt.text_inputs(text_ids, lengths)
    decoder = _Decoder(tiny_gpt, conditioning, text, lengths, config)
    state: DecodeState = decoder.runner.state
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        logits = decoder.prefill().repeat_interleave(beams, dim=0)
        for index in range(1, STEPS + 1):
            codes = logits.argmax(dim=-1)
            parents = torch.arange(state.rows).roll(index) if beams > 1 else None
            state.set_inputs(codes, index, parents)
            logits = step(state, None, beams > 1)
    assert backend.graphs == 1
    assert not torch._dynamo.utils.counters["graph_break"]


@pytest.mark.parametrize("options", [GREEDY, BEAM, dict(num_beams=3, seed=5), dict(num_beams=1, seed=5)],
                         ids=["greedy", "beam3", "beam-sample", "sample"])
def test_fixed_shape_codes_equal_eager_codes(tiny_gpt, options):
    """Attending over every slot (masked) gives the codes of attending over the written ones, batched rows too."""
    conditioning, text_ids, lengths = inputs(tiny_gpt, [9, 3, 14], seed=1)
    eager = generate_codes(tiny_gpt, conditioning, text_ids, lengths, GenerationConfig(max_new_tokens=30, **options))
    fixed = generate_codes(tiny_gpt, conditioning, text_ids, lengths,
                           GenerationConfig(max_new_tokens=30, compile_backend=CountingBackend(), **options))
    assert [c.tolist() for c in fixed] == [c.tolist() for c in eager]


@pytest.mark.parametrize("options", [GREEDY, BEAM], ids=["greedy", "beam3"])
def test_reused_bucket_state_gives_eager_codes(tiny_gpt, monkeypatch, options):
    """One fixed-shape state serves batches of other prompt lengths in turn, as a captured CUDA graph's bucket does."""
    batches = [inputs(tiny_gpt, lengths, seed) for seed, lengths in enumerate(([9, 3, 14], [5, 12, 2], [2, 2, 2]))]
    config = GenerationConfig(max_new_tokens=30, **options)
    eager = [[c.tolist() for c in generate_codes(tiny_gpt, *batch, config)] for batch in batches]
    states: dict[int, DecodeState] = {}

    def bucket_runner(model, rows, slots, dtype, device, reorder, cuda_graph, compile_backend):
        state = states.setdefault(rows, DecodeState(model, rows, 2 * SLOT_ROUNDING, dtype, device))
        return DecodeStepRunner(state, reorder, fixed_shapes=True)

    monkeypatch.setattr(generation, "make_step_runner", bucket_runner)
    reused = [[c.tolist() for c in generate_codes(tiny_gpt, *batch, config)] for batch in batches]
    assert reused == eager
    assert len(states) == 1


@pytest.mark.slow
@pytest.mark.parametrize("folder", GOLDEN_FOLDERS, ids=[p.name for p in GOLDEN_FOLDERS])
def test_inductor_codes_equal_eager_codes(folder):
    """The step compiled to C++ kernels by inductor reproduces the golden greedy and beam codes."""
    torch._dynamo.reset()
    golden = load_file(folder / "expected.safetensors")
    model = CheckpointFolder(folder).load_gpt()
    settings = {"greedy_codes": GREEDY, "beam_codes": BEAM}
    index = min(int(name.rsplit("_", 1)[1]) for name in golden if name.startswith("text_"))
    text = golden[f"text_{index}"][None]
    for prefix, options in settings.items():
        config = GenerationConfig(max_new_tokens=GOLDEN_MAX_NEW_CODES, compile_backend="inductor", **options)
        codes = generate_codes(model, golden[f"cond_{index}"][None], text, torch.tensor([text.shape[1]]), config)
        assert codes[0].tolist() == golden[f"{prefix}_{index}"].tolist(), prefix


def test_capture_lets_other_threads_use_the_gpu(monkeypatch):
    """The capture asks for CUDA's thread-local error mode (the CUDA test runs a busy thread during one)."""
    requested = []

    @contextlib.contextmanager
    def recording_graph(graph, **options):
        requested.append((graph, options))
        yield

    monkeypatch.setattr(torch.cuda, "graph", recording_graph)
    graph, logits = object(), torch.zeros(2, 5)
    assert capture_step(graph, lambda state, window, reorder: logits, None, False) is logits
    assert requested == [(graph, {"capture_error_mode": "thread_local"})]
