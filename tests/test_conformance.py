"""Numerical conformance with the reference implementation (../shared/conformance/README.md).

Runs over every golden folder holding ``expected.safetensors`` in ../shared/conformance and in
INDEXTTS_CONFORMANCE_DIRS. Each folder is loaded through the public loaders users call
(``indextts.checkpoint_folder``, ``indextts.audio``, ``indextts.gpt.generation``); every tensor of the
README's table is recomputed from the stored inputs of its stage and compared within the stated
tolerances (ids exactly). The number of examples is read from ``expected_index.json``.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import conformance_folders, conformance_missing

FLOAT_TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}
WAV_TOLERANCE = {"atol": 1e-3, "rtol": 1e-4}
MAX_NEW_CODES = 30
BEAMS = 3
BEAM_REPETITION_PENALTY = 10.0

FOLDERS = conformance_folders("expected.safetensors")


class Golden:
    """One golden folder: expected tensors, and its models loaded on first use."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.expected = load_file(folder / "expected.safetensors")
        index = json.loads((folder / "expected_index.json").read_text())
        self.count = len([name for name in index if re.fullmatch(r"audio_\d+", name)])

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.expected[name]

    def stacked(self, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad ``prefix_i`` along its last axis into (count, ..., T_max); also return lengths."""
        items = [self[f"{prefix}_{i}"] for i in range(self.count)]
        lengths = torch.tensor([item.shape[-1] for item in items])
        longest = int(lengths.max())
        padded = torch.stack([torch.nn.functional.pad(item, (0, longest - item.shape[-1])) for item in items])
        return padded, lengths

    @cached_property
    def base(self):
        from indextts.checkpoint_folder import CheckpointFolder

        return CheckpointFolder(self.folder)

    @cached_property
    def config(self):
        return self.base.cfg

    @cached_property
    def gpt(self):
        return self.base.load_gpt()

    @cached_property
    def dvae(self):
        return self.base.load_dvae()

    @cached_property
    def bigvgan(self):
        return self.base.load_bigvgan()

    @cached_property
    def mel_features(self):
        from indextts.audio import MelSpectrogramFeatures

        return MelSpectrogramFeatures.from_config(self.config.dataset.mel)


@pytest.fixture(scope="module", params=FOLDERS, ids=[folder.name for folder in FOLDERS])
def golden(request) -> Golden:
    return Golden(request.param)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, tolerance=FLOAT_TOLERANCE) -> None:
    torch.testing.assert_close(actual, expected, **tolerance, msg=lambda m: f"{name}: {m}")


def assert_ids(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    assert actual.tolist() == expected.tolist(), f"{name}: got {actual.tolist()}, expected {expected.tolist()}"


def test_goldens_found():
    if not FOLDERS:
        conformance_missing("no golden folder holds expected.safetensors")


@torch.no_grad()
def test_mel(golden):
    for i in range(golden.count):
        mel = golden.mel_features(golden[f"audio_{i}"])
        assert_close(mel[0], golden[f"mel_{i}"], f"mel_{i}")


@torch.no_grad()
def test_codes(golden):
    for i in range(golden.count):
        codes = golden.dvae.get_codebook_indices(golden[f"mel_{i}"].unsqueeze(0))
        assert_ids(codes[0], golden[f"codes_{i}"], f"codes_{i}")


@torch.no_grad()
def test_conditioning(golden):
    for i in range(golden.count):
        mel = golden[f"mel_{i}"].unsqueeze(0)
        conditioning = golden.gpt.get_conditioning(mel, torch.tensor([mel.shape[-1]]))
        assert_close(conditioning[0], golden[f"cond_{i}"], f"cond_{i}")


@torch.no_grad()
def test_conditioning_padded_batch(golden):
    """Each row of the zero-padded batch equals that clip's own conditioning ``cond_i``.

    This is the conformance README's definition of ``cond_batch``. The stored ``cond_batch`` comes
    from the reference, whose conv module leaks padding into short rows (see
    ``ConvolutionModule``), so the batch is held to ``cond_i`` rather than to that tensor.
    """
    mels, lengths = golden.stacked("mel")
    batched = golden.gpt.get_conditioning(mels, lengths)
    assert batched.shape == golden["cond_batch"].shape
    for i in range(golden.count):
        assert_close(batched[i], golden[f"cond_{i}"], f"cond_batch[{i}]")


@torch.no_grad()
def test_latents(golden):
    for i in range(golden.count):
        text, codes = golden[f"text_{i}"].unsqueeze(0), golden[f"codes_{i}"].unsqueeze(0)
        latents = golden.gpt.forward_latents(
            golden[f"cond_{i}"].unsqueeze(0), text, torch.tensor([text.shape[1]]), codes, torch.tensor([codes.shape[1]])
        )
        assert_close(latents[0], golden[f"latent_{i}"], f"latent_{i}")


@torch.no_grad()
def test_latents_padded_batch(golden):
    conditioning = torch.stack([golden[f"cond_{i}"] for i in range(golden.count)])
    texts, text_lengths = golden.stacked("text")
    codes, code_lengths = golden.stacked("codes")
    latents = golden.gpt.forward_latents(conditioning, texts, text_lengths, codes, code_lengths)
    for i in range(golden.count):
        assert_close(latents[i, : code_lengths[i]], golden[f"latent_{i}"], f"batched latent_{i}")


@torch.no_grad()
def test_waveform(golden):
    for i in range(golden.count):
        wav = golden.bigvgan(golden[f"latent_{i}"].unsqueeze(0), golden[f"mel_{i}"].T.unsqueeze(0))
        assert_close(wav[0, 0], golden[f"wav_{i}"], f"wav_{i}", WAV_TOLERANCE)


@torch.no_grad()
def test_training_forward(golden):
    texts, text_lengths = golden.stacked("text")
    codes, code_lengths = golden.stacked("codes")
    out = golden.gpt.forward_train(golden["cond_batch"], texts, text_lengths, codes, code_lengths)
    assert_close(out.text_loss.reshape(1), golden["train_loss_text"], "train_loss_text")
    assert_close(out.mel_loss.reshape(1), golden["train_loss_mel"], "train_loss_mel")
    assert out.text_logits.shape == golden["train_text_logits"].shape
    assert out.mel_logits.shape == golden["train_mel_logits"].shape
    for i in range(golden.count):
        defined_text, defined_mel = int(text_lengths[i]) + 1, int(code_lengths[i]) + 1
        assert_close(out.text_logits[i, :, :defined_text], golden["train_text_logits"][i, :, :defined_text],
                     f"train_text_logits[{i}]")
        assert_close(out.mel_logits[i, :, :defined_mel], golden["train_mel_logits"][i, :, :defined_mel],
                     f"train_mel_logits[{i}]")


def _generate(golden, prefix: str, config) -> None:
    """Generate for each example alone and for all of them in one padded batch."""
    from indextts.gpt.generation import generate_codes

    for i in range(golden.count):
        text = golden[f"text_{i}"].unsqueeze(0)
        conditioning = golden[f"cond_{i}"].unsqueeze(0)
        codes = generate_codes(golden.gpt, conditioning, text, torch.tensor([text.shape[1]]), config)
        assert_ids(codes[0], golden[f"{prefix}_{i}"], f"{prefix}_{i}")
    conditioning = torch.stack([golden[f"cond_{i}"] for i in range(golden.count)])
    texts, text_lengths = golden.stacked("text")
    batched = generate_codes(golden.gpt, conditioning, texts, text_lengths, config)
    for i in range(golden.count):
        assert_ids(batched[i], golden[f"{prefix}_{i}"], f"batched {prefix}_{i}")


def test_greedy_generation(golden):
    from indextts.gpt.generation import GenerationConfig

    config = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0, top_k=0, top_p=1.0,
                              max_new_tokens=MAX_NEW_CODES)
    _generate(golden, "greedy_codes", config)


def test_beam_generation(golden):
    from indextts.gpt.generation import GenerationConfig

    config = GenerationConfig(do_sample=False, num_beams=BEAMS, repetition_penalty=BEAM_REPETITION_PENALTY,
                              length_penalty=0.0, top_k=0, top_p=1.0, max_new_tokens=MAX_NEW_CODES)
    _generate(golden, "beam_codes", config)
