"""The teacher's recordings written as extracted data, by extraction's own writers (any model family).

Shared by benchmarks/learning_recovery.py (IndexTTS 1.5) and learning_recovery_v2.py (IndexTTS-2):
per utterance codes, a condition (the voice's plus small noise), for IndexTTS-2 an emotion vector,
a speech-like wav standing in for the audio, then manifests split by extraction's seeded rule and
speaker_info.json entries (with the family fields for generation 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
import torch

from indextts.atomic_files import write_npy_atomic
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.contracts import speaker_info
from indextts.contracts.audio_list import SpeakerList, Utterance
from indextts.extraction import outputs
from indextts.extraction.generations import extraction_family
from indextts.extraction.speaker_files import SpeakerAssembler, SpeakerSettings
from indextts.tiny import synthetic_speechlike_audio

CONDITION_NOISE = 0.1  # per-utterance condition (and emotion) noise, relative to their std (1)


@dataclass
class TeacherVoice:
    """One teacher voice: its condition (R, D), emotion (D,) for IndexTTS-2, texts and greedy codes."""

    name: str
    condition: torch.Tensor
    texts: list[str]
    codes: list[np.ndarray] = field(default_factory=list)
    emotion: torch.Tensor | None = None


def write_audio(path: Path, seconds: float, sample_rate: int, generator: torch.Generator) -> None:
    """A speech-like wav standing in for the recording (training reads the medoid's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, synthetic_speechlike_audio(seconds, generator).numpy(), sample_rate)


def _noisy(vector: torch.Tensor, generator: torch.Generator) -> np.ndarray:
    """``vector`` plus ``CONDITION_NOISE`` Gaussian noise, as float32."""
    return (vector + CONDITION_NOISE * torch.randn(vector.shape, generator=generator)).numpy().astype(np.float32)


def _write_voice(root: Path, audio_root: Path, family, seconds_per_code: float, voice: TeacherVoice,
                 generator: torch.Generator) -> tuple[SpeakerList, list[dict]]:
    """One voice's per-utterance files (codes, condition, emotion, audio) and its audio list."""
    paths, counter = outputs.SpeakerPaths(root, voice.name), family.text_counter()
    speaker_list, records = SpeakerList(voice.name, audio_root / f"{voice.name}.lst"), []
    for index, (text, codes) in enumerate(zip(voice.texts, voice.codes)):
        uid, seconds = f"{voice.name}_{index:05d}", len(codes) * seconds_per_code
        audio = audio_root / voice.name / f"{uid}.wav"
        write_audio(audio, seconds, family.sample_rate, generator)
        write_npy_atomic(paths.codes(uid), codes.astype(np.int32))
        write_npy_atomic(paths.condition(uid), _noisy(voice.condition, generator))
        if voice.emotion is not None:
            write_npy_atomic(paths.emotion(uid), _noisy(voice.emotion, generator))
        speaker_list.utterances.append(Utterance(voice.name, uid, audio, text, speaker_list.list_path, index + 1,
                                                 f"{audio}\t{text}"))
        records.append({"status": "done", "duration": seconds, "num_codes": len(codes),
                        "num_text_tokens": counter.count(text).num_tokens, "special_tokens": []})
    speaker_list.list_path.write_text("".join(u.line + "\n" for u in speaker_list.utterances), encoding="utf-8")
    return speaker_list, records


def write_extracted_data(root: Path, audio_root: Path, base: CheckpointFolder, voices: list[TeacherVoice],
                         heldout_per_voice: int, seed: int, seconds_per_code: float) -> Path:
    """The recordings in the layout indextts-extract writes, by its own writers; returns speaker_info.json.

    Extraction's seeded split (``valid_ratio``) holds out ``heldout_per_voice`` rows of each voice;
    voices with the same texts get the same held-out texts. Generation 2 adds the emotion files and
    the family fields (family, code kind, audio rates) of ``base``'s extraction.
    """
    generator, family = torch.Generator().manual_seed(seed), extraction_family(base)
    generation_2 = base.family.generation == 2
    settings = SpeakerSettings(root, heldout_per_voice / len(voices[0].texts), seed, "euclidean", True,
                               base.identity(), with_emotions=generation_2,
                               family_fields=family.speaker_fields() if generation_2 else {})
    assembler = SpeakerAssembler(settings, set())
    entries = {voice.name: assembler.assemble(*_write_voice(root, audio_root, family, seconds_per_code, voice,
                                                            generator))[1]
               for voice in voices}
    speaker_info.merge_speaker_info(root / speaker_info.SPEAKER_INFO, entries)
    return root / speaker_info.SPEAKER_INFO
