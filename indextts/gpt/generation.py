"""Autoregressive generation of mel codes for the UnifiedVoice GPT.

The decoder sees, per text, ``[conditioning (32 rows); start_text, text..., stop_text; start_mel]`` and then
one generated code per step. Generation reproduces what the reference implementation gets from Hugging Face
``generate`` (greedy, sampling with temperature / top-k / top-p, repetition penalty, beam search and beam
sampling), including two details of the reference that change the numbers:

- the token ids given to ``generate`` are a fake prompt: id 1 repeated for every prompt row, then
  ``start_mel``; the repetition penalty therefore treats mel code 1 and ``start_mel`` as already seen;
- the k-th generated code (k = 1, 2, ...) is embedded at mel position k + 1, because the reference derives the
  position from the attention-mask length, which already counts the ``start_mel`` step; position 1 is never used.

Rows of a batch have different text lengths: their prompts are left-padded and masked so that every row decodes
in lockstep and gets exactly the codes it would get alone. The key/value cache is allocated once for the whole
generation (prompt + ``max_new_tokens``), beams share one prompt pass and are expanded inside the cache. The
steps themselves run through ``indextts.gpt.step_runner`` (eager, compiled, or a replayed CUDA graph); the
loops below keep every decision on the device (sampling included, ``indextts.gpt.sampling``) and read the
finished flags only every few steps on CUDA. ``stream_codes`` also hands out the codes already settled
while generation goes on (streaming within a sentence).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from indextts.errors import InferenceError
from indextts.gpt.decode_step import GENERATED_POSITION_OFFSET
from indextts.gpt.sampling import draw_without_replacement, process_scores
from indextts.gpt.step_runner import make_step_runner

FAKE_PROMPT_TOKEN = 1
"""Id the reference puts at every prompt row of the token sequence it hands to ``generate``."""

FINISHED_SCORE = -1.0e9
"""Score Hugging Face beam search gives to empty or excluded hypotheses."""

StreamedCodes = tuple[list[torch.Tensor], bool]
"""What :func:`stream_codes` yields: one code tensor (N_i,) per row, and whether they are the final answer."""


def option(help_text: str, kind: type | None = None) -> dict:
    """Field metadata of a user-facing synthesis option: its help (and its type where the default is None).
    The commands and the web UI build their controls from it (``indextts.cli.options``)."""
    return {"help": help_text, "type": kind}


@dataclass
class GenerationConfig:
    """How mel codes are chosen; defaults are the reference IndexTTS inference settings.

    ``do_sample`` with ``num_beams > 1`` is beam sampling (as in the reference); ``num_beams == 1`` without
    sampling is greedy decoding. ``repetition_penalty`` divides positive and multiplies negative scores of every
    id already in the running sequence. ``length_penalty`` 0 ranks finished beams by summed log-probabilities.
    ``max_new_tokens`` caps the number of generated codes (stop code included). ``min_new_tokens`` forbids the
    stop code until that many codes exist; set it to ``max_new_tokens`` to force a fixed length (benchmarks).
    ``seed`` or ``generator`` make sampling reproducible (``generator`` wins when both are given).
    ``cuda_graph`` captures the decode step as a CUDA graph on CUDA (off: eager steps; no effect on CPU).
    ``compile_backend`` runs the fixed-shape step through ``torch.compile(fullgraph=True)`` with that
    backend (a name such as "inductor", or a backend callable); None leaves it uncompiled. Neither
    changes which codes come out.
    """

    do_sample: bool = field(default=True, metadata=option("sample codes (off: greedy or beam search, reproducible)"))
    temperature: float = field(default=1.0, metadata=option("sampling temperature"))
    top_k: int = field(default=30, metadata=option("sample from the k most likely codes (0: off)"))
    top_p: float = field(default=0.8, metadata=option("nucleus sampling probability mass"))
    num_beams: int = field(default=3, metadata=option("beam search width (1: none)"))
    repetition_penalty: float = field(default=10.0, metadata=option("penalty on codes already generated (1.0: none)"))
    length_penalty: float = field(default=0.0,
                                  metadata=option("beam score length exponent (0: summed log-probabilities)"))
    max_new_tokens: int = field(default=600, metadata=option("most codes generated per sentence (1 code = 1024 samples)"))
    min_new_tokens: int = 0
    seed: int | None = field(default=None, metadata=option("random seed for reproducible sampling", int))
    generator: torch.Generator | None = None
    cuda_graph: bool = True
    compile_backend: str | Callable | None = None

    def validate(self) -> None:
        """Raise ``InferenceError`` naming every invalid option."""
        problems = []
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0 (got {self.temperature})")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0, 0 meaning off (got {self.top_k})")
        if not 0.0 < self.top_p <= 1.0:
            problems.append(f"top_p must be in (0, 1] (got {self.top_p})")
        if self.num_beams < 1:
            problems.append(f"num_beams must be >= 1 (got {self.num_beams})")
        if self.repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be > 0, 1 meaning off (got {self.repetition_penalty})")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1 (got {self.max_new_tokens})")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            problems.append(
                f"min_new_tokens must be between 0 and max_new_tokens={self.max_new_tokens} "
                f"(got {self.min_new_tokens})"
            )
        if problems:
            raise InferenceError(
                "Invalid generation settings: " + "; ".join(problems) + ". Fix these options and run again."
            )

    def make_generator(self, device: torch.device) -> torch.Generator | None:
        """The random generator sampling draws from (None: torch's global one)."""
        if self.generator is not None:
            return self.generator
        if self.seed is None:
            return None
        generator = torch.Generator(device=device)
        generator.manual_seed(self.seed)
        return generator


class _Decoder:
    """Lays out a left-padded batch of prompts, then runs the prompt pass and one step per generated code."""

    def __init__(self, model, conditioning: torch.Tensor, text_embeddings: torch.Tensor, text_lengths: torch.Tensor,
                 config: GenerationConfig):
        """text_embeddings (B, L+2, D): the embedded, right-padded text segments (``model.text_inputs``)."""
        device, dtype = conditioning.device, conditioning.dtype
        full = torch.cat([conditioning, text_embeddings.to(dtype)], dim=1)  # (B, P, D), right-padded
        batch, prompt_length, dim = full.shape
        valid_lengths = conditioning.shape[1] + text_lengths.to(device) + 2  # (B,)
        shift = prompt_length - valid_lengths  # left padding of each row
        source = torch.arange(prompt_length, device=device)[None, :] - shift[:, None]  # (B, P)
        self.is_prompt = source >= 0
        self.prompt = full.gather(1, source.clamp(min=0)[..., None].expand(-1, -1, dim)) * self.is_prompt[..., None]
        self.repeats = config.num_beams
        self.runner = make_step_runner(model, batch * self.repeats, prompt_length + config.max_new_tokens, dtype,
                                       device, reorder=self.repeats > 1, cuda_graph=config.cuda_graph,
                                       compile_backend=config.compile_backend)
        self.finished_check_interval = self.runner.finished_check_interval

    def prefill(self) -> torch.Tensor:
        """Prompt + ``start_mel`` pass; logits (B, V) of the first code; the cache holds every row ``repeats`` times."""
        return self.runner.prefill(self.prompt, self.is_prompt, self.repeats)

    def step(self, codes: torch.Tensor, index: int, parents: torch.Tensor | None = None) -> torch.Tensor:
        """Feed the ``index``-th generated code (1-based) of every row, codes (R,); logits (R, V).

        ``parents`` (R,) first makes row i continue from row ``parents[i]`` (beam selection).
        """
        return self.runner.step(codes, index, parents)

    def should_check(self, step: int) -> bool:
        """Whether the host reads the finished flags after 0-based ``step`` (each read waits for the device)."""
        return (step + 1) % self.finished_check_interval == 0


def _initial_seen(rows: int, vocab: int, start_mel_token: int, device: torch.device) -> torch.Tensor:
    """(R, V) ids the reference's token sequence already holds: the fake prompt id and ``start_mel``."""
    seen = torch.zeros(rows, vocab, dtype=torch.bool, device=device)
    seen[:, FAKE_PROMPT_TOKEN] = True
    seen[:, start_mel_token] = True
    return seen


def _row_prefixes(codes: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """The first ``lengths[i]`` codes of each row of (B, N) codes (reads the lengths on the host)."""
    return [codes[row, :length].clone() for row, length in enumerate(lengths.tolist())]


def _greedy_or_sample(decoder: _Decoder, config: GenerationConfig, stop_token: int, start_token: int,
                      generator: torch.Generator | None, every: int | None) -> Iterator[StreamedCodes]:
    """Each row's codes so far after every ``every`` steps (a drawn code never changes), then all of them."""
    logits = decoder.prefill()  # (B, V)
    batch, vocab = logits.shape
    device = logits.device
    rows = torch.arange(batch, device=device)
    seen = _initial_seen(batch, vocab, start_token, device)
    codes = torch.full((batch, config.max_new_tokens), stop_token, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.full((batch,), config.max_new_tokens, dtype=torch.long, device=device)
    for step in range(config.max_new_tokens):
        scores = process_scores(logits, seen, step, config, stop_token, min_tokens_to_keep=1)
        if config.do_sample:
            next_codes = draw_without_replacement(scores.softmax(dim=-1), 1, generator)[:, 0]
        else:
            next_codes = scores.argmax(dim=-1)
        next_codes = next_codes.masked_fill(finished, stop_token)
        codes[:, step] = next_codes
        just_stopped = (next_codes == stop_token) & ~finished
        lengths = torch.where(just_stopped, step + 1, lengths)
        finished |= just_stopped
        seen[rows, next_codes] = True
        if step + 1 == config.max_new_tokens or (decoder.should_check(step) and bool(finished.all())):
            break
        if every and (step + 1) % every == 0:
            yield _row_prefixes(codes, lengths.clamp(max=step + 1)), False
        logits = decoder.step(next_codes, step + 1)
    yield _row_prefixes(codes, lengths), True


def _gather_beams(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Select along dim 1 of (B, N, ...) with (B, K) indices."""
    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


def _choose_candidates(accumulated: torch.Tensor, count: int, do_sample: bool,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top (B, count) continuations of (B, beams*V) scores: best ones, or sampled without replacement."""
    if not do_sample:
        return torch.topk(accumulated, count)
    probabilities = accumulated.softmax(dim=-1)
    # Filtered-out ids have probability 0; a negligible floor lets sampling without replacement always find
    # `count` candidates (the extra ones carry -inf scores and never survive).
    probabilities = probabilities.clamp(min=torch.finfo(probabilities.dtype).tiny)
    indices = draw_without_replacement(probabilities, count, generator)
    scores = accumulated.gather(1, indices)
    scores, order = scores.sort(dim=-1, descending=True)
    return scores, indices.gather(1, order)


class _Finished(NamedTuple):
    """The best finished hypotheses of each row: scores (B, beams), codes (B, beams, max_new), flags, lengths."""

    scores: torch.Tensor
    codes: torch.Tensor
    flags: torch.Tensor
    lengths: torch.Tensor


def _merge_finished(finished: _Finished, candidate_codes: torch.Tensor, top_scores: torch.Tensor,
                    just_finished: torch.Tensor, can_improve: torch.Tensor, step: int,
                    length_penalty: float) -> _Finished:
    """Add the (B, K) candidates that just finished (if their row can still improve); keep the best ``beams``."""
    beams = finished.scores.shape[1]
    finish_scores = top_scores / ((step + 1) ** length_penalty)
    finish_scores = finish_scores + (~can_improve).float() * FINISHED_SCORE
    finish_scores = finish_scores + (~just_finished).float() * FINISHED_SCORE
    merged_scores = torch.cat([finished.scores, finish_scores], dim=1)
    best = torch.topk(merged_scores, beams).indices
    step_lengths = torch.full_like(just_finished, step + 1, dtype=torch.long)
    return _Finished(_gather_beams(merged_scores, best),
                     _gather_beams(torch.cat([finished.codes, candidate_codes], dim=1), best),
                     _gather_beams(torch.cat([finished.flags, just_finished], dim=1), best),
                     _gather_beams(torch.cat([finished.lengths, step_lengths], dim=1), best))


def _settled_beam_codes(running_codes: torch.Tensor, generated: int, finished: _Finished,
                        can_improve: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (B, max_new) that every hypothesis still able to be returned begins with, and their lengths (B,).

    Whatever beam search returns descends from a running beam or is a finished hypothesis, so the prefix
    they all share is final. A row that can no longer improve returns its best finished hypothesis whole.
    Running beams that fell behind are kept in the comparison: it settles less, never wrongly.
    """
    batch, beams, max_new = running_codes.shape
    kept = finished.flags[..., None]  # empty finished slots agree with everything
    hypotheses = torch.cat([running_codes, torch.where(kept, finished.codes, running_codes[:, :1])], dim=1)
    lengths = torch.cat([torch.full_like(finished.lengths, generated),
                         torch.where(finished.flags, finished.lengths, max_new)], dim=1)  # (B, 2*beams)
    within = torch.arange(max_new, device=running_codes.device) < lengths.min(dim=1).values[:, None]
    agree = (hypotheses == hypotheses[:, :1]).all(dim=1) & within  # (B, max_new)
    shared = agree.long().cumprod(dim=1).sum(dim=1)
    done = ~can_improve[:, 0]
    codes = torch.where(done[:, None], finished.codes[:, 0], running_codes[:, 0])
    return codes, torch.where(done, finished.lengths[:, 0], shared)


def _beam_search(decoder: _Decoder, config: GenerationConfig, stop_token: int, start_token: int,
                 generator: torch.Generator | None, every: int | None) -> Iterator[StreamedCodes]:
    """Hugging Face beam search (and beam sampling): early stopping off, best finished hypothesis returned.

    Every ``every`` steps it yields the codes each row's answer is already sure to begin with, then the
    answers. One function for the whole step loop (about 55 lines): the running and finished beams update
    together, and splitting the loop would pass a dozen tensors back and forth.
    """
    beams, max_new = config.num_beams, config.max_new_tokens
    first_logits = decoder.prefill()  # (B, V)
    batch, vocab = first_logits.shape
    device = first_logits.device
    logits = first_logits.repeat_interleave(beams, dim=0)  # (B*beams, V)
    candidates = 2 * beams
    in_top_beams = torch.arange(candidates, device=device) < beams  # (K,)
    row_offsets = torch.arange(batch, device=device)[:, None] * beams  # (B, 1)
    running_codes = torch.full((batch, beams, max_new), stop_token, dtype=torch.long, device=device)
    running_scores = torch.zeros(batch, beams, device=device)
    running_scores[:, 1:] = FINISHED_SCORE
    seen = _initial_seen(batch * beams, vocab, start_token, device)
    finished = _Finished(torch.full((batch, beams), FINISHED_SCORE, device=device), running_codes.clone(),
                         torch.zeros(batch, beams, dtype=torch.bool, device=device),
                         torch.zeros(batch, beams, dtype=torch.long, device=device))
    can_improve = torch.ones(batch, 1, dtype=torch.bool, device=device)
    for step in range(max_new):
        log_probs = process_scores(F.log_softmax(logits, dim=-1), seen, step, config, stop_token, min_tokens_to_keep=2)
        accumulated = (log_probs.view(batch, beams, vocab) + running_scores[:, :, None]).view(batch, -1)
        top_scores, top_indices = _choose_candidates(accumulated, candidates, config.do_sample, generator)
        source_beams, top_codes = top_indices // vocab, top_indices % vocab  # (B, K)
        candidate_codes = _gather_beams(running_codes, source_beams)  # (B, K, max_new)
        candidate_codes[:, :, step] = top_codes
        hits_stop = (top_codes == stop_token) | (step + 1 >= max_new)  # (B, K)
        # Running beams: the best candidates that did not just finish.
        open_scores = top_scores + hits_stop.float() * FINISHED_SCORE
        keep = torch.topk(open_scores, beams).indices  # (B, beams)
        running_codes = _gather_beams(candidate_codes, keep)
        running_scores = _gather_beams(open_scores, keep)
        parents = (_gather_beams(source_beams, keep) + row_offsets).view(-1)  # (B*beams,)
        finished = _merge_finished(finished, candidate_codes, top_scores, hits_stop & in_top_beams[None, :],
                                   can_improve, step, config.length_penalty)
        generated = step + 1
        worst_finished = torch.where(finished.flags, finished.scores.min(dim=1, keepdim=True).values, FINISHED_SCORE)
        best_running = running_scores[:, :1] / (generated ** config.length_penalty)
        can_improve = can_improve & (best_running > worst_finished).any(dim=-1, keepdim=True)
        if generated == max_new or (decoder.should_check(step) and not bool(can_improve.any())):
            break
        if every and generated % every == 0:
            yield _row_prefixes(*_settled_beam_codes(running_codes, generated, finished, can_improve)), False
        next_codes = running_codes[:, :, step].reshape(-1)  # (B*beams,)
        seen = seen.index_select(0, parents)
        seen[torch.arange(batch * beams, device=device), next_codes] = True
        logits = decoder.step(next_codes, generated, parents)
    yield _row_prefixes(finished.codes[:, 0], finished.lengths[:, 0]), True


def generate_codes(model, conditioning: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                   config: GenerationConfig | None = None,
                   text_embeddings: torch.Tensor | None = None) -> list[torch.LongTensor]:
    """Generate mel codes for a batch of texts with a UnifiedVoice GPT.

    conditioning (B, C, D) prefix rows (C = 32 speaker latents for IndexTTS 1.x); text_ids (B, L) right-padded
    token ids without start/stop tokens; text_lengths (B,). ``text_embeddings`` (B, L+2, D) replaces
    ``model.text_inputs(text_ids, text_lengths)`` for models that add more to the text rows (the IndexTTS-2.5
    language embedding). Returns one int64 tensor per row with at most ``config.max_new_tokens`` codes, ending
    with ``model.stop_mel_token`` when the model produced it. With greedy decoding and beam search each row gets
    the codes it would get alone; sampled rows are reproducible for a given seed and batch, but all rows draw
    from one random stream, so they depend on the batch they are in. The model runs in eval mode (dropout
    off) whatever its mode, which is restored afterwards.
    """
    for codes, _ in stream_codes(model, conditioning, text_ids, text_lengths, config, text_embeddings=text_embeddings):
        pass
    return codes


@torch.no_grad()
def stream_codes(model, conditioning: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                 config: GenerationConfig | None = None, every: int | None = None,
                 text_embeddings: torch.Tensor | None = None) -> Iterator[StreamedCodes]:
    """What :func:`generate_codes` returns, preceded by each row's settled codes every ``every`` steps.

    Yields (codes, final): one tensor per row, and whether this is the answer. A settled code is one the final answer is sure to hold at that place: every drawn code in greedy and
    sampled decoding, the prefix all live hypotheses share in beam search. Each intermediate item holds a
    growing prefix of each row's final codes (no stop code); the last item is the answer itself, identical
    to :func:`generate_codes` (reading the codes in between changes no draw). Each intermediate item waits
    for the device. Arguments and errors as :func:`generate_codes`.
    """
    config = config or GenerationConfig()
    _check_inputs(model, conditioning, text_ids, text_lengths, config)
    device = conditioning.device
    with _evaluating(model):
        if text_embeddings is None:
            text_embeddings = model.text_inputs(text_ids.to(device), text_lengths.to(device))
        decoder = _Decoder(model, conditioning, text_embeddings, text_lengths.to(device), config)
        decode = _greedy_or_sample if config.num_beams == 1 else _beam_search
        yield from decode(decoder, config, model.stop_mel_token, model.start_mel_token,
                          config.make_generator(device), every)


@contextmanager
def _evaluating(model):
    """Every module of ``model`` in eval mode (dropout off: a captured graph would replay one mask), then back."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _check_inputs(model, conditioning: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                  config: GenerationConfig) -> None:
    """Raise InferenceError for invalid settings, mismatched shapes, or more codes than mel positions."""
    config.validate()
    if conditioning.dim() != 3 or text_ids.dim() != 2 or text_lengths.dim() != 1:
        raise InferenceError(
            "generate_codes expects conditioning (B, C, D), text_ids (B, L) and text_lengths (B,); got shapes "
            f"{tuple(conditioning.shape)}, {tuple(text_ids.shape)} and {tuple(text_lengths.shape)}."
        )
    if not conditioning.shape[0] == text_ids.shape[0] == text_lengths.shape[0]:
        raise InferenceError(
            f"generate_codes got {conditioning.shape[0]} conditionings, {text_ids.shape[0]} texts and "
            f"{text_lengths.shape[0]} text lengths; pass one of each per batch row."
        )
    position_slots = model.mel_pos_embedding.emb.num_embeddings
    needed_slots = config.max_new_tokens + GENERATED_POSITION_OFFSET
    if needed_slots > position_slots:
        raise InferenceError(
            f"max_new_tokens={config.max_new_tokens} needs {needed_slots} mel positions but the GPT has "
            f"{position_slots} (gpt.max_mel_tokens in the base config); lower max_new_tokens to at most "
            f"{position_slots - GENERATED_POSITION_OFFSET}."
        )
