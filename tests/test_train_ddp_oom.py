"""Out of memory under DDP (issue 28 item 3): a 2-process gloo job on CPU whose rank 1 fails in a backward.

Outside a synchronising backward the failing rank splits and retries alone, and both ranks end
with the unsplit step's gradients; inside it the run stops with a message naming the rank and the
step, and no process waits for ever.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from ddp_oom_worker import MICRO_BATCHES, LengthModel, micro_batch
from helpers import REPO_ROOT
from indextts.runtime import DistributedContext
from indextts.training.step import compute_loss

WORKER = REPO_ROOT / "tests" / "ddp_oom_worker.py"
TIMEOUT_S = 120


def _run_two_ranks(tmp_path, failure: str) -> list[tuple[int, str]]:
    """(exit status, output) of ranks 0 and 1, each in its own session; killed as groups on timeout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{REPO_ROOT / 'tests'}"}
    ranks = [subprocess.Popen([sys.executable, str(WORKER), str(rank), str(tmp_path / "store"), failure],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for rank in (0, 1)]
    try:
        return [(process.wait(timeout=TIMEOUT_S), process.stdout.read()) for process in ranks]
    finally:
        for process in ranks:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            process.stdout.close()


def _unsplit_gradients() -> list[list[float]]:
    """The step's gradients in one process without any failure (DDP's average of equal ranks is the same)."""
    model = LengthModel()
    for lengths in MICRO_BATCHES:
        loss, _ = compute_loss(model, micro_batch(lengths), DistributedContext().device, "fp32", 0.5)
        (loss * 0.5).backward()
    return [p.grad.flatten().tolist() for p in model.parameters()]


def _gradients(output: str) -> list[list[float]]:
    (line,) = [line for line in output.splitlines() if line.startswith("gradients ")]
    return json.loads(line.removeprefix("gradients "))


@pytest.mark.parametrize("failure, rows", [("accumulating", 4), ("synchronising-forward", 3)])
def test_out_of_memory_outside_the_synchronising_backward_is_split_on_that_rank_alone(tmp_path, failure, rows):
    (status0, output0), (status1, output1) = _run_two_ranks(tmp_path, failure)
    assert status0 == 0 and status1 == 0, output0 + output1
    assert f"Out of memory on a micro-batch of {rows} rows" in output1 and "Out of memory" not in output0
    want = _unsplit_gradients()
    for got in (_gradients(output0), _gradients(output1)):
        for a, b in zip(got, want):
            torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=1e-7)


def test_out_of_memory_inside_the_synchronising_backward_stops_every_rank_and_names_rank_and_step(tmp_path):
    (status0, output0), (status1, output1) = _run_two_ranks(tmp_path, "synchronising")
    assert status1 == 2 and "Traceback" not in output1, output1
    assert "Out of device memory on rank 1 of 2 at optimizer step 7" in output1
    assert "Lower data.max_tokens" in output1 and "resume with --resume" in output1
    assert status0 != 0 and "gradients" not in output0  # rank 0 stops too (gloo: the peer closed), no hang

