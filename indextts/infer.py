"""Speech synthesis with IndexTTS: zero-shot from a reference wav, or a fine-tuned voice by name.

Python::

    from indextts.infer import IndexTTS
    tts = IndexTTS("checkpoints", adapter="runs/kaishu")
    tts.synthesize_to_file("你好，world.", "out.wav", speaker="kaishu_30min")

Command line (``python indextts/infer.py`` and ``python -m indextts.infer`` are the same)::

    python indextts/infer.py --model_dir checkpoints --adapter runs/kaishu --speaker kaishu_30min \\
        --text "今天天气不错。" --output out.wav
    python indextts/infer.py --reference_audio prompt.wav --text_file lines.txt --output out_dir/
    python indextts/infer.py --adapter runs/kaishu --speaker kaishu_30min --list test.lst --output out_dir/

The pipeline: normalise and tokenise the text, split it into sentences of at most
``max_text_tokens_per_sentence`` tokens, generate DVAE codes for batches of similar-length
sentences, shorten long runs of the silence code, compute GPT latents for the codes, vocode each
sentence with BigVGAN conditioned on the speaker's reference mel, and join the sentences with a
short pause. A LoRA adapter is merged into the GPT weights on load, so decoding costs the same as
the base model.
"""

# The script bootstrap below must run before the package imports, which therefore are not at the top.
# ruff: noqa: E402
from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Started as `python indextts/infer.py`: Python put indextts/ itself first on sys.path, so the
    # package is not importable and its modules would shadow top-level names. Run the module with
    # the repository root on the path instead, exactly as `python -m indextts.infer` does.
    import runpy
    import sys
    from pathlib import Path

    sys.path[0] = str(Path(__file__).resolve().parents[1])
    runpy.run_module("indextts.infer", run_name="__main__", alter_sys=True)
    raise SystemExit

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from tqdm import tqdm

from indextts.audio import MelSpectrogramFeatures, load_audio
from indextts.checkpoints import load_bigvgan, load_gpt
from indextts.config import checkpoint_paths, load_config
from indextts.errors import IndexTTSError, InferenceError
from indextts.gpt.generation import GenerationConfig, generate_codes
from indextts.synthesis import (
    check_writable,
    join_waveforms,
    length_batches,
    strip_stop_code,
    trim_silence_runs,
    write_wav,
)
from indextts.text import TextTokenizer

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
        silence_code, max_silence_codes: runs of the DVAE silence code (52 in the release models)
            longer than ``max_silence_codes`` are shortened to it; -1 keeps them.
    """

    generation: GenerationConfig = field(default_factory=GenerationConfig)
    max_text_tokens_per_sentence: int = 120
    sentence_batch_size: int = 8
    pause_seconds: float = 0.1
    silence_code: int = 52
    max_silence_codes: int = 10

    def validate(self) -> None:
        """Raise InferenceError naming every invalid sentence or audio option, then check generation."""
        problems = []
        if self.sentence_batch_size < 1:
            problems.append(f"sentence_batch_size must be >= 1 (got {self.sentence_batch_size})")
        if self.pause_seconds < 0:
            problems.append(f"pause must be >= 0 seconds (got {self.pause_seconds})")
        if problems:
            raise InferenceError("Invalid synthesis settings: " + "; ".join(problems) + ". Fix them and run again.")
        self.generation.validate()

    def batch_generation(self, batch_number: int) -> GenerationConfig:
        """The GenerationConfig for one batch of sentences: seeded with ``seed + batch_number`` when seeded."""
        if self.generation.seed is None:
            return self.generation
        return replace(self.generation, seed=self.generation.seed + batch_number, generator=None)


@dataclass
class StageTimings:
    """Wall-clock seconds spent in each stage of one synthesis call."""

    text: float = 0.0
    conditioning: float = 0.0
    generation: float = 0.0
    latents: float = 0.0
    vocoder: float = 0.0
    num_codes: int = 0
    audio_seconds: float = 0.0

    @property
    def total(self) -> float:
        """Seconds for the whole call."""
        return self.text + self.conditioning + self.generation + self.latents + self.vocoder

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of compute per second of audio (lower is faster)."""
        return self.total / self.audio_seconds if self.audio_seconds else float("inf")

    def summary(self) -> str:
        """One line per stage with times, GPT codes per second and the real-time factor."""
        codes_per_second = self.num_codes / self.generation if self.generation else 0.0
        return "\n".join([
            f"text       {self.text:8.3f} s",
            f"condition  {self.conditioning:8.3f} s",
            f"generate   {self.generation:8.3f} s  ({self.num_codes} codes, {codes_per_second:.1f} codes/s)",
            f"latents    {self.latents:8.3f} s",
            f"vocoder    {self.vocoder:8.3f} s",
            f"total      {self.total:8.3f} s  for {self.audio_seconds:.2f} s of audio, RTF {self.rtf:.4f}",
        ])


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
class Voice:
    """What a speaker contributes: GPT conditioning latents (32, D) and the vocoder's reference mel (F, 100).

    ``speaker_embedding`` is BigVGAN's embedding (1, E, 1) of ``reference_mel``; IndexTTS fills it
    in on first use and keeps the voice, so repeated calls skip the speaker encoder.
    """

    condition: torch.Tensor
    reference_mel: torch.Tensor
    speaker_embedding: torch.Tensor | None = None


