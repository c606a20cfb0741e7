"""From checked speakers to batches: examples under the length limits, the token budget, the loaders."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from indextts.training.data import (
    CONDITION_LATENTS, Batch, CodesDataset, ConditionPairing, Example, LengthLimits, RowEncoder,
    TokenBudgetBatchSampler, build_examples, collate,
)
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.errors import TrainingError
from indextts.run_folder import TOKENIZER_FILE
from indextts.runtime import DistributedContext
from indextts.training.config import AUTO, DataConfig
from indextts.training.inputs import SpeakerData
from indextts.training.memory import auto_token_budget

logger = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """The examples and their loaders for one process."""

    train_examples: list[Example]
    train_sampler: TokenBudgetBatchSampler
    train_loader: DataLoader
    valid_loader: DataLoader | None
    max_tokens: int


def prepare_tokenizer(base: CheckpointFolder, tokenizer, special_tokens: list[str], run_dir: Path,
                      context: DistributedContext):
    """(tokenizer, its bpe.model in the run or None, ids of the added tokens): the base ``tokenizer``, grown
    by ``special_tokens`` into ``run_dir/tokenizer/bpe.model`` (written by rank 0) when there are any."""
    from indextts.text import TextTokenizer, add_special_tokens

    if not special_tokens:
        return tokenizer, None, []
    path = run_dir / TOKENIZER_FILE
    if context.is_main:
        add_special_tokens(base.paths.bpe, path, special_tokens)
    context.barrier()
    grown = TextTokenizer(path, tokenizer.normalizer)  # the family's normaliser (IndexTTS-2's differs from 1.x's)
    new_ids = sorted({i for i in grown.convert_tokens_to_ids(special_tokens) if i >= tokenizer.vocab_size})
    return grown, path, new_ids


def build_all_examples(speakers: list[SpeakerData], encode: RowEncoder, limits: LengthLimits,
                       speaker_emotion: bool = False) -> tuple[list[Example], list[Example]]:
    """Every speaker's train and valid examples; a speaker with no training example left is an error.

    ``speaker_emotion`` (``train.emotion=speaker``): every example carries its speaker's medoid emotion vector.
    """
    train, valid, problems = [], [], []
    for speaker in speakers:
        emotion = speaker.emotion_file if speaker_emotion else None
        kept, report = build_examples(speaker.train_rows, encode, speaker.index, limits, emotion)
        valid_kept, valid_report = build_examples(speaker.valid_rows, encode, speaker.index, limits, emotion)
        logger.info("Speaker '%s': train %s; valid %s", speaker.name, report, valid_report)
        if not kept:
            problems.append(f"speaker '{speaker.name}' has no training rows left after filtering ({report}); "
                            "widen data.min_duration/data.max_duration or check its transcripts")
        train += kept
        valid += valid_kept
    if problems:
        raise TrainingError("Training cannot start: " + " | ".join(problems))
    return train, valid


def resolve_token_budget(data: DataConfig, examples: list[Example], context: DistributedContext,
                         probe_step: Callable[[Batch], None], saved: int | None, emotion_dim: int = 0,
                         prefix_rows: int = CONDITION_LATENTS) -> int:
    """data.max_tokens, resolved once (``auto``) and kept by checkpoints (``saved``) so a resume batches alike."""
    if saved is not None:
        return saved
    if data.max_tokens != AUTO:
        return int(data.max_tokens)
    longest_text = max(len(e.text_ids) for e in examples)
    longest_codes = max(e.num_codes for e in examples)
    budget = auto_token_budget(context.device, probe_step, longest_text, longest_codes, data.auto_memory_fraction,
                               data.cpu_max_tokens, emotion_dim, prefix_rows)
    if context.enabled:  # every rank must cut the same batches
        shared = torch.tensor([budget], device=context.device)
        dist.all_reduce(shared, op=dist.ReduceOp.MIN)
        budget = int(shared.item())
    return budget


def _loader(dataset: CodesDataset, sampler: TokenBudgetBatchSampler, workers: int, device: torch.device,
            seed: int) -> DataLoader:
    # A dedicated generator keeps DataLoader start-up from drawing on the global RNG (dropout masks).
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=False,
                      generator=torch.Generator().manual_seed(seed))


def build_loaders(data: DataConfig, train: list[Example], valid: list[Example], max_tokens: int, seed: int,
                  context: DistributedContext, prefix_rows: int, pair_conditions: bool = False) -> TrainingData:
    """Token-budget loaders: training batches reshuffled per epoch and split evenly over ranks.

    ``prefix_rows`` is the family's conditioning prefix (for the budget); ``pair_conditions``
    (``train.condition_pairing=prompt``) pairs each training example with another utterance's condition.
    Validation always uses the learned speaker conditions (what speaking by name uses).
    """
    def sampler(examples: list[Example], shuffle: bool) -> TokenBudgetBatchSampler:
        return TokenBudgetBatchSampler([(len(e.text_ids), e.num_codes) for e in examples], max_tokens,
                                       data.max_batch_size, seed, shuffle=shuffle, rank=context.rank,
                                       world_size=context.world_size, even=shuffle, prefix_rows=prefix_rows)

    train_sampler = sampler(train, True)
    dataset = CodesDataset(train, ConditionPairing(train, seed) if pair_conditions else None)
    train_loader = _loader(dataset, train_sampler, data.num_workers, context.device, seed)
    valid_loader = (_loader(CodesDataset(valid), sampler(valid, False), data.num_workers, context.device, seed)
                    if valid else None)
    if valid_loader is None:
        logger.warning("No validation rows: the final model is the last one and early stopping is off.")
    return TrainingData(train, train_sampler, train_loader, valid_loader, max_tokens)
