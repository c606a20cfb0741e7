"""Generate the embedded two-speaker bilingual demo speech set with eSpeak NG.

The demo must run on a fresh machine without system packages or downloads, so the speech comes
from the ``libespeak-ng`` shared library and voice data shipped in the ``espeakng-loader`` wheel,
driven through ctypes in synchronous mode: every ``espeak_Synth`` call returns only after the
synth callback has received all 16-bit samples of the utterance.

Two speakers differ in voice variant (formants), pitch and rate, so that a fine-tuned model has
something to tell apart. Each speaker reads English, Mandarin and mixed sentences; mixed ones use
the ``cmn`` voice, which reads Latin letters as English. The output is a folder of wav files plus
one audio list per speaker in the format ``tools/extract_codec.py`` reads::

    demo_speaker_a/0000_en.wav<TAB>The weather is lovely this morning.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import random
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from indextts.errors import DataError

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050
"""eSpeak NG synthesises at 22,050 Hz; extraction resamples to the model's rate."""

DEFAULT_SENTENCES_PER_SPEAKER = 16

# Constants from espeak-ng/speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0
_CALLBACK_CONTINUE = 0
_VOLUME = 100  # eSpeak's default (0-200), set so that earlier callers cannot change it

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class DemoSpeaker:
    """How one demo speaker sounds: eSpeak voice variant, pitch and range (0-100), rate (wpm)."""

    name: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int


@dataclass(frozen=True)
class DemoSentence:
    """One built-in transcript; ``language`` is "en", "zh" or "mixed"."""

    language: str
    text: str


SPEAKERS = (
    DemoSpeaker(name="demo_speaker_a", variant="m3", pitch=35, pitch_range=40, rate=150),
    DemoSpeaker(name="demo_speaker_b", variant="f2", pitch=70, pitch_range=70, rate=180),
)

SENTENCES = (
    DemoSentence("en", "The weather is lovely this morning."),
    DemoSentence("en", "Please close the window before you leave."),
    DemoSentence("en", "A small model can learn a new voice quickly."),
    DemoSentence("en", "We walked along the river until sunset."),
    DemoSentence("en", "The train to the city leaves at seven."),
    DemoSentence("en", "Reading a good book is a quiet pleasure."),
    DemoSentence("en", "Thank you for listening to this short demo."),
    DemoSentence("en", "Fresh bread smells wonderful in the kitchen."),
    DemoSentence("zh", "今天天气很好，我们去公园散步吧。"),
    DemoSentence("zh", "请在离开之前关好窗户。"),
    DemoSentence("zh", "这是一个简单的语音合成演示。"),
    DemoSentence("zh", "他每天早上都喝一杯热茶。"),
    DemoSentence("zh", "火车七点钟从车站出发。"),
    DemoSentence("zh", "谢谢你耐心地听完这段话。"),
    DemoSentence("zh", "小猫在窗台上晒太阳。"),
    DemoSentence("zh", "我们明天一起去图书馆看书。"),
    DemoSentence("mixed", "我今天用 Python 写了一个小程序。"),
    DemoSentence("mixed", "这个 model 只需要几分钟就能训练好。"),
    DemoSentence("mixed", "请把 email 发给我，谢谢。"),
    DemoSentence("mixed", "周末我们去看了一场 movie。"),
    DemoSentence("mixed", "他在 GitHub 上分享了代码。"),
    DemoSentence("mixed", "我的 laptop 电池快没电了。"),
    DemoSentence("mixed", "下午三点有一个 online 会议。"),
    DemoSentence("mixed", "这首 song 的旋律非常好听。"),
)

_VOICE_BY_LANGUAGE = {"en": "en-us", "zh": "cmn", "mixed": "cmn"}


