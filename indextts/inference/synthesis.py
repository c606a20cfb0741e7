"""Model-free steps of synthesis: options, sentence batching, silence trimming, joining and writing wavs.

These pieces sit between the text frontend, the GPT and BigVGAN in ``indextts.infer``. They hold
no model state, so tests check them directly and the synthesis loop stays short.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from indextts.atomic_files import write_bytes_atomic
from indextts.errors import InferenceError
from indextts.gpt.generation import GenerationConfig, option
from indextts.v2.emotion import EMOTIONS, check_emotion_vector

PCM16_MAX = 32767
MIN_DURATION_FACTOR, MAX_DURATION_FACTOR = 0.5, 2.0


def parse_emotion_vector(text: str | Sequence[float]) -> tuple[float, ...]:
    """"0,0.3,0,0,0,0,0,0.2" (or a sequence of numbers) -> a tuple of weights, checked by ``check_emotion_vector``."""
    values = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    try:
        return tuple(float(v) for v in check_emotion_vector([float(v) for v in values]).tolist())
    except ValueError as error:
        raise InferenceError(f"An emotion vector is {len(EMOTIONS)} numbers separated by commas ({error}).") from error


def _emotion_problems(options: SynthesisOptions) -> list[str]:
    """The IndexTTS-2 options' problems; an 8-value vector out of range raises at once (its own message)."""
    if options.emotion_vector is not None:
        check_emotion_vector(options.emotion_vector)
    problems = []
    if not (0.0 <= options.emotion_alpha <= 1.0):
        problems.append(f"emotion_alpha must lie in [0, 1] (got {options.emotion_alpha})")
    if not (MIN_DURATION_FACTOR <= options.duration_factor <= MAX_DURATION_FACTOR):
        problems.append(f"duration_factor must lie in [{MIN_DURATION_FACTOR}, {MAX_DURATION_FACTOR}] "
                        f"(got {options.duration_factor})")
    chosen = [name for name in ("emotion_vector", "emotion_audio", "emotion_text") if getattr(options, name)]
    if len(chosen) > 1:
        problems.append(f"choose one emotion source, not {' and '.join(chosen)}")
    return problems


