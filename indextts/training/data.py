"""Training data: extracted manifests -> examples -> token-budget batches -> padded tensors.

Extraction (``tools/extract_codec.py``) leaves per-utterance DVAE codes and a JSONL manifest per
speaker. Training reads those manifests, re-tokenises each transcript with the run's tokenizer,
drops utterances outside the duration and model-length limits, and groups the rest into batches
whose *padded* size (what ``collate`` builds: rows x (prefix + longest text + longest codes + 4), the
prefix being the family's conditioning rows: 32 for IndexTTS 1.x, 34 for IndexTTS-2, 3 for 2.5)
stays under a token budget: examples are sorted by length (ties broken at random each epoch) and
cut into batches, so no short utterance is padded to a long outlier, and the order of the batches
is reshuffled every epoch from ``(seed, epoch)`` alone. That makes the
data order reproducible and lets a resumed run skip exactly the batches it had already seen.

IndexTTS-2/2.5 examples also carry an emotion vector file and (2.5) a language id; with
``train.condition_pairing=prompt`` each example is conditioned on the extracted condition of another
utterance of its speaker, drawn from (seed, epoch, example index) alone (``ConditionPairing``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from indextts.contracts.manifests import ManifestRow
from indextts.errors import DataError

CONDITION_LATENTS = 32
SPECIAL_TOKENS_PER_SEGMENT = 2  # start and stop token around the text and around the codes


def sequence_length(num_text_tokens: int, num_codes: int, prefix_rows: int = CONDITION_LATENTS) -> int:
    """Positions one example occupies in the GPT: [prefix rows | start, text, stop | start, codes, stop]."""
    return prefix_rows + num_text_tokens + num_codes + 2 * SPECIAL_TOKENS_PER_SEGMENT


@dataclass(frozen=True)
class Example:
    """A training example: token ids of the text, where its codes are, and whose voice it is."""

    text_ids: tuple[int, ...]
    codes: Path
    num_codes: int
    speaker_index: int
    uid: str
    audio: Path | None = None
    emotion: Path | None = None  # IndexTTS-2/2.5: the (D,) emotion vector the prefix adds
    language_id: int = 0  # IndexTTS-2.5: the language embedding's index (0 and unused otherwise)
    condition: Path | None = None  # the utterance's extracted condition (a partner's, with condition pairing)

    @property
    def length(self) -> int:
        return sequence_length(len(self.text_ids), self.num_codes)

    def describe(self) -> str:
        """Which clip this is, for error messages."""
        return f"utterance '{self.uid}' ({self.audio or self.codes})"


@dataclass(frozen=True)
class LengthLimits:
    """Which utterances are kept: duration range in seconds (``max_duration`` None = no upper bound)
    and the model's positional limits. Extraction and training use the same rules."""

    min_duration: float
    max_duration: float | None
    max_text_tokens: int
    max_mel_tokens: int

    def duration_ok(self, duration: float) -> bool:
        return self.min_duration <= duration and (self.max_duration is None or duration <= self.max_duration)


@dataclass
class FilterReport:
    """How many rows were kept and why the others were dropped."""

    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def __str__(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(self.dropped.items()))
        return f"kept {self.kept}" + (f", dropped {reasons}" if reasons else "")


RowEncoder = Callable[[ManifestRow], tuple[Sequence[int], int]]
"""A manifest row -> (text token ids, language id); see ``indextts.training.text_encoding``."""


def build_examples(rows: Sequence[ManifestRow], encode: RowEncoder, speaker_index: int, limits: LengthLimits,
                   speaker_emotion: Path | None = None) -> tuple[list[Example], FilterReport]:
    """Tokenise ``rows`` with ``encode`` and keep those inside ``limits``.

    ``speaker_emotion`` (``train.emotion=speaker``) replaces each row's emotion vector file.
    """
    examples, report = [], FilterReport()
    for row in rows:
        if not limits.duration_ok(row.duration):
            report.drop("outside the duration range")
            continue
        if row.num_codes < 1 or row.num_codes > limits.max_mel_tokens:
            report.drop("with too many (or no) codes for the model")
            continue
        ids, language = encode(row)
        text_ids = tuple(ids)
        if not text_ids:
            report.drop("with empty text")
            continue
        if len(text_ids) > limits.max_text_tokens:
            report.drop("with too many text tokens for the model")
            continue
        examples.append(Example(text_ids, row.codes, row.num_codes, speaker_index, row.uid, row.audio,
                                speaker_emotion or row.emotion, language, row.condition))
        report.kept += 1
    return examples, report


