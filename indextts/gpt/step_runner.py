"""How a generation runs its decode steps: eagerly, through ``torch.compile``, or as a replayed CUDA graph.

``make_step_runner`` picks one from the device and the ``GenerationConfig``:

- eager (CPU, or CUDA with ``cuda_graph=False``): attention over the written slots only;
- compiled (``compile_backend`` set): ``decode_step`` under ``torch.compile(fullgraph=True)`` with fixed
  shapes (all slots, masked);
- CUDA graph (CUDA with ``cuda_graph=True``, the default there): the fixed-shape step (compiled first
  when ``compile_backend`` is set) captured once per bucket (rows, beams, slots rounded up to
  ``SLOT_ROUNDING``, dtype) and replayed; each step costs one graph launch and no host sync. Buckets
  live in an attribute of the model (up to ``MAX_BUCKETS``, least recently used dropped), so they go
  with it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from indextts.gpt.decode_step import DecodeState, decode_step, prefill

SLOT_ROUNDING = 64
"""Captured buckets round the cache length up to a multiple of this, so similar prompts share a graph."""

MAX_BUCKETS = 4
"""Captured buckets kept per model; each holds its own key/value cache."""

CUDA_FINISHED_CHECK_INTERVAL = 16
"""On CUDA the host looks at the finished flags only every this many steps (each look waits for the GPU)."""

WARMUP_STEPS = 2
"""Eager runs of the step on a side stream before capture (lazy initialisation stays out of the graph)."""

BUCKETS_ATTRIBUTE = "_captured_decode_steps"
"""Model attribute holding its captured buckets (a plain dict entry: not a parameter, not saved)."""

CAPTURES_ATTRIBUTE = "_decode_step_captures"
"""Model attribute counting the graphs captured for it (benchmarks check that none is captured while timing)."""

CAPTURE_ERROR_MODE = "thread_local"
"""Only CUDA calls of the capturing thread may break a capture ("global", torch's default, fails on unsafe
calls from any thread): a server thread may keep using the GPU while a new bucket is captured."""


class DecodeStepRunner:
    """Eager or compiled decoding over a fresh ``DecodeState``.

    ``fixed_shapes`` attends over all slots (what compile and capture need); otherwise each step attends
    over the written slots only. ``finished_check_interval`` says how often the caller should read the
    finished flags (each read waits for the device).
    """

    def __init__(self, state: DecodeState, reorder: bool, step_function=decode_step, fixed_shapes: bool = False):
        self.state = state
        self.reorder = reorder
        self.step_function = step_function
        self.fixed_shapes = fixed_shapes
        self.prompt_length = 0
        on_cpu = state.codes.device.type == "cpu"
        self.only_changed = on_cpu and not fixed_shapes
        self.finished_check_interval = 1 if on_cpu else CUDA_FINISHED_CHECK_INTERVAL

    def prefill(self, prompt: torch.Tensor, is_prompt: torch.Tensor, repeats: int) -> torch.Tensor:
        """Prompt pass; float logits (B, V) of the first code."""
        self.prompt_length = prompt.shape[1]
        return prefill(self.state, prompt, is_prompt, repeats)

    def step(self, codes: torch.Tensor, index: int, parents: torch.Tensor | None = None) -> torch.Tensor:
        """Feed generated code number ``index`` (R,); float logits (R, V). ``parents`` (R,) reorder beams."""
        self.state.set_inputs(codes, index, parents)
        window = None if self.fixed_shapes else self.prompt_length + index + 1
        return self.step_function(self.state, window, self.reorder, self.only_changed)


class CudaGraphRunner(DecodeStepRunner):
    """The fixed-shape step captured as one CUDA graph on a bucket's state, replayed for every step."""

    def __init__(self, state: DecodeState, reorder: bool, step_function=decode_step):
        super().__init__(state, reorder, step_function, fixed_shapes=True)
        self.graph = torch.cuda.CUDAGraph()
        side_stream = torch.cuda.Stream(device=state.codes.device)
        side_stream.wait_stream(torch.cuda.current_stream(state.codes.device))
        with torch.cuda.stream(side_stream):
            for _ in range(WARMUP_STEPS):
                step_function(state, None, reorder)
        torch.cuda.current_stream(state.codes.device).wait_stream(side_stream)
        self.logits = capture_step(self.graph, step_function, state, reorder)
        self.used = False

    def prefill(self, prompt: torch.Tensor, is_prompt: torch.Tensor, repeats: int) -> torch.Tensor:
        if self.used:  # slots a previous generation wrote stay masked, but must not hold inf/nan
            self.state.cache.keys.zero_()
            self.state.cache.values.zero_()
        self.used = True
        return super().prefill(prompt, is_prompt, repeats)

    def step(self, codes: torch.Tensor, index: int, parents: torch.Tensor | None = None) -> torch.Tensor:
        """Replay the graph; the returned logits are overwritten by the next replay."""
        self.state.set_inputs(codes, index, parents)
        self.graph.replay()
        return self.logits


