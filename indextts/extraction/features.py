"""Feature computation: parallel audio decoding, length-sorted batches, codes and conditions.

DataLoader workers read, resample (once, from the file's rate to the rate the models need) and
tokenise utterances and compute each clip's model input on the CPU (generation 1: its log-mel;
generation 2: the 16 kHz waveform itself), unpadded, so an input never depends on its batch. The
main process pads a batch of inputs for the code model and the conditioning encoder, which both
mask padding so every row equals its clip alone. ``CheckedCodes`` holds the half-precision rule
both generations share; ``FeatureModels`` is generation 1's (DVAE) and
``indextts.extraction.semantic_features`` generation 2's. A transcript or audio file that cannot be
used becomes a skip reason here, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch.utils.data import Dataset

from indextts.audio import SILENCE_PEAK_DBFS, MelSpectrogramFeatures, is_silent, load_audio, peak_dbfs
from indextts.errors import AudioError, TextError
from indextts.contracts.audio_list import SkipReason, Utterance
from indextts.runtime import autocast

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class Limits:
    """What makes an utterance unusable before it reaches the models."""

    min_duration: float
    max_duration: float | None
    max_text_tokens: int


@dataclass
class TextCount:
    """What the GPT will see of a transcript: its token count, the new ``<name>`` tokens (counted as
    one each, as training will add them) and, for IndexTTS-2.5, its language code and id."""

    num_tokens: int
    special_tokens: list[str] = field(default_factory=list)
    language: str | None = None
    language_id: int | None = None


class BpeTextCounter:
    """Counts tokens with a SentencePiece ``TextTokenizer`` (IndexTTS 1.x and 2), made by ``load``."""

    def __init__(self, load: Callable[[], object]):
        self._load = load
        self._tokenizers: dict[tuple[str, ...], object] = {}

    def __getstate__(self) -> dict:
        # Workers started with "spawn" build their own tokenizer; "fork" workers inherit a loaded one.
        return dict(self.__dict__, _tokenizers={})

    def load(self):
        """The base tokenizer (loaded now, before workers fork, so each need not load it again)."""
        if () not in self._tokenizers:
            self._tokenizers[()] = self._load()
        return self._tokenizers[()]

    def count(self, text: str) -> TextCount:
        """Token count of ``text``; raises TextError when it cannot be tokenised."""
        base = self.load()
        special = [t for t in base.special_tokens_in(text) if t not in base.special_tokens]
        key = tuple(special)
        if key not in self._tokenizers:
            self._tokenizers[key] = base.with_special_tokens(key)
        return TextCount(len(self._tokenizers[key].encode(text)), special)


class MelInput:
    """Generation 1's model input: the log-mel (n_mels, F) of the clip at the model's rate."""

    def __init__(self, mel: MelSpectrogramFeatures):
        self.mel = mel

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        return self.mel(audio)[0]


@dataclass
class DecodedUtterance:
    """A worker's result for one utterance: its model input (log-mel (n_mels, F) or waveform (S,)),
    or why it is skipped; ``text`` is its ``TextCount``."""

    index: int
    model_input: torch.Tensor | None = None
    duration: float = 0.0
    text: TextCount = field(default_factory=lambda: TextCount(0))
    skip_reason: str | None = None
    skip_detail: str = ""

    @property
    def num_text_tokens(self) -> int:
        return self.text.num_tokens

    @property
    def special_tokens(self) -> list[str]:
        return self.text.special_tokens

    def skip(self, reason: str, detail: str) -> "DecodedUtterance":
        self.skip_reason, self.skip_detail, self.model_input = reason, detail, None
        return self


def estimated_duration(path: Path) -> float:
    """Duration in seconds from the file header (0 when unreadable; decoding reports the error)."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, ValueError, OSError):
        return 0.0
    return info.frames / info.samplerate if info.samplerate else 0.0


def plan_batches(utterances: list[Utterance], batch_size: int, first_index: int = 0) -> list[list[int]]:
    """Batches of indices (offset by ``first_index``), longest first so each batch holds similar lengths.

    The plan depends only on the utterances and the batch size, so a resumed run recomputes
    exactly the batches of an uninterrupted one.
    """
    durations = [estimated_duration(u.audio) for u in utterances]
    order = sorted(range(len(utterances)), key=lambda i: (-durations[i], i))
    return [[first_index + i for i in order[start:start + batch_size]]
            for start in range(0, len(order), batch_size)]


