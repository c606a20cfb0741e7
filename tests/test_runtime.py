"""Device, precision and torchrun context resolution shared by extraction, training and inference."""

import ctypes
import os
import platform
import resource
import subprocess
import sys

import pytest
import torch

from indextts.errors import ConfigError
from indextts.runtime import (DistributedContext, dtype_of, init_distributed, resolve_device, resolve_precision,
                              reuse_freed_host_memory)


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_cuda_without_cuda_says_what_to_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available.*Use device auto or cpu"):
        resolve_device("cuda:1")


def test_unknown_device_is_named():
    with pytest.raises(ConfigError, match="Unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_cuda_device_is_offset_by_local_rank(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:2") == torch.device("cuda", 3)
    assert chosen == [torch.device("cuda", 1), torch.device("cuda", 3)]
    with pytest.raises(ConfigError, match="needs GPU 4, but only 4 are visible"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["fp32", "bf16", "fp16"])
def test_concrete_precisions_pass_through(name):
    assert resolve_precision(name, torch.device("cpu")) == name
    assert dtype_of(name) == {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def test_auto_precision_is_fp32_on_cpu_and_the_stage_default_on_cuda(monkeypatch):
    assert resolve_precision("auto", torch.device("cpu"), cuda_auto="bf16") == "fp32"
    assert resolve_precision("auto", torch.device("cuda", 0), cuda_auto="fp16") == "fp16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", torch.device("cuda", 0), cuda_auto="bf16") == "fp16"


def test_unknown_precision_lists_the_vocabulary():
    with pytest.raises(ConfigError, match="fp32, bf16, fp16, auto"):
        resolve_precision("float16", torch.device("cpu"))


def test_single_process_context(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed("cpu")
    assert context == DistributedContext(rank=0, world_size=1, device=torch.device("cpu"))
    assert context.is_main and not context.enabled
    context.barrier()


FAULT_PROBE = """
import resource, sys, torch
from indextts.runtime import reuse_freed_host_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_host_memory()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):
    activations = [torch.ones(2**20) for _ in range(25)]  # 25 x 4 MiB, freed together like a step's
    del activations
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def _page_faults_of_six_rounds(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", FAULT_PROBE, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_host_memory_is_reused_not_faulted_in_again():
    one_round = 25 * 4 * 2**20 // resource.getpagesize()
    assert _page_faults_of_six_rounds("reuse") < 1.5 * one_round  # only the first round touches new pages
    assert _page_faults_of_six_rounds("default") > 1.5 * one_round  # control: glibc's defaults fault again


def test_reusing_host_memory_is_skipped_without_glibc(monkeypatch):
    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert reuse_freed_host_memory() is False


LATE_RANK_SCRIPT = """
import sys, time
from indextts.errors import DistributedError
from indextts.runtime import init_distributed
context = init_distributed("cpu", timeout_s=float(sys.argv[1]))
if context.rank == 1:
    time.sleep(120)  # alive, but never reaches the barrier: a hung peer
try:
    context.barrier()
except RuntimeError as error:
    print(context.lost_peer(error, "at step 7"))
    sys.exit(2)
"""


def test_barrier_gives_up_on_a_hung_rank_with_a_message(tmp_path):
    """A rank that never arrives makes the other end after the process group's timeout, with a message
    naming the rank and the step (issue 25 item 7), instead of waiting gloo's default 30 minutes."""
    import socket
    import time

    from helpers import kill_process_group, run_process_group

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", LATE_RANK_SCRIPT, "3"]
    hung = subprocess.Popen(command, env={**env, "RANK": "1"}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = time.monotonic()
        waiting = run_process_group(command, timeout=100, env={**env, "RANK": "0"})
        elapsed = time.monotonic() - start
    finally:
        kill_process_group(hung.pid)
        hung.wait()
    assert waiting.returncode == 2, waiting.stdout + waiting.stderr
    assert "Rank 0 of 2 stopped waiting for the other processes at step 7" in waiting.stdout, waiting.stdout
    assert "train.dist_timeout_s" in waiting.stdout and "Traceback" not in waiting.stderr
    assert elapsed < 60


def test_only_collective_failures_become_messages():
    context = DistributedContext(rank=1, world_size=2, timeout_s=5)
    assert context.lost_peer(RuntimeError("Connection closed by peer [127.0.0.1]:1234"), "at step 3") is not None
    assert context.lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), "at step 3") is None
    assert DistributedContext().lost_peer(RuntimeError("Timed out"), "at step 3") is None  # no torchrun: no peers
