"""The training step: out-of-memory split and retry, the auto token budget, GPU-only checks (issue 12)."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_overrides, write_extracted_data
from indextts.errors import TrainingError
from indextts.training import DEFAULT_CONFIG, Trainer, load_train_config, run_training
from indextts.training.memory import token_budget_from_memory


@pytest.fixture(scope="module")
def data_info(tmp_path_factory):
    return write_extracted_data(tmp_path_factory.mktemp("extracted"), 64)


@pytest.fixture
def trainer(tmp_path, tiny_model_dir, data_info):
    cfg = load_train_config(DEFAULT_CONFIG, tiny_overrides(tiny_model_dir, data_info, tmp_path / "run",
                                                           "train.lora.dropout=0.0", "train.max_steps=1"))
    trainer = Trainer(cfg).setup()
    yield trainer
    trainer.close()


def _gradients(trainer) -> list[torch.Tensor]:
    grads = [p.grad.clone() for p in trainer.steps.params]
    trainer.optimizer.zero_grad(set_to_none=True)
    return grads


ALLOCATION_FAILURES = {  # how CUDA, cuBLAS, cuDNN and the CPU allocator report a failed allocation
    "torch": lambda: torch.OutOfMemoryError("simulated: CUDA out of memory. Tried to allocate 2.00 GiB"),
    "cublas": lambda: RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    "cudnn": lambda: RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    "allocator": lambda: RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory"),
}


def _raise_oom_above(rows: int, failure=ALLOCATION_FAILURES["torch"]):
    def hook(module, args):
        if len(args[0].text_lengths) > rows:
            raise failure()
    return hook


@pytest.mark.parametrize("failure", ALLOCATION_FAILURES)  # cuBLAS/cuDNN: issue 28 item 3
def test_out_of_memory_splits_the_batch_and_gives_the_unsplit_gradients(trainer, caplog, failure):
    batch = max(trainer.data.train_loader, key=lambda b: len(b.text_lengths))
    assert len(batch.text_lengths) >= 3
    trainer.model.eval()  # GPT-2's own dropout draws other masks for other batch shapes; without it the math allows
    whole = trainer.steps.backward(batch, 0.5, True)
    want = _gradients(trainer)
    handle = trainer.model.register_forward_pre_hook(_raise_oom_above(1, ALLOCATION_FAILURES[failure]))
    try:
        split = trainer.steps.backward(batch, 0.5, True)
    finally:
        handle.remove()
    got = _gradients(trainer)
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-6)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert f"Out of memory on a micro-batch of {len(batch.text_lengths)} rows" in caplog.text


def test_another_runtime_error_is_not_taken_for_out_of_memory(trainer):
    handle = trainer.model.register_forward_pre_hook(lambda module, args: (_ for _ in ()).throw(
        RuntimeError("CUDA error: an illegal memory access was encountered")))
    try:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            trainer.steps.backward(next(iter(trainer.data.train_loader)), 1.0, True)
    finally:
        handle.remove()


def _raise_oom_once_mid_backward(trainer):
    """A gradient hook on the first trainable tensor (reached late in backward) raises once, after others got grads."""
    seen = {"raised": False, "grads_before": 0}

    def hook(grad):
        if not seen["raised"]:
            seen["raised"] = True
            seen["grads_before"] = sum(p.grad is not None for p in trainer.steps.params)
            raise torch.OutOfMemoryError("simulated: CUDA out of memory during backward")
        return grad
    return trainer.steps.params[0].register_hook(hook), seen


def test_out_of_memory_mid_backward_rolls_back_what_the_batch_had_added(trainer, caplog):
    """Issue 28 item 3: the gradients a failed backward had accumulated were kept, so |got|/|want| was 1-2."""
    first, second = sorted(trainer.data.train_loader, key=lambda b: -len(b.text_lengths))[:2]
    assert len(second.text_lengths) >= 2
    trainer.model.eval()  # the same dropout masks for the split halves
    trainer.steps.backward(first, 0.5, False)
    trainer.steps.backward(second, 0.5, True)
    want = _gradients(trainer)
    trainer.steps.backward(first, 0.5, False)
    handle, seen = _raise_oom_once_mid_backward(trainer)
    try:
        trainer.steps.backward(second, 0.5, True)
    finally:
        handle.remove()
    got = _gradients(trainer)
    assert seen["raised"] and seen["grads_before"] > 0  # some gradients had been added when it failed
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert f"Out of memory on a micro-batch of {len(second.text_lengths)} rows" in caplog.text


def test_a_single_example_that_does_not_fit_is_named(trainer):
    batch = next(iter(trainer.data.train_loader))
    example = trainer.data.train_examples[int(batch.example_indices[0])]
    handle = trainer.model.register_forward_pre_hook(_raise_oom_above(0))
    try:
        with pytest.raises(TrainingError) as error:
            trainer.steps.backward(batch, 1.0, True)
    finally:
        handle.remove()
    message = str(error.value)
    assert f"'{example.uid}'" in message and "Lower data.max_tokens" in message
    assert f"needs {batch.rows(0, 1).padded_size(trainer.model.prefix_rows)} sequence positions" in message
    assert trainer.model.prefix_rows == 32  # IndexTTS 1.5's conditioning latents
    assert str(example.audio) in message and example.audio.name == f"{example.uid}.wav"


def test_auto_budget_shrinks_with_free_memory(monkeypatch):
    device = torch.device("cuda", 0)
    free = {"bytes": 8 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * 2**30))
    large = token_budget_from_memory(device, bytes_per_token=200_000, fraction=0.7, longest=500)
    free["bytes"] = 2 * 2**30
    small = token_budget_from_memory(device, bytes_per_token=200_000, fraction=0.7, longest=500)
    assert small < large and large == int(8 * 2**30 * 0.7 / 200_000)
    free["bytes"] = 2**20
    assert token_budget_from_memory(device, 200_000, 0.7, longest=500) == 500  # never below one example


def test_auto_budget_on_cpu_uses_the_cpu_figure(trainer):
    assert trainer.cfg.data.max_tokens == 400  # tiny_overrides pins it; the default is auto
    cfg = load_train_config(DEFAULT_CONFIG, ["train.device=cpu"])
    assert cfg.data.max_tokens == "auto" and cfg.data.cpu_max_tokens == 6000


def test_auto_budget_probe_names_an_op_without_a_deterministic_kernel(trainer, monkeypatch):
    """The probe is the first forward + backward on CUDA: its error must read like the training loop's."""
    message = ("nll_loss2d_forward_out_cuda_template does not have a deterministic implementation, but you set "
               "'torch.use_deterministic_algorithms(True)'.")

    def no_deterministic_kernel(*args, **kwargs):
        raise RuntimeError(message)

    monkeypatch.setattr("indextts.training.trainer.compute_loss", no_deterministic_kernel)
    batch = next(iter(trainer.data.train_loader))
    with pytest.raises(TrainingError, match="train.deterministic=true, but an operation has no deterministic kernel"):
        trainer._probe_step(batch)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
def test_bf16_training_on_gpu_with_auto_budget_and_exact_determinism(tmp_path, tiny_model_dir, data_info):
    runs = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        overrides = [o for o in tiny_overrides(tiny_model_dir, data_info, run_dir, "train.max_steps=4",
                                               "train.log_every_steps=1")
                     if not o.startswith(("train.device", "train.precision", "data.max_tokens"))]
        run_training(load_train_config(DEFAULT_CONFIG, [*overrides, "train.device=cuda", "train.precision=bf16",
                                                        "data.max_tokens=auto"]))
        runs.append((run_dir / "metrics.jsonl").read_text())
    import json

    losses = [[json.loads(line)["loss"] for line in text.splitlines() if '"train"' in line] for text in runs]
    assert len(losses[0]) == 4 and losses[0] == losses[1]  # train.deterministic=true: bit-identical on GPU