class _Stopwatch:
    """Adds the seconds spent inside a ``with`` block to one field of a StageTimings."""

    def __init__(self, timings: StageTimings, device: torch.device):
        self.timings = timings
        self.device = device

    def __call__(self, stage: str) -> "_Stopwatch":
        self.stage = stage
        return self

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - self.start
        setattr(self.timings, self.stage, getattr(self.timings, self.stage) + elapsed)


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 on GPUs that support it, float16 on older GPUs, float32 on the CPU."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class IndexTTS:
    """An IndexTTS voice synthesiser: base checkpoints plus, optionally, a fine-tuned LoRA run.

    Args:
        model_dir: checkpoint folder with config.yaml, gpt.pth, bigvgan_generator.pth and bpe.model
            (IndexTTS-1.5 or 1.0). Weights are loaded strictly.
        adapter: a training run folder (runs/<name>) written by train.py. Its LoRA adapter is merged
            into the GPT and its speakers become available by name; its tokenizer replaces the
            base one when training added special tokens. None gives plain zero-shot IndexTTS.
        device: "cpu", "cuda", "cuda:1", ... (default: the first GPU if there is one).
        dtype: precision on CUDA ("bfloat16", "float16", "float32" or a torch.dtype): the GPT's
            weights are cast to it and BigVGAN runs under autocast to it; default bfloat16
            (float16 on GPUs without bf16). The CPU always uses float32.
    """

    def __init__(self, model_dir: str | Path = "checkpoints", adapter: str | Path | None = None,
                 device: str | torch.device | None = None, dtype: str | torch.dtype | None = None):
        cfg = load_config(model_dir)
        gpt = load_gpt(model_dir, cfg, device="cpu")
        tokenizer_path = checkpoint_paths(model_dir, cfg).bpe
        speakers: dict[str, Voice] = {}
        if adapter is not None:
            from indextts.lora import load_trained_run  # imports peft, needed only with an adapter

            run = load_trained_run(adapter, gpt, merge=True)
            gpt = run.gpt
            speakers = {
                name: Voice(speaker.condition, speaker.reference_mel.transpose(0, 1))
                for name, speaker in run.speakers.items()
            }
            tokenizer_path = run.tokenizer_path or tokenizer_path
        bigvgan = load_bigvgan(model_dir, cfg, device="cpu")
        self._setup(cfg, gpt, bigvgan, TextTokenizer(tokenizer_path), speakers, device, dtype)

    @classmethod
    def from_modules(cls, cfg, gpt, bigvgan, tokenizer: TextTokenizer, speakers: dict[str, Voice] | None = None,
                     device: str | torch.device | None = None,
                     dtype: str | torch.dtype | None = None) -> "IndexTTS":
        """Build from models already in memory (e.g. random release-size weights for benchmarks).

        ``cfg`` is the checkpoint config, ``gpt`` a UnifiedVoice (adapter merged if any), ``bigvgan``
        the vocoder, ``speakers`` maps names to their Voice; device and dtype as in the constructor.
        """
        tts = cls.__new__(cls)
        tts._setup(cfg, gpt, bigvgan, tokenizer, speakers or {}, device, dtype)
        return tts

    def _setup(self, cfg, gpt, bigvgan, tokenizer, speakers, device, dtype) -> None:
        self.cfg = cfg
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InferenceError(f"--device {device} asks for a CUDA GPU, but PyTorch sees none here. "
                                 "Use --device cpu, or install a CUDA build of PyTorch.")
        self.dtype = self._resolve_dtype(dtype)
        self.gpt = gpt.to(self.device, self.dtype).eval()
        self.bigvgan = bigvgan.to(self.device).eval()
        self.tokenizer = tokenizer
        self.speaker_voices = speakers
        self.mel = MelSpectrogramFeatures.from_config(cfg.dataset.mel).to(self.device)
        self.sample_rate = int(cfg.dataset.sample_rate)
        self.samples_per_code = int(self.gpt.mel_length_compression)
        self._voices: dict[tuple[str | None, Path | None], Voice] = {}

    def _resolve_dtype(self, dtype: str | torch.dtype | None) -> torch.dtype:
        if self.device.type != "cuda":
            return torch.float32
        if dtype is None:
            return default_dtype(self.device)
        if isinstance(dtype, str):
            if dtype not in DTYPES:
                raise InferenceError(f"Unknown dtype '{dtype}'. Use one of: {', '.join(DTYPES)}.")
            return DTYPES[dtype]
        return dtype

    @property
    def speakers(self) -> list[str]:
        """Names of the fine-tuned speakers of the loaded run (empty without an adapter)."""
        return sorted(self.speaker_voices)

    def reference_mel(self, audio_path: str | Path) -> torch.Tensor:
        """Log-mel (100, F) of a reference recording, on the model's device."""
        audio = load_audio(audio_path, self.sample_rate).to(self.device)
        if audio.numel() < self.mel.n_fft:
            raise InferenceError(
                f"The reference audio {audio_path} is too short ({audio.numel()} samples). Use a "
                "recording of a few seconds of speech."
            )
        return self.mel(audio)[0]

    @torch.inference_mode()
    def voice(self, speaker: str | None = None, reference_audio: str | Path | None = None) -> Voice:
        """The voice to speak with, cached by (speaker, reference path).

        With ``speaker``, the run's learned conditioning and its reference mel; ``reference_audio``
        then replaces only the vocoder's reference. Without ``speaker``, both come from
        ``reference_audio`` (zero-shot), or from the run's only speaker when it has exactly one.
        Raises InferenceError for an unknown speaker or a missing voice, AudioError for an
        unreadable reference.
        """
        speaker = self._speaker_name(speaker, reference_audio)
        key = (speaker, None if reference_audio is None else Path(reference_audio).resolve())
        if key not in self._voices:
            if speaker is None:
                mel = self.reference_mel(reference_audio)  # (100, F)
                lengths = torch.tensor([mel.shape[-1]], device=self.device)
                condition = self.gpt.get_conditioning(mel.unsqueeze(0).to(self.dtype), lengths)[0]
                reference = mel.transpose(0, 1)
            else:
                learned = self.speaker_voices[speaker]
                condition = learned.condition.to(self.device, self.dtype)
                reference = learned.reference_mel
                if reference_audio is not None:
                    reference = self.reference_mel(reference_audio).transpose(0, 1)
            reference = reference.to(self.device)  # (F, 100)
            with self._vocoder_precision():
                embedding = self.bigvgan.embed_speaker(reference.unsqueeze(0))
            self._voices[key] = Voice(condition, reference, embedding)
        return self._voices[key]

    def _speaker_name(self, speaker: str | None, reference_audio: str | Path | None) -> str | None:
        """Check the requested speaker; the run's only speaker when none is named and no reference is given."""
        if speaker is None and reference_audio is None:
            if len(self.speaker_voices) == 1:
                return self.speakers[0]
            if self.speaker_voices:
                raise InferenceError(
                    f"Choose a speaker: the run has {len(self.speaker_voices)} "
                    f"({', '.join(self.speakers)}). Pass --speaker NAME, or --reference_audio for zero-shot."
                )
            raise InferenceError(
                "No voice given. Pass --reference_audio WAV for zero-shot synthesis, or "
                "--adapter runs/<name> --speaker NAME for a fine-tuned voice."
            )
        if speaker is not None and speaker not in self.speaker_voices:
            if not self.speaker_voices:
                raise InferenceError(
                    f"Speaker '{speaker}' needs a fine-tuned run: pass --adapter runs/<name> (the "
                    "training output folder), or use --reference_audio alone for zero-shot synthesis."
                )
            raise InferenceError(
                f"Unknown speaker '{speaker}'. The fine-tuned run has these speakers: "
                f"{', '.join(self.speakers)}. Pass one of them with --speaker."
            )
        return speaker

    def split_text(self, text: str, max_tokens: int) -> list[tuple[str, list[int]]]:
        """Normalise, tokenise and split ``text`` into (sentence, token ids) of at most ``max_tokens`` ids.

        Raises TextError for empty text or text with nothing speakable.
        """
        limit = int(self.cfg.gpt.max_text_tokens)
        if max_tokens > limit:
            raise InferenceError(
                f"max_text_tokens_per_sentence={max_tokens} exceeds the model's limit of {limit} "
                "(gpt.max_text_tokens in config.yaml). Choose a smaller value; 120 is a good default."
            )
        sentences = self.tokenizer.split_sentences(self.tokenizer.tokenize(text), max_tokens)
        id_lists = [self.tokenizer.convert_tokens_to_ids(tokens) for tokens in sentences]
        return [(self.tokenizer.decode(ids), ids) for ids in id_lists]

    @torch.inference_mode()
    def synthesize(self, text: str, speaker: str | None = None, reference_audio: str | Path | None = None,
                   options: SynthesisOptions | None = None) -> SynthesisResult:
        """Speak ``text`` in the chosen voice (see :meth:`voice`) and return the audio.

        Sentences of similar length are generated together in padded batches of up to
        ``options.sentence_batch_size``; the result keeps the original sentence order.
        """
        options = options or SynthesisOptions()
        options.validate()
        timings = StageTimings()
        stopwatch = _Stopwatch(timings, self.device)
        with stopwatch("text"):
            sentences = self.split_text(text, options.max_text_tokens_per_sentence)
        with stopwatch("conditioning"):
            voice = self.voice(speaker, reference_audio)
        max_new_tokens = min(options.generation.max_new_tokens, int(self.cfg.gpt.max_mel_tokens))
        options = replace(options, generation=replace(options.generation, max_new_tokens=max_new_tokens))
        codes: list[torch.Tensor] = [torch.zeros(0, dtype=torch.long)] * len(sentences)
        latents: list[torch.Tensor | None] = [None] * len(sentences)
        batches = length_batches([len(ids) for _, ids in sentences], options.sentence_batch_size)
        for batch_number, batch in enumerate(batches):
            text_ids, text_lengths = self._pad([sentences[i][1] for i in batch])
            condition = voice.condition.unsqueeze(0).expand(len(batch), -1, -1)
            with stopwatch("generation"):
                generated = generate_codes(self.gpt, condition, text_ids, text_lengths,
                                           options.batch_generation(batch_number))
            batch_codes = [self._clean_codes(row, options) for row in generated]
            with stopwatch("latents"):
                batch_latents = self._latents(condition, text_ids, text_lengths, batch_codes)
            for row, index in enumerate(batch):
                codes[index] = batch_codes[row].cpu()
                latents[index] = batch_latents[row]
        with stopwatch("vocoder"):
            waveforms = [self._vocode(latent, voice.speaker_embedding) for latent in latents]
        waveform = join_waveforms(waveforms, round(options.pause_seconds * self.sample_rate))
        timings.num_codes = sum(len(c) for c in codes)
        timings.audio_seconds = len(waveform) / self.sample_rate
        return SynthesisResult(waveform, self.sample_rate, [s for s, _ in sentences], codes, timings)

    def synthesize_to_file(self, text: str, output_path: str | Path, speaker: str | None = None,
                           reference_audio: str | Path | None = None,
                           options: SynthesisOptions | None = None) -> SynthesisResult:
        """Like :meth:`synthesize`, then write the audio as a 16-bit PCM WAV at ``output_path``.

        Folders are created; an existing file is replaced atomically. The path is checked for
        writability before the (slow) synthesis starts.
        """
        check_writable(output_path)
        result = self.synthesize(text, speaker, reference_audio, options)
        write_wav(output_path, result.waveform, result.sample_rate)
        return result

    def _pad(self, id_lists: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad token id lists into (B, L) ids and (B,) lengths on the model's device."""
        ids = [torch.tensor(i, dtype=torch.long) for i in id_lists]
        lengths = torch.tensor([len(i) for i in ids], device=self.device)
        padded = pad_sequence(ids, batch_first=True, padding_value=int(self.cfg.gpt.stop_text_token))
        return padded.to(self.device), lengths

    def _clean_codes(self, generated: torch.Tensor, options: SynthesisOptions) -> torch.Tensor:
        """Generated codes without the stop code and with long silences shortened."""
        stop = int(self.cfg.gpt.stop_mel_token)
        max_new_tokens = options.generation.max_new_tokens
        if len(generated) >= max_new_tokens and generated[-1] != stop:
            logger.warning(
                "A sentence reached max_mel_tokens=%d codes without finishing; its end may be cut. "
                "Raise --max_mel_tokens or lower --max_text_tokens_per_sentence.", max_new_tokens)
        codes = strip_stop_code(generated, stop)
        return trim_silence_runs(codes, options.silence_code, options.max_silence_codes)

    def _latents(self, condition: torch.Tensor, text_ids: torch.Tensor, text_lengths: torch.Tensor,
                 codes: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """GPT latents (N_i, D) for each row's codes; None for rows that produced no code."""
        code_lengths = torch.tensor([len(c) for c in codes], device=self.device)
        if int(code_lengths.max()) == 0:
            return [None] * len(codes)
        padded = pad_sequence(codes, batch_first=True).to(self.device)
        latents = self.gpt.forward_latents(condition, text_ids, text_lengths, padded, code_lengths)
        return [latents[row, :n] if n else None for row, n in enumerate(code_lengths.tolist())]

    def _vocoder_precision(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _vocode(self, latent: torch.Tensor | None, speaker_embedding: torch.Tensor) -> np.ndarray:
        """BigVGAN waveform (N * samples_per_code,) for latents (N, D); empty when there are no latents."""
        if latent is None:
            return np.zeros(0, dtype=np.float32)
        with self._vocoder_precision():
            wav = self.bigvgan(latent.unsqueeze(0), speaker_embedding=speaker_embedding)
        return wav.float().reshape(-1).cpu().numpy()


@dataclass
class Utterance:
    """One line of a --text_file or --list file: what to say and where to write it."""

    line_number: int
    text: str
    output: Path
    reference_audio: Path | None = None


def read_text_file(path: Path, output_dir: Path) -> list[Utterance]:
    """One utterance per non-blank line -> output_dir/<line number, 4 digits>.wav."""
    return [Utterance(number, line.strip(), output_dir / f"{number:04d}.wav")
            for number, line in enumerate(_read_lines(path), start=1) if line.strip()]


def read_list_file(path: Path, output_dir: Path) -> tuple[list[Utterance], list[str]]:
    """Parse the reference fork's list format ``uid|prompt_text|prompt_wav|target_text``.

    Each line becomes output_dir/<uid>.wav speaking ``target_text``; ``prompt_wav`` (relative to
    the list file's folder) is the zero-shot reference when no speaker is chosen. Returns the
    utterances and one message per malformed line.
    """
    utterances, problems = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("|")]
        if len(fields) != 4 or not fields[0]:
            problems.append(f"{path}:{number}: expected 'uid|prompt_text|prompt_wav|target_text' "
                            f"(4 fields separated by '|', uid not empty), got {len(fields)} field(s).")
            continue
        uid, _, prompt_wav, target_text = fields
        reference = path.parent / prompt_wav if prompt_wav else None
        utterances.append(Utterance(number, target_text, output_dir / f"{uid}.wav", reference))
    return utterances, problems


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InferenceError(f"Cannot read the text file {path}: {error}. Give a UTF-8 text file.") from error


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults only for options that have a meaningful one."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (every flag documented in --help)."""
    defaults = SynthesisOptions()
    generation_defaults = GenerationConfig()
    parser = argparse.ArgumentParser(
        prog="python indextts/infer.py",
        description="Synthesise speech with IndexTTS, zero-shot from a reference recording or with "
                    "a fine-tuned LoRA run's speaker.",
        formatter_class=_HelpFormatter,
    )
    model = parser.add_argument_group("model and voice")
    model.add_argument("--model_dir", default="checkpoints",
                       help="checkpoint folder with config.yaml, gpt.pth, bigvgan_generator.pth, bpe.model")
    model.add_argument("--adapter", help="training run folder (runs/<name>) whose LoRA adapter and speakers to use")
    model.add_argument("--speaker", help="fine-tuned speaker name from the run (default: its only speaker)")
    model.add_argument("--reference_audio",
                       help="reference recording: the zero-shot voice, or with --speaker the vocoder's reference")
    text_and_output = parser.add_argument_group("text and output")
    inputs = text_and_output.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--text", help="the text to speak; --output is a .wav file")
    inputs.add_argument("--text_file", type=Path,
                        help="UTF-8 file, one utterance per line; --output is a folder of <line>.wav files")
    inputs.add_argument("--list", type=Path, dest="list_file",
                        help="file of 'uid|prompt_text|prompt_wav|target_text' lines; --output is a "
                             "folder of <uid>.wav files; prompt_wav is the voice when no --speaker is given")
    text_and_output.add_argument("--output", type=Path, required=True,
                                 help="output .wav file, or folder for --text_file/--list")
    generation = parser.add_argument_group("generation")
    generation.add_argument("--do_sample", action=argparse.BooleanOptionalAction,
                            default=generation_defaults.do_sample,
                            help="sample codes (--no-do_sample: greedy or beam search)")
    generation.add_argument("--top_p", type=float, default=generation_defaults.top_p,
                            help="nucleus sampling probability mass")
    generation.add_argument("--top_k", type=int, default=generation_defaults.top_k,
                            help="sample from the k most likely codes")
    generation.add_argument("--temperature", type=float, default=generation_defaults.temperature,
                            help="sampling temperature")
    generation.add_argument("--num_beams", type=int, default=generation_defaults.num_beams,
                            help="beam search width (1: none)")
    generation.add_argument("--repetition_penalty", type=float, default=generation_defaults.repetition_penalty,
                            help="penalty on codes already generated (1.0: none)")
    generation.add_argument("--length_penalty", type=float, default=generation_defaults.length_penalty,
                            help="beam score length exponent (0: summed log-probabilities)")
    generation.add_argument("--max_mel_tokens", type=int, default=generation_defaults.max_new_tokens,
                            help="most codes generated per sentence (1 code = 1024 samples)")
    generation.add_argument("--seed", type=int, help="random seed for reproducible sampling")
    text = parser.add_argument_group("sentences and audio")
    text.add_argument("--max_text_tokens_per_sentence", type=int, default=defaults.max_text_tokens_per_sentence,
                      help="split long text into sentences of at most this many tokens")
    text.add_argument("--sentence_batch_size", type=int, default=defaults.sentence_batch_size,
                      help="most sentences of similar length generated together in one batch")
    text.add_argument("--pause", type=float, default=defaults.pause_seconds,
                      help="seconds of silence inserted between sentences")
    text.add_argument("--silence_code", type=int, default=defaults.silence_code,
                      help="the DVAE code of silence (52 for the release models)")
    text.add_argument("--max_silence_codes", type=int, default=defaults.max_silence_codes,
                      help="shorten runs of the silence code to this many codes (-1: keep all)")
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: first GPU if any, else CPU)")
    runtime.add_argument("--dtype", choices=sorted(DTYPES),
                         help="GPU weight precision (default bfloat16, float16 on GPUs without bf16; CPU: float32)")
    runtime.add_argument("--verbose", action="store_true", help="print per-stage times and the real-time factor")
    return parser


def options_from_args(args: argparse.Namespace) -> SynthesisOptions:
    """SynthesisOptions from parsed command-line arguments."""
    generation = GenerationConfig(
        do_sample=args.do_sample, top_p=args.top_p, top_k=args.top_k, temperature=args.temperature,
        num_beams=args.num_beams, repetition_penalty=args.repetition_penalty,
        length_penalty=args.length_penalty, max_new_tokens=args.max_mel_tokens, seed=args.seed,
    )
    return SynthesisOptions(
        generation=generation, max_text_tokens_per_sentence=args.max_text_tokens_per_sentence,
        sentence_batch_size=args.sentence_batch_size, pause_seconds=args.pause,
        silence_code=args.silence_code, max_silence_codes=args.max_silence_codes,
    )


def _batch_output_dir(path: Path) -> Path:
    if path.suffix.lower() == ".wav" or path.is_file():
        raise InferenceError(
            f"With --text_file or --list, --output is a folder for the numbered wavs, not the file "
            f"{path}. Give a folder, e.g. --output {path.with_suffix('')}/."
        )
    return path


def run_cli(args: argparse.Namespace) -> int:
    """Run the command line; returns the exit status (0 ok, 2 when any utterance failed)."""
    options = options_from_args(args)
    if args.text is not None:
        check_writable(args.output)  # before the slow model load
        tts = IndexTTS(args.model_dir, adapter=args.adapter, device=args.device, dtype=args.dtype)
        result = tts.synthesize_to_file(args.text, args.output, args.speaker, args.reference_audio, options)
        _report(args, args.output, result)
        return 0
    output_dir = _batch_output_dir(args.output)
    if args.text_file is not None:
        utterances, problems = read_text_file(args.text_file, output_dir), []
    else:
        utterances, problems = read_list_file(args.list_file, output_dir)
    if not utterances and not problems:
        raise InferenceError(f"{args.text_file or args.list_file} holds no text. Put one utterance per line.")
    tts = IndexTTS(args.model_dir, adapter=args.adapter, device=args.device, dtype=args.dtype)
    failures = 0
    for utterance in tqdm(utterances, desc="utterances", unit="line", disable=len(utterances) < 2):
        # A per-line prompt wav is the voice only in zero-shot mode; a chosen speaker or an explicit
        # --reference_audio wins.
        reference = args.reference_audio or (None if args.speaker else utterance.reference_audio)
        try:
            result = tts.synthesize_to_file(utterance.text, utterance.output, args.speaker, reference, options)
        except IndexTTSError as error:
            problems.append(f"line {utterance.line_number}: {error}")
            failures += 1
            continue
        _report(args, utterance.output, result)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} line(s) failed; {len(utterances) - failures} wav(s) written to {output_dir}.",
              file=sys.stderr)
    return 2 if problems else 0


def _report(args: argparse.Namespace, output: Path, result: SynthesisResult) -> None:
    print(f"{output}  ({result.timings.audio_seconds:.2f} s, {len(result.sentences)} sentence(s))")
    if args.verbose:
        print(result.timings.summary())


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python indextts/infer.py``; user errors print one message and exit 2."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_cli(args)
    except IndexTTSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