class Batch(NamedTuple):
    """A padded batch. Padding is zeros; the lengths say which positions are real."""

    text_ids: torch.Tensor  # (B, L) int64
    text_lengths: torch.Tensor  # (B,) int64
    codes: torch.Tensor  # (B, N) int64
    code_lengths: torch.Tensor  # (B,) int64
    speaker_ids: torch.Tensor  # (B,) int64
    example_indices: torch.Tensor  # (B,) int64, positions in the dataset (to name a clip in errors)
    emotions: torch.Tensor  # (B, D) float32 emotion vectors (IndexTTS-2/2.5); (B, 0) for IndexTTS 1.x
    languages: torch.Tensor  # (B,) int64 language ids (IndexTTS-2.5; zeros otherwise)
    conditions: torch.Tensor  # (B, C, D) float32 paired conditions (condition_pairing=prompt); else (B, 0, 0)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in self))

    def real_size(self, prefix_rows: int) -> int:
        """Real (unpadded) sequence positions with ``prefix_rows`` conditioning rows per example (the family's:
        ``TrainingModel.prefix_rows``), for throughput figures."""
        return int(self.text_lengths.sum() + self.code_lengths.sum()) + len(self.text_lengths) * (
            prefix_rows + 2 * SPECIAL_TOKENS_PER_SEGMENT)

    def padded_size(self, prefix_rows: int) -> int:
        """Sequence positions the padded batch occupies with ``prefix_rows`` conditioning rows per example."""
        return len(self.text_lengths) * sequence_length(self.text_ids.shape[1], self.codes.shape[1], prefix_rows)

    def rows(self, start: int, stop: int) -> "Batch":
        """Rows ``start:stop``, re-padded to their own longest text and codes."""
        text_lengths, code_lengths = self.text_lengths[start:stop], self.code_lengths[start:stop]
        text_len, code_len = int(text_lengths.max()), int(code_lengths.max())
        return Batch(self.text_ids[start:stop, :text_len], text_lengths, self.codes[start:stop, :code_len],
                     code_lengths, *(t[start:stop] for t in self[4:]))


class ConditionPairing:
    """``train.condition_pairing=prompt``: example i of an epoch is conditioned on the extracted condition
    of another training utterance of its speaker, drawn from (seed, epoch, i) alone, so a resumed run
    draws the same partners (as IndexTTS-2 itself was trained: prompt and target are different clips).
    A speaker with a single utterance is paired with itself."""

    def __init__(self, examples: Sequence[Example], seed: int):
        self.seed = seed
        by_speaker: dict[int, list[int]] = {}
        for index, example in enumerate(examples):
            by_speaker.setdefault(example.speaker_index, []).append(index)
        self.others = [[j for j in by_speaker[e.speaker_index] if j != i] or [i] for i, e in enumerate(examples)]

    def partner(self, index: int, epoch: int) -> int:
        """The example whose condition conditions example ``index`` in ``epoch``."""
        others = self.others[index]
        return others[int(np.random.default_rng([self.seed, epoch, index]).integers(len(others)))]


def _load_array(path: Path, example: Example, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"Cannot read the {what} of {example.describe()} from {path}: {error}. "
                        "Re-run indextts-extract for this speaker.") from error


def v2_defaults(rows: int, emotion_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A Batch's last three fields for ``rows`` examples that name none: zero emotion vectors (rows,
    emotion_dim) ((rows, 0) for IndexTTS 1.x), language 0, no paired condition (rows, 0, 0)."""
    return torch.zeros(rows, emotion_dim), torch.zeros(rows, dtype=torch.long), torch.zeros(rows, 0, 0)


class CodesDataset(Dataset):
    """Examples whose codes (and emotion vector, paired condition) are read from their .npy files on
    access (in DataLoader workers). ``set_epoch`` before iterating picks the epoch's condition partners."""

    def __init__(self, examples: Sequence[Example], pairing: ConditionPairing | None = None):
        self.examples = list(examples)
        self.pairing = pairing
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple:
        """(text ids (L,), codes (N,), speaker, index, emotion (D,) or (0,), language, condition (C, D) or (0, 0))."""
        example = self.examples[index]
        codes = _load_array(example.codes, example, "codes")
        if codes.shape != (example.num_codes,):
            raise DataError(f"{example.codes} holds shape {codes.shape} but the manifest says "
                            f"({example.num_codes},) codes. Re-run indextts-extract for this speaker.")
        emotion = (torch.zeros(0) if example.emotion is None
                   else torch.from_numpy(_load_array(example.emotion, example, "emotion vector").astype(np.float32)))
        condition = torch.zeros(0, 0)
        if self.pairing is not None:
            partner = self.examples[self.pairing.partner(index, self.epoch)]
            condition = torch.from_numpy(_load_array(partner.condition, partner, "condition").astype(np.float32))
        return (torch.tensor(example.text_ids, dtype=torch.long), torch.from_numpy(codes.astype(np.int64)),
                example.speaker_index, index, emotion, example.language_id, condition)


