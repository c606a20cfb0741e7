"""On a CUDA GPU: the captured decode step gives the eager codes, captures tolerate a busy thread, sampling
never waits for the GPU, and NCCL starts in one process.

Every test here is marked ``cuda`` and skipped without a GPU; ``benchmarks/gpu_check.py`` runs them with
``pytest -m cuda`` on a GPU machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch
from helpers import conformance_folders
from safetensors.torch import load_file

from indextts.checkpoint_folder import CheckpointFolder
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.gpt.sampling import draw_without_replacement
from indextts.gpt.step_runner import CudaGraphRunner, capture_count, clear_captured_steps

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

GREEDY = dict(do_sample=False, num_beams=1, repetition_penalty=1.0)
BEAM = dict(do_sample=False, num_beams=3, repetition_penalty=10.0, length_penalty=0.0)
DEFAULT = dict(seed=3)
GOLDEN_FOLDERS = conformance_folders("expected.safetensors")


@pytest.fixture(scope="module", params=[torch.float32, torch.float16], ids=["fp32", "fp16"])
def cuda_gpt(request, tiny_model_dir):
    model = CheckpointFolder(tiny_model_dir).load_gpt().to("cuda", request.param)
    yield model
    clear_captured_steps(model)


def inputs(model, lengths: list[int], seed: int):
    generator = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    conditioning = torch.randn(len(lengths), 32, model.model_dim, generator=generator).to("cuda", dtype)
    text_ids = torch.randint(2, model.number_text_tokens, (len(lengths), max(lengths)), generator=generator)
    return conditioning, text_ids.cuda(), torch.tensor(lengths, device="cuda")


def codes_of(model, batch, options: dict, graph: bool, fixed_shapes: bool = False) -> list[list[int]]:
    """Codes with the captured step, or eager ones (over the written slots, or over all slots masked)."""
    config = GenerationConfig(max_new_tokens=40, cuda_graph=graph, compile_backend="eager" if fixed_shapes else None,
                              **options)
    return [codes.tolist() for codes in generate_codes(model, *batch, config)]


@pytest.mark.parametrize("options", [GREEDY, BEAM, DEFAULT, dict(num_beams=1, seed=4)],
                         ids=["greedy", "beam3", "default", "sample"])
def test_graph_codes_equal_eager_codes(cuda_gpt, options):
    """Batched rows of different lengths; a second batch in the same bucket reuses the captured graph.

    In fp16 the eager reference attends over all slots like the graph does: attention kernels split
    longer key ranges differently, and fp16 rounding may then flip a near-tie of the random tiny model.
    """
    fixed_shapes = next(cuda_gpt.parameters()).dtype == torch.float16
    for seed, lengths in enumerate(([9, 3, 14], [5, 12, 2])):
        batch = inputs(cuda_gpt, lengths, seed)
        eager = codes_of(cuda_gpt, batch, options, graph=False, fixed_shapes=fixed_shapes)
        assert codes_of(cuda_gpt, batch, options, graph=True) == eager


def test_graph_is_captured_once_per_bucket(cuda_gpt, monkeypatch):
    captures = []
    original = CudaGraphRunner.__init__

    def counting(self, *args, **kwargs):
        captures.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(CudaGraphRunner, "__init__", counting)
    clear_captured_steps(cuda_gpt)
    for seed in range(3):
        codes_of(cuda_gpt, inputs(cuda_gpt, [6, 8], seed), GREEDY, graph=True)
    assert len(captures) == 1


def test_capture_while_another_thread_uses_the_gpu(cuda_gpt):
    """A server thread keeps working (and waiting for the GPU) while new buckets are captured: with torch's
    global capture mode its sync would break the capture or fail itself; the thread-local mode allows it."""
    stop, errors = threading.Event(), []

    def busy():
        matrix = torch.randn(256, 256, device="cuda")
        try:
            while not stop.is_set():
                float((matrix @ matrix).sum())  # a host sync on another stream
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=busy)
    thread.start()
    try:
        for seed in range(3):
            clear_captured_steps(cuda_gpt)
            before = capture_count(cuda_gpt)
            codes_of(cuda_gpt, inputs(cuda_gpt, [6, 8], seed), GREEDY, graph=True)
            assert capture_count(cuda_gpt) == before + 1
    finally:
        stop.set()
        thread.join()
    assert errors == []


def test_sampling_draws_without_waiting_for_the_gpu():
    probabilities = torch.rand(4, 100, device="cuda").softmax(dim=-1)
    torch.cuda.set_sync_debug_mode("error")
    try:
        draw_without_replacement(probabilities, 1, None)
        draw_without_replacement(probabilities, 6, None)
        with pytest.raises(RuntimeError):  # what the loop called before: it checks its input on the host
            torch.multinomial(probabilities, 1)
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("folder", GOLDEN_FOLDERS, ids=[p.name for p in GOLDEN_FOLDERS])
def test_graph_golden_codes_fp32(folder):
    golden = load_file(folder / "expected.safetensors")
    model = CheckpointFolder(folder).load_gpt().cuda()
    indices = sorted(int(name.rsplit("_", 1)[1]) for name in golden if name.startswith("text_"))
    for prefix, options in (("greedy_codes", GREEDY), ("beam_codes", BEAM)):
        for i in indices:
            text = golden[f"text_{i}"][None].cuda()
            config = GenerationConfig(max_new_tokens=30, **options)
            codes = generate_codes(model, golden[f"cond_{i}"][None].cuda(), text,
                                   torch.tensor([text.shape[1]], device="cuda"), config)
            assert codes[0].tolist() == golden[f"{prefix}_{i}"].tolist(), f"{prefix}_{i}"
    clear_captured_steps(model)


PROCESS_GROUP_CHECK = """
import socket, sys, torch, torch.distributed as dist
backend, device = sys.argv[1], torch.device(sys.argv[2])
with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                        device_id=device if device.type == "cuda" else None)
try:
    value = torch.ones(4, device=device)
    dist.all_reduce(value)
    dist.barrier()
    assert value.tolist() == [1.0] * 4, value
finally:
    dist.destroy_process_group()
print("process group ok")
"""
PROCESS_GROUP_TIMEOUT_S = 120


def run_process_group_check(backend: str, device: str) -> subprocess.CompletedProcess:
    """One-rank init, all-reduce and barrier in a child process on the loopback interface, bounded in
    time: a hang (NCCL picking an unreachable interface) fails this test instead of eating pytest's."""
    environment = dict(os.environ, NCCL_SOCKET_IFNAME="lo", GLOO_SOCKET_IFNAME="lo")
    return subprocess.run([sys.executable, "-c", PROCESS_GROUP_CHECK, backend, device], env=environment,
                          capture_output=True, text=True, timeout=PROCESS_GROUP_TIMEOUT_S)


def test_single_process_nccl_init():
    done = run_process_group_check("nccl", "cuda:0")
    assert done.returncode == 0 and "process group ok" in done.stdout, done.stdout + done.stderr