def capture_step(graph, step_function, state: DecodeState, reorder: bool) -> torch.Tensor:
    """Record one fixed-shape step into ``graph`` (a ``torch.cuda.CUDAGraph``); its logits (R, V) tensor."""
    with torch.cuda.graph(graph, capture_error_mode=CAPTURE_ERROR_MODE):
        return step_function(state, None, reorder)


def capture_count(model) -> int:
    """How many decode-step graphs have been captured for ``model`` so far."""
    return model.__dict__.get(CAPTURES_ATTRIBUTE, 0)


def _compiled(backend):
    """``decode_step`` under torch.compile: one graph, static shapes (``backend``: a name or a callable)."""
    return torch.compile(decode_step, backend=backend, fullgraph=True, dynamic=False)


def _captured_runner(model, rows: int, slots: int, dtype: torch.dtype, device: torch.device, reorder: bool,
                     compile_backend: str | None) -> CudaGraphRunner:
    """The model's runner for this bucket, captured on first use (least recently used buckets dropped)."""
    slots = -(-slots // SLOT_ROUNDING) * SLOT_ROUNDING
    weights = next(model.parameters()).data_ptr()  # a model moved or cast gets new buckets
    key = (rows, slots, dtype, str(device), reorder, compile_backend, weights)
    buckets = model.__dict__.setdefault(BUCKETS_ATTRIBUTE, OrderedDict())
    if key in buckets:
        buckets.move_to_end(key)
        return buckets[key]
    while len(buckets) >= MAX_BUCKETS:
        buckets.popitem(last=False)
    step_function = _compiled(compile_backend) if compile_backend else decode_step
    runner = CudaGraphRunner(DecodeState(model, rows, slots, dtype, device), reorder, step_function)
    model.__dict__[CAPTURES_ATTRIBUTE] = capture_count(model) + 1
    buckets[key] = runner
    return runner


def make_step_runner(model, rows: int, slots: int, dtype: torch.dtype, device: torch.device, reorder: bool,
                     cuda_graph: bool, compile_backend: str | None) -> DecodeStepRunner:
    """The runner for ``rows`` = batch * beams decoding rows and a cache of at least ``slots`` slots."""
    if device.type == "cuda" and cuda_graph:
        return _captured_runner(model, rows, slots, dtype, device, reorder, compile_backend)
    state = DecodeState(model, rows, slots, dtype, device)
    if compile_backend:
        return DecodeStepRunner(state, reorder, _compiled(compile_backend), fixed_shapes=True)
    return DecodeStepRunner(state, reorder)


def clear_captured_steps(model) -> None:
    """Drop the CUDA graphs and caches captured for ``model`` (frees their GPU memory)."""
    model.__dict__.pop(BUCKETS_ATTRIBUTE, None)