class _ESpeak:
    """The process-wide eSpeak NG library, initialised once in synchronous mode.

    eSpeak keeps global state (one voice, one callback), so every synthesis holds ``_lock``.
    """

    _instance: _ESpeak | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:
            raise DataError(
                "The demo speech set needs the 'espeakng-loader' package, which ships eSpeak NG "
                f"({error}). Install the project's dependencies (make demo does this) or run "
                "'pip install espeakng-loader', then try again."
            ) from error
        library_path = espeakng_loader.get_library_path()
        try:
            data_path = espeakng_loader.get_data_path()
            self._lib = ctypes.CDLL(library_path)
        except (OSError, RuntimeError) as error:
            raise DataError(
                f"Could not load eSpeak NG from the espeakng-loader package ({library_path}): "
                f"{error}. Reinstall it with 'pip install --force-reinstall espeakng-loader'."
            ) from error
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._declare_signatures()
        sample_rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
        )
        if sample_rate != SAMPLE_RATE:
            raise DataError(
                f"eSpeak NG from {library_path} failed to initialise with data {data_path} "
                f"(returned {sample_rate}, expected sample rate {SAMPLE_RATE}). Reinstall "
                "espeakng-loader with 'pip install --force-reinstall espeakng-loader'."
            )
        self._samples: list[np.ndarray] = []
        self._callback = _SynthCallback(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    @classmethod
    def get(cls) -> _ESpeak:
        """Return the shared engine, initialising libespeak-ng on first use only."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _declare_signatures(self) -> None:
        lib = self._lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = ctypes.c_int
        self._libc.srand.argtypes = [ctypes.c_uint]
        self._libc.srand.restype = None

    def _collect(self, wav, num_samples: int, events) -> int:
        """Synth callback: copy the chunk out, since eSpeak reuses its buffer for the next one."""
        if num_samples > 0:
            self._samples.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return _CALLBACK_CONTINUE

    def _check(self, status: int, action: str) -> None:
        if status != _EE_OK:
            raise DataError(
                f"eSpeak NG failed to {action} (error code {status}). Reinstall espeakng-loader "
                "with 'pip install --force-reinstall espeakng-loader'."
            )

    def synthesize(
        self, text: str, voice: str, pitch: int, pitch_range: int, rate: int, seed: int
    ) -> np.ndarray:
        """Speak ``text`` with ``voice`` (e.g. "en-us+m3"); returns int16 (S,) at 22,050 Hz.

        The voicing noise draws from eSpeak's own generator and from libc ``rand()``; both are
        seeded with ``seed``. The pitch flutter phase still carries over from earlier calls.
        """
        with self._lock:
            self._check(self._lib.espeak_ng_SetRandSeed(seed), "seed its random generator")
            self._libc.srand(seed)
            self._check(self._lib.espeak_SetVoiceByName(voice.encode()), f"select voice '{voice}'")
            for parameter, value in (
                (_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_RANGE, pitch_range),
                (_PARAM_VOLUME, _VOLUME),
            ):
                self._check(self._lib.espeak_SetParameter(parameter, value, 0), "set a parameter")
            encoded = text.encode("utf-8") + b"\0"
            buffer = ctypes.create_string_buffer(encoded, len(encoded))
            self._samples = []
            status = self._lib.espeak_Synth(
                buffer, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None
            )
            self._check(status, f"synthesise '{text}'")
            samples, self._samples = self._samples, []
        if not samples:
            raise DataError(f"eSpeak NG produced no audio for '{text}' with voice '{voice}'.")
        return np.concatenate(samples)


def synthesize(text: str, speaker: DemoSpeaker, language: str, seed: int = 0) -> np.ndarray:
    """Speak ``text`` as ``speaker``; ``language`` picks the eSpeak voice. Returns int16 (S,).

    Samples depend slightly on what this process synthesised before (see ``make_demo_dataset``).
    """
    voice = f"{_VOICE_BY_LANGUAGE[language]}+{speaker.variant}"
    return _ESpeak.get().synthesize(
        text, voice, speaker.pitch, speaker.pitch_range, speaker.rate, seed
    )


def _choose_sentences(count: int, rng: random.Random) -> list[DemoSentence]:
    """Pick ``count`` sentences, spreading them evenly over the three languages."""
    languages = ("en", "zh", "mixed")
    groups = [[s for s in SENTENCES if s.language == language] for language in languages]
    for group in groups:
        rng.shuffle(group)
    longest = max(len(group) for group in groups)
    interleaved = [group[i] for i in range(longest) for group in groups if i < len(group)]
    return interleaved[:count]


@dataclass(frozen=True)
class _Utterance:
    """One planned demo recording: who says what, the eSpeak seed and the wav path."""

    speaker: DemoSpeaker
    sentence: DemoSentence
    seed: int
    relative_path: Path


def _plan_utterances(sentences_per_speaker: int, seed: int) -> list[_Utterance]:
    utterances = []
    for speaker_index, speaker in enumerate(SPEAKERS):
        speaker_seed = seed * len(SPEAKERS) + speaker_index
        chosen = _choose_sentences(sentences_per_speaker, random.Random(speaker_seed))
        for index, sentence in enumerate(chosen):
            utterances.append(_Utterance(
                speaker=speaker,
                sentence=sentence,
                seed=speaker_seed * len(SENTENCES) + index,
                relative_path=Path(speaker.name) / f"{index:04d}_{sentence.language}.wav",
            ))
    return utterances


def _synthesize_all(utterances: list[_Utterance]) -> list[np.ndarray]:
    return [
        synthesize(u.sentence.text, u.speaker, u.sentence.language, u.seed) for u in utterances
    ]


def make_demo_dataset(
    out_dir: str | Path,
    sentences_per_speaker: int = DEFAULT_SENTENCES_PER_SPEAKER,
    seed: int = 0,
) -> list[Path]:
    """Write the demo speech set under ``out_dir`` and return the audio lists, one per speaker.

    For each speaker in ``SPEAKERS``: ``<out_dir>/<speaker>/NNNN_<language>.wav`` (16-bit PCM mono,
    22,050 Hz) and ``<out_dir>/<speaker>.lst`` with lines ``<speaker>/NNNN_<language>.wav<TAB>text``
    (paths relative to the list's folder). The same arguments give byte-identical files.

    eSpeak NG keeps wave-generator state (pitch flutter phase) from one utterance to the next and
    offers no way to reset it, so the synthesis runs in a freshly spawned process: every call then
    starts from the same library state.
    """
    if not 1 <= sentences_per_speaker <= len(SENTENCES):
        raise DataError(
            f"sentences_per_speaker={sentences_per_speaker} is out of range: the built-in demo "
            f"set has {len(SENTENCES)} sentences. Choose a number from 1 to {len(SENTENCES)}."
        )
    out_dir = Path(out_dir)
    utterances = _plan_utterances(sentences_per_speaker, seed)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as worker:
        recordings = worker.submit(_synthesize_all, utterances).result()
    list_paths = []
    for speaker in SPEAKERS:
        (out_dir / speaker.name).mkdir(parents=True, exist_ok=True)
        lines = []
        for utterance, samples in zip(utterances, recordings):
            if utterance.speaker == speaker:
                sf.write(out_dir / utterance.relative_path, samples, SAMPLE_RATE, subtype="PCM_16")
                lines.append(f"{utterance.relative_path.as_posix()}\t{utterance.sentence.text}\n")
        list_path = out_dir / f"{speaker.name}.lst"
        list_path.write_text("".join(lines), encoding="utf-8")
        logger.info("Wrote %d utterances of %s to %s", len(lines), speaker.name, list_path)
        list_paths.append(list_path)
    return list_paths