@dataclass
class SynthesisOptions:
    """How one text is turned into speech.

    Attributes:
        generation: how codes are chosen (defaults: the reference implementation's settings);
            ``max_new_tokens`` is capped at the model's ``gpt.max_mel_tokens``; a ``seed`` gives
            each batch of sentences the seed ``seed + batch index`` (any ``generator`` is then unused).
        max_text_tokens_per_sentence: long text is split into sentences of at most this many tokens.
        sentence_batch_size: most sentences of similar length generated together.
        pause_seconds: silence inserted between sentences.
        silence_code, max_silence_codes, silence_trimming: runs of the DVAE silence code (52 in the
            release models) are shortened to ``max_silence_codes``: "reference" only in sentences
            holding more than 30 silence codes (the reference rule), "strict" always, "off" never.
        max_text_length: most characters of text accepted (None: no limit); longer is TextTooLongError.
        emotion_vector, emotion_audio, emotion_alpha, emotion_text, duration_factor: IndexTTS-2/2.5 only
            (docs/emotion.md); at most one emotion source. A 1.x voice refuses them.
    """

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    max_text_tokens_per_sentence: int = field(
        default=120, metadata=option("split long text into sentences of at most this many tokens"))
    sentence_batch_size: int = field(
        default=8, metadata=option("most sentences of similar length generated and vocoded together"))
    pause_seconds: float = field(default=0.1, metadata=option("seconds of silence inserted between sentences"))
    silence_code: int = field(default=52, metadata=option("the DVAE code of silence (52 for the release models)"))
    max_silence_codes: int = field(
        default=10, metadata=option("shorten runs of the silence code to this many codes (-1: keep all)"))
    silence_trimming: str = field(default="reference", metadata=option(
        "reference: only in sentences with more than 30 silence codes; strict: always; off"))
    max_text_length: int | None = None
    emotion_vector: tuple[float, ...] | None = field(default=None, metadata=option(
        "IndexTTS-2/2.5: eight emotion weights in [0, 1.2], comma-separated, in the order " + ",".join(EMOTIONS),
        parse_emotion_vector))
    emotion_audio: str | None = field(default=None, metadata=option(
        "IndexTTS-2/2.5: a clip whose emotion to speak with (the voice's own emotion when unset)", str))
    emotion_alpha: float = field(default=1.0, metadata=option(
        "IndexTTS-2/2.5: strength in [0, 1] of emotion_audio or emotion_vector (emo_alpha)"))
    emotion_text: str | None = field(default=None, metadata=option(
        "IndexTTS-2/2.5: a description of the emotion, read by the Qwen emotion model when the base folder "
        "has it", str))
    duration_factor: float = field(default=1.0, metadata=option(
        "IndexTTS-2.5: speaking duration relative to the model's choice (0.5 to 2; 1 = unchanged)"))

    def validate(self) -> None:
        """Raise InferenceError naming every invalid sentence or audio option, then check generation."""
        problems = _emotion_problems(self)
        if self.sentence_batch_size < 1:
            problems.append(f"sentence_batch_size must be >= 1 (got {self.sentence_batch_size})")
        if self.pause_seconds < 0:
            problems.append(f"pause must be >= 0 seconds (got {self.pause_seconds})")
        if self.silence_trimming not in SILENCE_TRIMMING:
            problems.append(f"silence_trimming must be one of {', '.join(SILENCE_TRIMMING)} (got {self.silence_trimming})")
        if problems:
            raise InferenceError("Invalid synthesis settings: " + "; ".join(problems) + ". Fix them and run again.")
        self.generation.validate()

    def batch_generation(self, batch_number: int) -> GenerationConfig:
        """The GenerationConfig for one batch of sentences: seeded with ``seed + batch_number`` when seeded."""
        if self.generation.seed is None:
            return self.generation
        return replace(self.generation, seed=self.generation.seed + batch_number, generator=None)


def refuse_v2_options(options: SynthesisOptions, base: str) -> None:
    """InferenceError when IndexTTS-2/2.5-only options are set for a voice on the 1.x ``base`` (its description)."""
    used = [name for name in ("emotion_vector", "emotion_audio", "emotion_text") if getattr(options, name)]
    used += [f"{name}={getattr(options, name)}" for name in ("emotion_alpha", "duration_factor")
             if getattr(options, name) != 1.0]
    if used:
        raise InferenceError(
            f"{', '.join(used)} only work with IndexTTS-2/2.5 voices, and this base is {base}, whose GPT has no "
            "emotion or duration input. Leave these options unset, or load an IndexTTS-2/2.5 base folder.")


@dataclass
class SentenceBatch:
    """Sentences synthesised together with one option set: one voice, token ids and index in its text per row.

    ``languages`` are the IndexTTS-2.5 language ids per row (None for other models); ``generation`` is the
    batch's GenerationConfig (seeded per batch).
    """

    voices: list
    id_lists: list[list[int]]
    sentence_indices: list[int]
    options: SynthesisOptions
    generation: GenerationConfig
    languages: list[int] | None = None


@dataclass
class SpeechRequest:
    """One text of :meth:`IndexTTS.synthesize_many`: what to say, in which voice, with which options."""

    text: str
    voice: str | None = None
    options: SynthesisOptions | None = None
    reference_audio: str | Path | None = None