def collate(items: Sequence[tuple]) -> Batch:
    """Zero-pad texts and codes of ``items`` to the longest of each into a Batch."""
    texts, codes, speakers, indices, emotions, languages, conditions = zip(*items)
    return Batch(
        text_ids=torch.nn.utils.rnn.pad_sequence(texts, batch_first=True),
        text_lengths=torch.tensor([len(t) for t in texts], dtype=torch.long),
        codes=torch.nn.utils.rnn.pad_sequence(codes, batch_first=True),
        code_lengths=torch.tensor([len(c) for c in codes], dtype=torch.long),
        speaker_ids=torch.tensor(speakers, dtype=torch.long),
        example_indices=torch.tensor(indices, dtype=torch.long),
        emotions=torch.stack(emotions),
        languages=torch.tensor(languages, dtype=torch.long),
        conditions=torch.stack(conditions),
    )


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches whose padded size fits ``max_tokens``.

    ``lengths`` is (N,) whole lengths (padded size = batch size x longest) or (N, 2) text tokens and
    codes per example, as training passes it: then the padded size is batch size x
    ``sequence_length(longest text, longest codes, prefix_rows)``, exactly what ``collate`` builds, even when the
    longest text and the longest codes come from different examples.

    Per epoch: a seeded shuffle, a stable sort by length (so equal lengths come in random order),
    greedy cuts under the budget, then a seeded shuffle of the batches. With ``world_size`` > 1
    each rank takes every ``world_size``-th batch; with ``even`` all ranks get the same count (the
    few leftover batches are skipped that epoch), as DDP training needs. ``set_epoch`` picks the epoch; ``start_batch`` makes
    the next iteration skip batches already consumed (resume). An example longer than the budget
    still forms a batch on its own.
    """

    def __init__(self, lengths: Sequence[int] | np.ndarray, max_tokens: int, max_batch_size: int, seed: int,
                 shuffle: bool = True, rank: int = 0, world_size: int = 1, even: bool = True,
                 prefix_rows: int = CONDITION_LATENTS):
        super().__init__()
        self.prefix_rows = prefix_rows
        lengths = np.asarray(lengths, dtype=np.int64)
        if len(lengths) == 0:
            raise DataError("There are no examples to batch (every row was filtered out). Check the "
                            "duration limits in the training config and the extracted manifests.")
        self.segments = lengths.reshape(len(lengths), -1)  # (N, 1) whole lengths or (N, 2) text tokens, codes
        self.lengths = self._row_size(self.segments)
        self.max_tokens = max_tokens
        self.max_batch_size = max_batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.even = even
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch``, in order (a pure function of seed, epoch and lengths)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        order = order[np.argsort(self.lengths[order], kind="stable")]
        batches = self._cut(order)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if not self.even:
            return batches[self.rank::self.world_size]
        per_rank = len(batches) // self.world_size
        if per_rank == 0:
            raise DataError(f"Only {len(batches)} batch(es) of data for {self.world_size} processes. "
                            "Use fewer processes or a smaller data.max_tokens.")
        return batches[self.rank:per_rank * self.world_size:self.world_size]

    def _row_size(self, segments: np.ndarray) -> np.ndarray:
        """(N, 1) or (N, 2) segment lengths -> (N,) padded positions of one row."""
        if segments.shape[1] == 1:
            return segments[:, 0]
        return sequence_length(segments[:, 0], segments[:, 1], self.prefix_rows)

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        """Greedy batches over ``order``: a batch closes when one more row would break the budget."""
        batches: list[list[int]] = []
        current: list[int] = []
        longest = np.zeros(self.segments.shape[1], dtype=np.int64)
        for index in order.tolist():
            grown = np.maximum(longest, self.segments[index])
            padded = (len(current) + 1) * int(self._row_size(grown[None])[0])
            if current and (padded > self.max_tokens or len(current) >= self.max_batch_size):
                batches.append(current)
                current, grown = [], self.segments[index].copy()
            current.append(index)
            longest = grown
        batches.append(current)
        return batches

    def __len__(self) -> int:
        return len(self.epoch_batches(self.epoch)) - self.start_batch

    def __iter__(self):
        yield from self.epoch_batches(self.epoch)[self.start_batch:]
