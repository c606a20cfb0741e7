"""Feature computation: parallel audio decoding, length-sorted batches, DVAE codes and conditions.

DataLoader workers read, resample and tokenise utterances and compute their log-mels on the CPU
(each unpadded, so a mel never depends on its batch); the main process pads a batch of mels for
the DVAE (whose padding is masked) and runs the conditioning encoder on each unpadded mel.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch.utils.data import Dataset

from indextts.audio import SILENCE_PEAK_DBFS, MelSpectrogramFeatures, is_silent, load_audio, peak_dbfs
from indextts.errors import AudioError
from indextts.extraction.audio_list import SkipReason, Utterance

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Limits:
    """What makes an utterance unusable before it reaches the models."""

    min_duration: float
    max_duration: float | None
    max_text_tokens: int


@dataclass
class DecodedUtterance:
    """A worker's result for one utterance: its log-mel (n_mels, F), or why it is skipped."""

    index: int
    mel: torch.Tensor | None = None
    duration: float = 0.0
    num_text_tokens: int = 0
    skip_reason: str | None = None
    skip_detail: str = ""


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
    """Decodes utterance ``i`` into a ``DecodedUtterance`` (runs inside DataLoader workers)."""

    def __init__(self, utterances: list[Utterance], mel: MelSpectrogramFeatures, sample_rate: int,
                 bpe_path: Path, limits: Limits):
        self.utterances = utterances
        self.mel = mel
        self.sample_rate = sample_rate
        self.bpe_path = bpe_path
        self.limits = limits
        self._tokenizer = None

    def __len__(self) -> int:
        return len(self.utterances)

    def __getstate__(self) -> dict:
        # Workers started with "spawn" build their own tokenizer; "fork" workers inherit a loaded one.
        return dict(self.__dict__, _tokenizer=None)

    def load_tokenizer(self) -> None:
        """Load the text tokenizer now (before workers fork, so each one need not load it again)."""
        if self._tokenizer is None:
            from indextts.text import TextTokenizer

            self._tokenizer = TextTokenizer(self.bpe_path)

    def _count_text_tokens(self, text: str) -> int:
        self.load_tokenizer()
        return len(self._tokenizer.encode(text))

    def __getitem__(self, index: int) -> DecodedUtterance:
        utterance = self.utterances[index]
        result = DecodedUtterance(index=index)

        def skipped(reason: str, detail: str) -> DecodedUtterance:
            result.skip_reason, result.skip_detail = reason, detail
            return result

        limits = self.limits
        result.num_text_tokens = self._count_text_tokens(utterance.text)
        if result.num_text_tokens == 0:
            return skipped(SkipReason.EMPTY_TRANSCRIPT, "the transcript has no speakable text after normalisation")
        if result.num_text_tokens > limits.max_text_tokens:
            return skipped(SkipReason.TOO_MANY_TEXT_TOKENS,
                           f"{result.num_text_tokens} text tokens > gpt.max_text_tokens {limits.max_text_tokens}")
        try:
            audio = load_audio(utterance.audio, self.sample_rate)
        except (AudioError, RuntimeError, ValueError, OSError, MemoryError) as error:
            return skipped(SkipReason.UNREADABLE_AUDIO, str(error))
        result.duration = audio.shape[0] / self.sample_rate
        if result.duration < limits.min_duration:
            return skipped(SkipReason.TOO_SHORT, f"{result.duration:.3f} s < --min_duration {limits.min_duration} s")
        if limits.max_duration is not None and result.duration > limits.max_duration:
            return skipped(SkipReason.TOO_LONG, f"{result.duration:.3f} s > --max_duration {limits.max_duration} s")
        if is_silent(audio):
            return skipped(SkipReason.SILENT_AUDIO,
                           f"peak level {peak_dbfs(audio):.1f} dBFS < {SILENCE_PEAK_DBFS} dBFS")
        result.mel = self.mel(audio)[0]
        return result


def collate_decoded(items: list[DecodedUtterance]) -> list[DecodedUtterance]:
    return items


def pad_mels(mels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad mels (n_mels, F_i) into (B, n_mels, F_max) with their lengths (B,)."""
    lengths = torch.tensor([m.shape[-1] for m in mels], dtype=torch.long)
    batch = mels[0].new_zeros(len(mels), mels[0].shape[0], int(lengths.max()))
    for row, mel in enumerate(mels):
        batch[row, :, :mel.shape[-1]] = mel
    return batch, lengths


class FeatureModels:
    """The DVAE and (optionally) the conditioning encoder on one device.

    Codes come from one padded batch: the DVAE masks padding, so each row equals its unpadded codes
    exactly. Conditions are computed one utterance at a time: in a padded batch they would equal
    the clip's own conditioning only up to float summation order (~1e-5), and a resumed run, which
    batches utterances differently, must write exactly the bytes of an uninterrupted one. Each
    condition thus equals the model's condition for that audio alone, as at inference time.

    ``precision`` bf16/fp16 (CUDA only) runs the DVAE under autocast; the first batch is also
    computed in fp32 and half precision is abandoned when any code differs from the fp32 codes.
    Conditions are always computed in fp32: they are continuous and feed training directly.
    """

    def __init__(self, dvae, gpt, device: torch.device, precision: str = "fp32"):
        self.dvae = dvae
        self.gpt = gpt
        self.device = device
        self.precision = precision
        self._half_checked = precision == "fp32"

    def code_lengths(self, mel_lengths: torch.Tensor) -> torch.Tensor:
        return self.dvae.code_lengths(mel_lengths)

    def _autocast(self, precision: str):
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[precision])

    def _codes(self, mel: torch.Tensor, lengths: torch.Tensor, precision: str) -> torch.Tensor:
        with torch.inference_mode(), self._autocast(precision):
            return self.dvae.get_codebook_indices(mel, lengths)

    def _condition(self, mel: torch.Tensor) -> np.ndarray:
        mel = mel.to(self.device).unsqueeze(0)
        lengths = torch.tensor([mel.shape[-1]], device=self.device)
        with torch.inference_mode():
            condition = self.gpt.get_conditioning(mel, lengths)[0]
        return np.ascontiguousarray(condition.float().cpu().numpy(), dtype=np.float32)

    def __call__(self, mels: list[torch.Tensor]) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Codes (int32 (N_i,)) and conditions (float32 (32, D)) for each mel (n_mels, F_i)."""
        batch, lengths = pad_mels(mels)
        batch, device_lengths = batch.to(self.device), lengths.to(self.device)
        code_lengths = self.code_lengths(lengths)
        codes = self._codes(batch, device_lengths, self.precision)
        if not self._half_checked:
            self._half_checked = True
            reference_codes = self._codes(batch, device_lengths, "fp32")
            valid = (torch.arange(codes.shape[1]) < code_lengths[:, None]).to(codes.device)
            if not torch.equal(codes[valid], reference_codes[valid]):
                logger.warning("%s codes differ from fp32 codes on the first batch; using fp32.", self.precision)
                self.precision = "fp32"
                codes = reference_codes
        code_lengths = code_lengths.tolist()
        codes = codes.cpu().numpy()
        code_rows = [codes[row, :n].astype(np.int32) for row, n in enumerate(code_lengths)]
        if self.gpt is None:
            return code_rows, None
        return code_rows, [self._condition(mel) for mel in mels]