class UtteranceDataset(Dataset):
    """Decodes utterance ``i`` into a ``DecodedUtterance`` (runs inside DataLoader workers).

    ``model_input`` turns the mono waveform at ``sample_rate`` into the clip's model input;
    ``text_counter`` (``BpeTextCounter`` or the IndexTTS-2.5 counter) counts its transcript.
    """

    def __init__(self, utterances: list[Utterance], model_input: Callable[[torch.Tensor], torch.Tensor],
                 sample_rate: int, text_counter, limits: Limits):
        self.utterances = utterances
        self.model_input = model_input
        self.sample_rate = sample_rate
        self.text_counter = text_counter
        self.limits = limits

    def __len__(self) -> int:
        return len(self.utterances)

    def _read_text(self, text: str, result: DecodedUtterance) -> DecodedUtterance:
        """Count the transcript's tokens (new special tokens included), or mark it unusable."""
        try:
            result.text = self.text_counter.count(text)
        except TextError as error:
            return result.skip(SkipReason.UNSPEAKABLE_TRANSCRIPT, str(error))
        if result.num_text_tokens == 0:
            return result.skip(SkipReason.UNSPEAKABLE_TRANSCRIPT, "the transcript has no token after normalisation")
        if result.num_text_tokens > self.limits.max_text_tokens:
            return result.skip(SkipReason.TOO_MANY_TEXT_TOKENS, f"{result.num_text_tokens} text tokens > "
                               f"gpt.max_text_tokens {self.limits.max_text_tokens} (the model's limit)")
        return result

    def _read_audio(self, path: Path, result: DecodedUtterance) -> DecodedUtterance:
        limits = self.limits
        try:
            audio = load_audio(path, self.sample_rate)
        except (AudioError, RuntimeError, ValueError, OSError, MemoryError) as error:
            return result.skip(SkipReason.UNREADABLE_AUDIO, str(error))
        result.duration = audio.shape[0] / self.sample_rate
        if result.duration < limits.min_duration:
            return result.skip(SkipReason.TOO_SHORT, f"{result.duration:.3f} s < --min_duration {limits.min_duration} s")
        if limits.max_duration is not None and result.duration > limits.max_duration:
            return result.skip(SkipReason.TOO_LONG, f"{result.duration:.3f} s > --max_duration {limits.max_duration} s")
        if is_silent(audio):
            return result.skip(SkipReason.SILENT_AUDIO,
                               f"peak level {peak_dbfs(audio):.1f} dBFS < {SILENCE_PEAK_DBFS} dBFS")
        try:
            result.model_input = self.model_input(audio)
        except (RuntimeError, AudioError) as error:  # e.g. fewer samples than the STFT's reflect padding needs
            return result.skip(SkipReason.UNREADABLE_AUDIO, f"no model input could be computed: {error}")
        return result

    def __getitem__(self, index: int) -> DecodedUtterance:
        utterance = self.utterances[index]
        result = self._read_text(utterance.text, DecodedUtterance(index=index))
        return result if result.skip_reason is not None else self._read_audio(utterance.audio, result)


def collate_decoded(items: list[DecodedUtterance]) -> list[DecodedUtterance]:
    return items


