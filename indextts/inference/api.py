"""Speech synthesis with IndexTTS: zero-shot from a reference wav, or fine-tuned voices by name.

Python::

    from indextts.inference import IndexTTS
    tts = IndexTTS.from_pretrained("checkpoints", adapters={"kaishu": "runs/kaishu", "narrator": "runs/n"})
    result = tts.synthesize("你好，world.", voice="kaishu:kaishu_30min")
    for chunk in tts.stream("A long text. Many sentences.", voice="narrator"):
        ...  # chunk.waveform of each sentence as soon as it is ready

Command line: ``indextts-infer``, ``python -m indextts.infer`` or ``python indextts/infer.py``
(see :mod:`indextts.cli.infer` and docs/inference.md). ``indextts.infer`` is the upstream entry path,
a thin wrapper that re-exports this module's API.

The pipeline: split the text into sentences of at most ``max_text_tokens_per_sentence`` tokens,
batch sentences of similar length (one run, one option set), put the run's adapter on the shared
GPT and let the base's models speak each batch (1.x: :class:`SpeechModels`; IndexTTS-2/2.5:
:class:`SpeechModelsV2`, chosen once by the base's generation); join the sentences with a pause.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from indextts.audio import resample
from indextts.inference.adapters import load_speakers, load_trained_run
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.checkpoint_folder.layout import DEFAULT_MODEL_DIR
from indextts.errors import IndexTTSError, InferenceError, TextTooLongError
from indextts.lora import TrainedSpeaker
from indextts.run_folder import SPEAKERS_FILE, RunFolder
from indextts.families import Family, family_of
from indextts.inference.speech import SpeechModels
from indextts.inference.speech_v2 import load_v2_speech
from indextts.inference.streaming import stream_sentence
from indextts.inference.synthesis import (
    SentenceBatch,
    SpeechRequest,
    SynthesisOptions,
    check_writable,
    join_waveforms,
    plan_batches,
    write_wav,
)
from indextts.text import TextTokenizer
from indextts.timing import StageTimings, Stopwatch
from indextts.v2.sentences25 import SentenceSplitter25
from indextts.inference.voices import PatchedWeights, Voice, VoiceInfo, VoiceLibrary, VoiceSource

__all__ = ["AudioChunk", "IndexTTS", "SpeechRequest", "SynthesisOptions", "SynthesisResult", "Voice", "VoiceInfo"]


@dataclass
class SynthesisResult:
    """The audio of one text with what produced it.

    ``waveform`` is (S,) float32 in [-1, 1] at ``sample_rate``; ``codes[i]`` holds the DVAE codes
    (N_i,) spoken for ``sentences[i]`` after stop-code and silence trimming, so
    S = sum(N_i) * samples_per_code + (len(sentences) - 1) * pause samples.
    """

    waveform: np.ndarray
    sample_rate: int
    sentences: list[str]
    codes: list[torch.Tensor]
    timings: StageTimings = field(default_factory=StageTimings)


@dataclass
class AudioChunk:
    """A sentence's audio from :meth:`IndexTTS.stream`: ``waveform`` (S,) float32 at ``sample_rate``.

    Every sentence after the first starts with the pause between sentences, so the chunks of a text
    joined end to end are the waveform :meth:`IndexTTS.synthesize` returns for it. A sentence
    streamed in pieces gives several chunks, ``final`` on its last; ``codes`` are those first voiced
    by the chunk.
    """

    waveform: np.ndarray
    sample_rate: int
    sentence_index: int
    text: str
    codes: torch.Tensor
    final: bool = True


@dataclass
class _Job:
    """A request made ready: its voice, options, tokenised sentences, and what synthesis produced."""

    voice: Voice
    options: SynthesisOptions
    sentences: list[tuple[str, list[int]]]
    timings: StageTimings
    codes: list[torch.Tensor] = field(default_factory=list)
    waveforms: list[np.ndarray] = field(default_factory=list)
    languages: list[int] | None = None  # IndexTTS-2.5: each sentence's language id


class IndexTTS:
    """An IndexTTS synthesiser: one base model in memory and any number of fine-tuned voices on it.

    Build it with :meth:`from_pretrained` or :meth:`from_run` (any family); the constructor takes 1.x models that
    are already in memory (``cfg`` = the checkpoint config, ``gpt`` a UnifiedVoice, ``bigvgan``
    the vocoder, ``tokenizer`` the base TextTokenizer; ``base`` the folder they came from, used
    to check that runs fit it). ``device``: auto | cpu | cuda | cuda:N; ``precision`` of the GPT:
    fp32 | bf16 | fp16 | auto (fp16 on CUDA, fp32 on the CPU); ``vocoder_precision``: fp32 (default)
    or fp16/bf16 with BigVGAN's output layer kept in fp32; ``cpu_quantization``: None, or (opt-in, CPU
    and fp32 only) "int8" / "bf16" weights for code generation (``indextts.gpt.quantize``);
    ``vocoder_mode``: auto (fused on the CPU, exact on CUDA) | exact (BigVGAN as the reference, bit for
    bit) | fused (compiled polyphase activations, ~140 dB SNR; see ``indextts.inference.speech``).
    """

    def __init__(self, cfg, gpt, bigvgan, tokenizer: TextTokenizer, *, base: CheckpointFolder | None = None,
                 device: str | torch.device = "auto", precision: str = "auto", vocoder_precision: str = "fp32",
                 allow_base_mismatch: bool = False, cpu_quantization: str | None = None, vocoder_mode: str = "auto"):
        self._attach(cfg, SpeechModels(cfg, gpt, bigvgan, device, precision, vocoder_precision, cpu_quantization,
                                       vocoder_mode), tokenizer, base, allow_base_mismatch)

    def _attach(self, cfg, models, tokenizer, base: CheckpointFolder | None, allow_base_mismatch: bool) -> None:
        """Hold the models on their device (SpeechModels or SpeechModelsV2) and an empty voice library."""
        self.cfg, self.base, self.models = cfg, base, models
        self.device, self.sample_rate = self.models.device, self.models.sample_rate
        self.samples_per_code = getattr(self.models, "samples_per_code", None)  # None: IndexTTS-2 (no fixed rate)
        self.tokenizer, self.allow_base_mismatch = tokenizer, allow_base_mismatch
        self.library = VoiceLibrary()
        self.weights = PatchedWeights(self.models.gpt)
        self._base_text_rows = int(self.models.gpt.text_vocab_size)
        self._voice_cache: dict[tuple, Voice] = {}

    @classmethod
    def from_pretrained(cls, model_dir: str | Path = DEFAULT_MODEL_DIR, adapter: str | Path | None = None,
                        adapters: dict[str, str | Path] | None = None, **kwargs) -> IndexTTS:
        """Load the base checkpoint folder once and add each run as voices.

        ``adapter`` (one run folder, named after its folder) and ``adapters`` ({name: run folder})
        may be combined. A folder written by ``indextts-export`` speaks its voices by name too.
        ``kwargs``: device, precision, vocoder_precision, allow_base_mismatch, cpu_quantization, vocoder_mode
        (see the class).
        """
        base = CheckpointFolder(model_dir)
        if base.family.generation == 2:
            tts = cls.__new__(cls)
            tts._attach(base.cfg, *load_v2_speech(base, **kwargs))
        else:
            tts = cls(base.cfg, *base.load_speech_models(), base=base, **kwargs)
        if (base.root / SPEAKERS_FILE).is_file():
            tts.add_speakers(base.root.name, load_speakers(base.root / SPEAKERS_FILE))
        runs = dict(adapters or {})
        if adapter is not None:
            runs.setdefault(Path(adapter).expanduser().resolve().name, adapter)
        for name, run_dir in runs.items():
            tts.add_voice(name, run_dir)
        return tts

    @classmethod
    def from_run(cls, run_dir: str | Path, **kwargs) -> IndexTTS:
        """Load the base a run was trained from (``model_dir`` in its config.yaml) with that run's voices."""
        return cls.from_pretrained(RunFolder(run_dir).model_dir(), adapter=run_dir, **kwargs)

    def add_voice(self, name: str, run_dir: str | Path, allow_base_mismatch: bool | None = None) -> list[VoiceInfo]:
        """Add a training run's speakers as voices ``name:speaker`` without reloading the base.

        The run's adapter is kept as its LoRA factors and put on the shared base only while its
        voices speak. Returns the voices added. Raises CheckpointError when the run does not fit the base.
        """
        allow = self.allow_base_mismatch if allow_base_mismatch is None else allow_base_mismatch
        self.library.check_name(name, Path(run_dir))
        self.weights.forget_originals()  # the base must be itself while PEFT reads the adapter (and may grow it)
        run = load_trained_run(run_dir, self.models.gpt, base=self.base, allow_base_mismatch=allow,
                               patch_only=True, base_text_rows=self._base_text_rows)
        self.models.gpt = self.weights.model = run.gpt
        tokenizer = TextTokenizer(run.tokenizer_path) if run.tokenizer_path else self.tokenizer
        self.library.add(VoiceSource(name, Path(run_dir).expanduser().resolve(), run.speakers, tokenizer, run.patch))
        return [info for info in self.library.voices if info.run == name]

    def add_speakers(self, name: str, speakers: dict[str, TrainedSpeaker]) -> list[VoiceInfo]:
        """Add speakers whose adapter is already in the base weights (an exported folder, a benchmark)."""
        self.library.add(VoiceSource(name, self.base.root if self.base else Path(name), speakers, self.tokenizer))
        return [info for info in self.library.voices if info.run == name]

    @property
    def family(self) -> Family:
        """The model family of the base (version "1.0" | "1.5" | "2" | "2.5")."""
        return self.base.family if self.base is not None else family_of(self.cfg, "the base config")

    @property
    def voices(self) -> list[VoiceInfo]:
        """Every loaded voice (id "run:speaker", its run and speaker)."""
        return self.library.voices

    @torch.inference_mode()
    def voice(self, voice: str | None = None, reference_audio: str | Path | None = None) -> Voice:
        """The voice to speak with, cached by (voice, reference path).

        With ``voice`` ("run:speaker" or a unique speaker name), the run's learned conditioning and
        reference mel; ``reference_audio`` then replaces only the vocoder's reference (IndexTTS-2: the S2Mel
        prompt). Without
        ``voice``, both come from ``reference_audio`` (zero-shot), or from the only loaded voice.
        Raises VoiceNotFoundError / InferenceError for an unknown or missing voice, AudioError for an
        unusable reference (unreadable, shorter than 0.5 s, or silent).
        """
        resolved = self.library.resolve(voice, reference_audio is not None)
        source, speaker = resolved if resolved else (None, None)
        key = (source.name if source else None, speaker,
               None if reference_audio is None else Path(reference_audio).resolve())
        if key not in self._voice_cache:
            trained = source.speakers[speaker] if source is not None else None
            self._voice_cache[key] = self.models.make_voice(trained, reference_audio, key[0])
        return self._voice_cache[key]

    def _tokenizer_of(self, voice: str | None, reference_audio: str | Path | None) -> TextTokenizer:
        """The tokenizer of the voice's run (the base one for zero-shot, or when the voice is unknown)."""
        try:
            resolved = self.library.resolve(voice, reference_audio is not None)
        except InferenceError:
            return self.tokenizer
        return resolved[0].tokenizer if resolved else self.tokenizer

    def split_text(self, text: str, max_tokens: int, tokenizer: TextTokenizer | None = None) -> list[tuple[str, list[int]]]:
        """Normalise, tokenise and split ``text`` into (sentence, token ids) of at most ``max_tokens`` ids.

        Raises TextError for empty text or text with nothing speakable.
        """
        return self._sentences(text, max_tokens, tokenizer)[0]

    def _sentences(self, text: str, max_tokens: int, tokenizer=None) -> tuple[list[tuple[str, list[int]]], list[int] | None]:
        """:meth:`split_text`'s sentences and, for IndexTTS-2.5, each one's language id (else None)."""
        tokenizer = tokenizer or self.tokenizer
        if max_tokens > self.models.max_text_tokens:
            raise InferenceError(
                f"max_text_tokens_per_sentence={max_tokens} exceeds the model's limit of {self.models.max_text_tokens} "
                "(gpt.max_text_tokens in the base config). Choose a smaller value; 120 is a good default.")
        if isinstance(tokenizer, SentenceSplitter25):
            sentences = tokenizer.split(text, max_tokens)
            return [(s.text, s.ids) for s in sentences], [s.language_id for s in sentences]
        sentences = tokenizer.split_sentences(tokenizer.tokenize(text), max_tokens)
        id_lists = [tokenizer.convert_tokens_to_ids(tokens) for tokens in sentences]
        return [(tokenizer.decode(ids), ids) for ids in id_lists], None

    def _prepare(self, request: SpeechRequest) -> _Job:
        """Resolve the voice, check the options and split the text of one request."""
        options = request.options or SynthesisOptions()
        options.validate()
        self.models.check_options(options)
        if options.max_text_length is not None and len(request.text) > options.max_text_length:
            raise TextTooLongError(f"The text has {len(request.text)} characters, more than the limit of "
                                   f"{options.max_text_length}. Send it in shorter parts.")
        max_new_tokens = min(options.generation.max_new_tokens, self.models.max_mel_tokens)
        options = replace(options, generation=replace(options.generation, max_new_tokens=max_new_tokens))
        timings = StageTimings()
        stopwatch = Stopwatch([timings], self.device)
        with stopwatch("text"):  # text errors come before voice errors, so find the tokenizer quietly
            sentences, languages = self._sentences(request.text, options.max_text_tokens_per_sentence,
                                                   self._tokenizer_of(request.voice, request.reference_audio))
        with stopwatch("conditioning"):
            voice = self.models.spoken_voice(self.voice(request.voice, request.reference_audio), options)
        return _Job(voice, options, sentences, timings, [torch.zeros(0, dtype=torch.long)] * len(sentences),
                    [np.zeros(0, dtype=np.float32)] * len(sentences), languages)

    def _activate(self, voice: Voice) -> None:
        """Put the voice's run adapter on the shared GPT (the base alone for zero-shot voices)."""
        source = self.library.sources[voice.run] if voice.run else None
        self.weights.activate(voice.run, source.patch if source else None)
        self.models.select_weights((self.weights.active, self.weights.switches, len(self.library.sources)))

    @torch.inference_mode()
    def _stream_first_sentence(self, job: _Job, chunk_codes: int) -> Iterator[AudioChunk]:
        """Sentence 0 of ``job`` in pieces (:mod:`indextts.inference.streaming`); its codes and audio land in ``job``."""
        self._activate(job.voice)
        text, ids = job.sentences[0]
        pieces = stream_sentence(self.models, job.voice.condition, job.voice.speaker_embedding,
                                 torch.tensor(ids, dtype=torch.long), job.options, job.options.batch_generation(0),
                                 chunk_codes)
        waveforms, codes = [], []
        for piece in pieces:
            waveforms.append(piece.waveform)
            codes.append(piece.codes)
            yield AudioChunk(piece.waveform, self.sample_rate, 0, text, piece.codes, piece.final)
        job.codes[0], job.waveforms[0] = torch.cat(codes), np.concatenate(waveforms)

    @torch.inference_mode()
    def _run_batch(self, items: list[tuple[_Job, int]], batch_number: int) -> None:
        """Synthesise sentences (job, sentence index) of one run and one set of options, in one batch each stage."""
        jobs = list({id(job): job for job, _ in items}.values())
        stopwatch = Stopwatch([job.timings for job in jobs], self.device)
        self._activate(items[0][0].voice)
        options = items[0][0].options
        languages = None if items[0][0].languages is None else [job.languages[i] for job, i in items]
        batch = SentenceBatch([job.voice for job, _ in items], [job.sentences[i][1] for job, i in items],
                              [i for _, i in items], options, options.batch_generation(batch_number), languages)
        codes, waveforms = self.models.speak(batch, stopwatch)
        for (job, index), row_codes, waveform in zip(items, codes, waveforms):
            job.codes[index], job.waveforms[index] = row_codes, waveform

    def _result(self, job: _Job) -> SynthesisResult:
        """Join a finished job's sentences; InferenceError when no sentence produced audio."""
        job.timings.num_codes = sum(len(c) for c in job.codes)
        if job.timings.num_codes == 0:
            raise InferenceError(
                "The model generated no audio for this text (every sentence ended at once, or held only "
                "silence codes that were removed). Try other text, another voice or reference, or sampling "
                "with another --seed.")
        waveform = join_waveforms(job.waveforms, round(job.options.pause_seconds * self.sample_rate))
        job.timings.audio_seconds = len(waveform) / self.sample_rate
        return SynthesisResult(waveform, self.sample_rate, [s for s, _ in job.sentences], job.codes, job.timings)

    def synthesize(self, text: str, voice: str | None = None, reference_audio: str | Path | None = None,
                   options: SynthesisOptions | None = None) -> SynthesisResult:
        """Speak ``text`` in the chosen voice (see :meth:`voice`) and return the audio.

        Sentences of similar length are generated and vocoded together in batches of up to
        ``options.sentence_batch_size``; the result keeps the original sentence order.
        """
        return self.synthesize_many([SpeechRequest(text, voice, options, reference_audio)])[0]

    def synthesize_many(self, requests: list[SpeechRequest],
                        return_exceptions: bool = False) -> list[SynthesisResult | IndexTTSError]:
        """Speak several texts, batching the sentences of all of them (grouped by run, options and length).

        Greedy and beam results equal those of one request at a time. A request that fails (bad
        voice or text, no audio) raises; with ``return_exceptions`` its error takes its place in
        the returned list and the other requests still run.
        """
        jobs: list[_Job | IndexTTSError] = []
        for request in requests:
            try:
                jobs.append(self._prepare(request))
            except IndexTTSError as error:
                if not return_exceptions:
                    raise
                jobs.append(error)
        ready = [job for job in jobs if isinstance(job, _Job)]
        units = [(job, index) for job in ready for index in range(len(job.sentences))]
        plan = plan_batches([(job.voice.run, job.options) for job, _ in units],
                            [len(job.sentences[index][1]) for job, index in units],
                            [job.options.sentence_batch_size for job, _ in units])
        for batch_number, batch in plan:
            self._run_batch([units[i] for i in batch], batch_number)
        results: list[SynthesisResult | IndexTTSError] = []
        for job in jobs:
            try:
                results.append(job if isinstance(job, IndexTTSError) else self._result(job))
            except IndexTTSError as error:
                if not return_exceptions:
                    raise
                results.append(error)
        return results

    def stream(self, text: str, voice: str | None = None, reference_audio: str | Path | None = None,
               options: SynthesisOptions | None = None, chunk_codes: int | None = None) -> Iterator[AudioChunk]:
        """Yield each sentence's audio as soon as it is ready, in order.

        The first sentence is synthesised alone, so the first chunk arrives after one sentence's
        work whatever the length of the text; the rest follow in batches of consecutive sentences.
        With ``chunk_codes`` the first sentence itself comes in pieces (``AudioChunk.final`` marks its
        last): audio of its first codes once ``chunk_codes`` of them are sure, each piece crossfaded
        into the next (:mod:`indextts.inference.streaming`). Raises InferenceError at the end when no sentence
        produced audio, or at once for ``chunk_codes`` below 1.
        """
        if chunk_codes is not None and chunk_codes < 1:
            raise InferenceError(f"chunk_codes must be at least 1 (got {chunk_codes}); leave it unset to stream "
                                 "whole sentences.")
        if chunk_codes and self.family.generation == 2:
            raise InferenceError(f"{self.family} streams whole sentences only (S2Mel draws a sentence's mel as a "
                                 "whole); leave chunk_codes unset.")
        job = self._prepare(SpeechRequest(text, voice, options, reference_audio))
        size, count = job.options.sentence_batch_size, len(job.sentences)
        batches = [[0]] + [list(range(start, min(start + size, count))) for start in range(1, count, size)]
        pause = np.zeros(round(job.options.pause_seconds * self.sample_rate), dtype=np.float32)
        for number, batch in enumerate(batches):
            if number == 0 and chunk_codes:
                yield from self._stream_first_sentence(job, chunk_codes)
                continue
            self._run_batch([(job, index) for index in batch], number)
            for index in batch:
                waveform = job.waveforms[index] if index == 0 else np.concatenate([pause, job.waveforms[index]])
                yield AudioChunk(waveform, self.sample_rate, index, job.sentences[index][0], job.codes[index])
        self._result(job)

    def synthesize_to_file(self, text: str, output_path: str | Path, voice: str | None = None,
                           reference_audio: str | Path | None = None, options: SynthesisOptions | None = None,
                           sample_rate: int | None = None) -> SynthesisResult:
        """Like :meth:`synthesize`, then write the audio as a 16-bit PCM WAV at ``output_path``.

        ``sample_rate``: the file's rate (None: the model's); the audio is resampled once (soxr) and the
        result holds what was written. The path is checked for writability before the (slow) synthesis
        starts; nothing is written when synthesis fails.
        """
        check_writable(output_path)
        result = self.synthesize(text, voice, reference_audio, options)
        rate = sample_rate or result.sample_rate
        result = replace(result, waveform=resample(result.waveform, result.sample_rate, rate), sample_rate=rate)
        write_wav(output_path, result.waveform, result.sample_rate)
        return result