def plan_batches(keys: Sequence[object], lengths: Sequence[int], max_batch_sizes: Sequence[int]) -> list[tuple[int, list[int]]]:
    """Batches of item indices: items with equal ``keys`` (run, options) together, similar ``lengths`` per batch.

    Groups keep the order in which their keys first appear; within a group :func:`length_batches`
    forms the batches (at most the group's first ``max_batch_sizes``). Each batch is returned with
    its number within its group, which seeds sampling (``seed + batch number``).
    """
    groups: list[tuple[object, list[int]]] = []
    for index, key in enumerate(keys):
        group = next((members for k, members in groups if k == key), None)
        if group is None:
            group = []
            groups.append((key, group))
        group.append(index)
    plan = []
    for _, members in groups:
        batches = length_batches([lengths[i] for i in members], max_batch_sizes[members[0]])
        plan += [(number, [members[i] for i in batch]) for number, batch in enumerate(batches)]
    return plan


def length_batches(lengths: Sequence[int], max_batch_size: int, max_ratio: float = 1.5) -> list[list[int]]:
    """Group item indices into batches of similar length for padded batched generation.

    Items are sorted by length; a batch is closed when it holds ``max_batch_size`` items or when the
    next item is more than ``max_ratio`` times longer than the batch's shortest one, so that padding
    (wasted decode work and a longer prompt for short sentences) stays small. Returns lists of the
    original indices, shortest batch first.
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        batch = batches[-1] if batches else None
        if (
            batch is None
            or len(batch) >= max_batch_size
            or lengths[index] > max_ratio * max(lengths[batch[0]], 1)
        ):
            batches.append([index])
        else:
            batch.append(index)
    return batches


def strip_stop_code(codes: torch.Tensor, stop_code: int) -> torch.Tensor:
    """Cut a generated code sequence (N,) at its first stop code (the stop code itself is dropped)."""
    stops = (codes == stop_code).nonzero()
    return codes[: int(stops[0])] if len(stops) else codes


SILENCE_TRIM_MIN_TOTAL = 30
"""The reference shortens silence only in a sentence holding more than this many silence codes."""
SILENCE_TRIMMING = ("reference", "strict", "off")


def trim_silence_runs(codes: torch.Tensor, silence_code: int, max_run: int, min_total: int = 0) -> torch.Tensor:
    """Shorten every run of ``silence_code`` in ``codes`` (N,) to at most ``max_run`` codes.

    The released GPTs sometimes emit long stretches of the DVAE's silence code (52 for the release
    models), which become seconds of dead air. Nothing changes unless ``codes`` holds more than
    ``min_total`` silence codes in all: the reference uses ``SILENCE_TRIM_MIN_TOTAL`` (30) with
    ``max_run`` 10, so ordinary pauses stay whole; ``min_total=0`` caps every run (strict). A
    negative ``max_run`` disables trimming.
    """
    if max_run < 0 or codes.numel() == 0 or int((codes == silence_code).sum()) <= min_total:
        return codes
    values, counts = torch.unique_consecutive(codes, return_counts=True)
    counts = torch.where(values == silence_code, counts.clamp(max=max_run), counts)
    return torch.repeat_interleave(values, counts)


def silence_min_total(mode: str) -> int:
    """``min_total`` of :func:`trim_silence_runs` for a trimming mode: reference 30, strict 0, off never."""
    if mode not in SILENCE_TRIMMING:
        raise InferenceError(f"Unknown silence trimming '{mode}'. Use one of: {', '.join(SILENCE_TRIMMING)}.")
    return {"reference": SILENCE_TRIM_MIN_TOTAL, "strict": 0, "off": NEVER_TRIM}[mode]


NEVER_TRIM = torch.iinfo(torch.int64).max
"""``min_total`` of the "off" mode: no sentence holds more silence codes than this."""


def settled_speech_codes(codes: torch.Tensor, silence_code: int, max_run: int, min_total: int = 0) -> torch.Tensor:
    """The codes a sentence still being generated is sure to speak first: codes (N,) drawn so far, no stop code.

    :func:`trim_silence_runs` of the finished sentence begins with the result. Until the sentence holds
    more than ``min_total`` silence codes it is unknown whether runs will be shortened, so the result
    stops ``max_run`` codes into the first run longer than that (those codes stay either way).
    """
    if max_run < 0 or min_total == NEVER_TRIM or int((codes == silence_code).sum()) > min_total:
        return trim_silence_runs(codes, silence_code, max_run, min_total)  # off, or sure to trim
    values, counts = torch.unique_consecutive(codes, return_counts=True)
    too_long = ((values == silence_code) & (counts > max_run)).nonzero()
    if len(too_long) == 0:
        return codes
    first = int(too_long[0])
    return codes[: int(counts[:first].sum()) + max_run]


class CrossfadeStitcher:
    """Joins audio of overlapping vocoder windows into one stream of samples ready to play.

    Each call to :meth:`add` passes the audio of the next window, which starts where the audio held back
    from the previous window starts; the two are crossfaded linearly over that stretch. All but the last
    ``overlap`` samples of each window are handed out at once; the last window is handed out whole.
    """

    def __init__(self, overlap: int):
        self.overlap = overlap
        self.held = np.zeros(0, dtype=np.float32)

    def add(self, audio: np.ndarray, last: bool) -> np.ndarray:
        """Samples ready to play: the crossfaded overlap, then ``audio`` up to what is held back for the next."""
        shared = len(self.held)
        if len(audio) < shared:
            raise ValueError(f"a window of {len(audio)} samples cannot cover the {shared} held back")
        fade_in = (np.arange(shared, dtype=np.float32) + 0.5) / max(shared, 1)
        head = self.held * (1 - fade_in) + audio[:shared] * fade_in
        keep = 0 if last else min(self.overlap, len(audio) - shared)
        self.held = audio[len(audio) - keep:].copy()
        return np.concatenate([head, audio[shared: len(audio) - keep]]).astype(np.float32)


def join_waveforms(waveforms: Sequence[np.ndarray], pause_samples: int) -> np.ndarray:
    """Concatenate mono float waveforms with ``pause_samples`` of silence between neighbours."""
    if not waveforms:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(max(pause_samples, 0), dtype=np.float32)
    pieces: list[np.ndarray] = []
    for i, waveform in enumerate(waveforms):
        if i:
            pieces.append(gap)
        pieces.append(np.asarray(waveform, dtype=np.float32))
    return np.concatenate(pieces)


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """Convert a float waveform to int16 PCM, clipping to [-1, 1] first so loud peaks never wrap."""
    clipped = np.clip(np.nan_to_num(np.asarray(waveform, dtype=np.float32)), -1.0, 1.0)
    return np.rint(clipped * PCM16_MAX).astype(np.int16)


def _unwritable(path: Path, reason: object) -> InferenceError:
    return InferenceError(
        f"Cannot write the output wav {path}: {reason}. Choose an output path in a folder you can "
        "write to."
    )


def check_writable(path: str | Path) -> None:
    """Fail early, before slow synthesis, when a wav cannot be written at ``path``.

    Creates the missing parent folders and a temporary file beside ``path`` (removed again).
    Raises InferenceError when ``path`` is a folder or its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise InferenceError(
            f"The output path {path} is a folder. Give a file name ending in .wav, e.g. {path / 'out.wav'}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent):
            pass
    except OSError as error:
        raise _unwritable(path, error.strerror or error) from error


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int) -> Path:
    """Write a mono float waveform as a 16-bit PCM WAV, creating folders and replacing atomically.

    The file is encoded in memory, written to a temporary name beside ``path`` and moved over it
    only when complete, so an existing wav is never left half-written; it gets the permissions of
    the user's umask like any new file. Raises InferenceError when ``path`` cannot be written (a
    folder, read-only location, full disk).
    """
    path = Path(path)
    check_writable(path)
    buffer = io.BytesIO()
    sf.write(buffer, to_pcm16(waveform), sample_rate, subtype="PCM_16", format="WAV")
    try:
        write_bytes_atomic(path, buffer.getvalue())
    except OSError as error:
        raise _unwritable(path, error.strerror or error) from error
    return path
