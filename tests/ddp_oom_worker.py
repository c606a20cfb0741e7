"""One rank of a 2-process gloo job on CPU whose rank 1 runs out of memory inside the backward that
synchronises gradients (issue 28 item 3). ``python ddp_oom_worker.py RANK STORE_FILE``: the real
``TrainStepRunner`` under DDP, on a stand-in model; the exit status and stderr are what the CLI gives.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from indextts.cli import run_command
from indextts.training.data import Batch, v2_defaults
from indextts.runtime import DistributedContext
from indextts.training.step import TrainStepRunner

FAILING_RANK = 1


class LengthModel(nn.Module):
    """Stand-in for TrainingModel: two losses from the rows' lengths through two linear layers.

    Like the real losses (means over target tokens), each row counts by its number of targets, so
    the split halves, weighted by their share of the targets, add up to the whole batch.
    """

    prefix_rows = 32  # what the runner's out-of-memory messages count per example, as for IndexTTS 1.x

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(2, 8), nn.Linear(8, 1)

    def forward(self, batch: Batch) -> SimpleNamespace:
        features = torch.stack([batch.text_lengths, batch.code_lengths], dim=1).float()  # (B, 2)
        out = self.second(torch.tanh(self.first(features)))[:, 0]  # (B,)
        text_targets, mel_targets = batch.text_lengths + 1, batch.code_lengths + 1
        return SimpleNamespace(text_loss=(out * text_targets).sum() / text_targets.sum(),
                               mel_loss=(out.square() * mel_targets).sum() / mel_targets.sum())


def fail_once_with_out_of_memory(model: LengthModel, where: str) -> None:
    """The next forward (``where="forward"``) or backward raises out of memory once; later ones pass.

    In backward it raises on reaching ``first.weight``'s gradient, after ``second`` has its gradients.
    """
    failed = []

    def fail(*_):
        if not failed:
            failed.append(True)
            raise torch.OutOfMemoryError(f"simulated: CUDA out of memory during {where}")

    if where == "forward":
        model.register_forward_pre_hook(fail)
    else:
        model.first.weight.register_hook(lambda grad: fail() or grad)


def micro_batch(lengths: list[int]) -> Batch:
    rows, longest = len(lengths), max(lengths)
    ones = torch.ones(rows, longest, dtype=torch.long)
    lengths = torch.tensor(lengths)
    return Batch(ones, lengths, ones, lengths, torch.zeros(rows, dtype=torch.long), torch.arange(rows), *v2_defaults(rows))


MICRO_BATCHES = ([3, 5, 7, 9], [2, 4, 6])


def train_one_step(rank: int, failure: str) -> None:
    """One optimizer step's two micro-batches (grad_accum=2); rank 1 fails as ``failure`` says:
    ``accumulating`` (backward of the first), ``synchronising`` (backward of the last) or
    ``synchronising-forward`` (forward of the last)."""
    model = LengthModel()
    ddp_model = DistributedDataParallel(model)
    runner = TrainStepRunner(model, ddp_model, ddp_model, DistributedContext(rank, 2, torch.device("cpu")), "fp32",
                             0.5, 1.0, torch.optim.SGD(model.parameters(), lr=0.1), None,
                             torch.amp.GradScaler("cpu", enabled=False), None, [], step=6)
    first, last = (micro_batch(lengths) for lengths in MICRO_BATCHES)
    for batch, sync, name in ((first, False, "accumulating"), (last, True, "synchronising")):
        if rank == FAILING_RANK and failure.startswith(name):
            fail_once_with_out_of_memory(model, failure.removeprefix(name).lstrip("-") or "backward")
        runner.backward(batch, 0.5, sync)
    print("gradients", json.dumps([p.grad.flatten().tolist() for p in model.parameters()]), flush=True)


def main(rank: int, store: str, failure: str) -> int:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        return run_command(lambda: train_one_step(rank, failure))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