def pad_mels(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad inputs along their last axis: mels (n_mels, F_i) into (B, n_mels, F_max), waveforms
    (S_i,) into (B, S_max); with their lengths (B,)."""
    lengths = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long)
    batch = mels[0].new_zeros(len(mels), *mels[0].shape[:-1], int(lengths.max()))
    for row, mel in enumerate(mels):
        batch[row, ..., :mel.shape[-1]] = mel
    return batch, lengths


@dataclass
class BatchFeatures:
    """One batch's results per utterance: codes int32 (N_i,), conditions float32 (S, D) (32 latents, or
    2.5's one CAMPPlus row) and, for generation 2, emotion vectors float32 (D,)."""

    codes: list[np.ndarray]
    conditions: list[np.ndarray] | None
    codes_precision: str
    emotions: list[np.ndarray] | None = None


def host_arrays(tensors) -> list[np.ndarray]:
    """float32 numpy copies of tensors (one host transfer each, after the batch is done)."""
    return [np.ascontiguousarray(t.float().cpu().numpy(), dtype=np.float32) for t in tensors]


class CheckedCodes:
    """The half-precision rule for a code model (each generation's feature models build on it).

    Codes come from one padded batch: the code model masks padding, so each row equals its unpadded
    codes exactly. ``precision`` bf16/fp16 (CUDA) runs the code model under autocast and checks every
    batch against fp32: a batch with any differing code keeps its fp32 codes instead (counted in
    ``fallback_batches``), so the codes written always equal fp32 codes. With ``check_batches=N``
    only the first N batches pay for the second (fp32) pass: when they all agree, later batches run
    once in ``precision`` unchecked (``unchecked_batches``); after a disagreement every later batch
    runs once in fp32. Faster, but the equality with fp32 is then sampled, not guaranteed.
    Subclasses give ``code_lengths`` (input lengths -> code counts) and ``_codes`` ((B, T) codes).
    """

    def __init__(self, device: torch.device, precision: str = "fp32", check_batches: int | None = None):
        self.device = device
        self.precision = precision
        self.check_batches = check_batches
        self.batches = 0
        self.fallback_batches = 0
        self.unchecked_batches = 0

    def code_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _codes(self, batch: torch.Tensor, lengths: torch.Tensor, precision: str) -> torch.Tensor:
        raise NotImplementedError

    def _checked_codes(self, batch: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, str]:
        """Codes (B, T_max) in ``precision`` when they equal fp32 codes on every valid position, else fp32."""
        self.batches += 1
        if self.check_batches is not None and self.batches > self.check_batches:
            trusted = self.fallback_batches == 0  # a sampled check that ever disagreed keeps fp32 from then on
            self.unchecked_batches += trusted and self.precision != "fp32"
            precision = self.precision if trusted else "fp32"
            return self._codes(batch, lengths, precision), precision
        codes = self._codes(batch, lengths, self.precision)
        if self.precision == "fp32":
            return codes, "fp32"
        reference = self._codes(batch, lengths, "fp32")
        valid = torch.arange(codes.shape[1], device=codes.device) < self.code_lengths(lengths)[:, None]
        if torch.equal(codes[valid], reference[valid]):
            return codes, self.precision
        self.fallback_batches += 1
        logger.debug("%s codes differ from fp32 codes in batch %d; keeping fp32 codes.", self.precision, self.batches)
        return reference, "fp32"

    def code_rows(self, inputs: list[torch.Tensor]) -> tuple[list[np.ndarray], str]:
        """Each input's codes int32 (N_i,) from one padded batch, and the precision they were kept in."""
        batch, lengths = pad_mels(inputs)
        codes, precision = self._checked_codes(batch.to(self.device), lengths.to(self.device))
        codes = codes.cpu().numpy()
        return [codes[row, :n].astype(np.int32) for row, n in enumerate(self.code_lengths(lengths).tolist())], precision


class FeatureModels(CheckedCodes):
    """Generation 1: the DVAE and (optionally) the conditioning encoder on one device.

    Codes follow ``CheckedCodes``. Conditions are always computed in fp32. ``batch_conditions`` runs
    the conditioning encoder on the padded batch (its conformer zeroes padding, so each row equals the
    clip alone up to float summation order, ~1e-6); otherwise one clip at a time, whose bytes do not
    depend on the batch size (the CPU default, so runs with different ``--batch_size`` write identical
    files).
    """

    def __init__(self, dvae, gpt, device: torch.device, precision: str = "fp32", batch_conditions: bool = False,
                 check_batches: int | None = None):
        super().__init__(device, precision, check_batches)
        self.dvae, self.gpt = dvae, gpt
        self.batch_conditions = batch_conditions

    def code_lengths(self, mel_lengths: torch.Tensor) -> torch.Tensor:
        return self.dvae.code_lengths(mel_lengths)

    def _codes(self, mel: torch.Tensor, lengths: torch.Tensor, precision: str) -> torch.Tensor:
        with torch.inference_mode(), autocast(self.device, precision):
            return self.dvae.get_codebook_indices(mel, lengths)

    def _conditions(self, mels: list[torch.Tensor]) -> list[np.ndarray]:
        with torch.inference_mode():
            if self.batch_conditions:
                batch, lengths = pad_mels(mels)
                conditions = self.gpt.get_conditioning(batch.to(self.device), lengths.to(self.device))
            else:
                conditions = [self.gpt.get_conditioning(m.to(self.device)[None], torch.tensor([m.shape[-1]],
                              device=self.device))[0] for m in mels]
            return host_arrays(conditions)

    def __call__(self, mels: list[torch.Tensor]) -> BatchFeatures:
        """Codes and (with a GPT) conditions for each mel (n_mels, F_i)."""
        rows, precision = self.code_rows(mels)
        return BatchFeatures(rows, None if self.gpt is None else self._conditions(mels), precision)
