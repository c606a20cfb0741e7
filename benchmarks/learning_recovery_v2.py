"""Teacher-student recovery for IndexTTS-2: evidence that LoRA fine-tuning learns a voice of the new family.

The IndexTTS-2 counterpart of learning_recovery.py (whose reshaped base, teacher LoRA, texts, greedy
decoding, training and figures it reuses): the tiny IndexTTS-2 folder, reshaped as the 1.5 base is;
a teacher folder whose GPT is that base plus a random LoRA (merged); per voice a random speaker
condition (32, D) and emotion vector (D,). The teacher speaks each voice by name through
``IndexTTS.from_pretrained`` (its S2Mel prompt encoded from one speech-like clip); its greedy semantic
codes are the recordings, written with extraction's own writers (semantic code kind, conditions,
emotions, speaker_info entries with the family fields). ``run_training`` trains a student; the codes
of ``IndexTTS.from_run`` (by speaker name) and of ``export_merged``'s folder are compared with the
teacher's. Only codes are compared: the acoustic stages (S2Mel, BigVGAN) are not trained.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.lora import TrainedSpeaker
from indextts.v2.prompt import ClipEncoder, SpeakerPrompt
from indextts.v2.tiny import write_tiny_v2_folder
from learning_recordings import TeacherVoice, write_audio, write_extracted_data  # noqa: E402  (sibling module)
from learning_recovery import SHORT_TRAINING, TEACHER_RANK, RecoveryConfig, greedy_options, \
    make_teacher_gpt, make_texts, measure, read_splits, recovery_report, reshape_base_gpt, speak, train_student, \
    training_deadline

SEMANTIC_CODES_PER_SECOND = 50.0  # IndexTTS-2's w2v-BERT features (16 kHz, stride 2 over 100 Hz frames)
PROMPT_SECONDS = 3.0

PRESETS_V2 = {
    "2": RecoveryConfig(size="2", voices=2, texts_per_voice=40, heldout_per_voice=8, codes_per_text=24, epochs=10,
                        train_overrides=(*SHORT_TRAINING, "data.min_duration=0.1")),
}
"""The test's run on the tiny IndexTTS-2 folder: two voices trained in one run (24 codes are 0.48 s of speech,
below the packaged ``data.min_duration``)."""


def write_learning_base_v2(out_dir: Path, version: str = "2", seed: int = 0) -> Path:
    """The tiny IndexTTS-2 folder with its GPT reshaped as learning_recovery's 1.5 base is."""
    write_tiny_v2_folder(out_dir, version, seed)
    models = CheckpointFolder(out_dir).v2
    gpt = models.load_gpt("cpu")
    reshape_base_gpt(gpt, torch.Generator().manual_seed(seed + 1))
    torch.save({"model": gpt.state_dict()}, models.paths.gpt)
    return Path(out_dir)


def write_teacher_folder(base_dir: Path, teacher_dir: Path, seed: int) -> Path:
    """A copy of the base whose GPT carries a random rank-``TEACHER_RANK`` LoRA, merged."""
    shutil.copytree(base_dir, teacher_dir)
    models = CheckpointFolder(teacher_dir).v2
    teacher = make_teacher_gpt(models.load_gpt("cpu"), TEACHER_RANK, 2.0 * TEACHER_RANK, seed)
    torch.save({"model": teacher.state_dict()}, models.paths.gpt)
    return teacher_dir


def encode_prompt(folder: CheckpointFolder, clip: Path, seed: int) -> SpeakerPrompt:
    """The S2Mel prompt of a speech-like clip (the acoustics only: the codes do not depend on it)."""
    write_audio(clip, PROMPT_SECONDS, 16000, torch.Generator().manual_seed(seed))
    return ClipEncoder.from_models(folder.v2).encode(clip).prompt


def make_voices_v2(config: RecoveryConfig, folder: CheckpointFolder) -> list[TeacherVoice]:
    """``config.voices`` voices with random conditions (R, D) and emotions (D,), std 1, reading the same texts."""
    generator = torch.Generator().manual_seed(config.seed + 2)
    dim, rows = int(folder.cfg.gpt.model_dim), int(folder.v2.gpt_dims.condition_num_latent)
    texts = make_texts(config.texts_per_voice, config.seed)
    return [TeacherVoice(f"voice_{chr(ord('a') + index)}", torch.randn(rows, dim, generator=generator), texts,
                         emotion=torch.randn(dim, generator=generator))
            for index in range(config.voices)]


def record_teacher_v2(teacher_dir: Path, voices: list[TeacherVoice], prompt: SpeakerPrompt,
                      options: SynthesisOptions, device: str) -> None:
    """Fill each voice's ``codes`` with the teacher folder's greedy codes of its texts, spoken by name."""
    tts = IndexTTS.from_pretrained(teacher_dir, device=device)
    tts.add_speakers("teacher", {v.name: TrainedSpeaker(v.condition, prompt.mel, emotion=v.emotion,
                                                         prompt_semantic=prompt.semantic, style=prompt.style)
                                 for v in voices})
    for voice in voices:
        voice.codes = speak(tts, f"teacher:{voice.name}", voice.texts, options)


def run_recovery_v2(config: RecoveryConfig, work: Path) -> dict:
    """The whole IndexTTS-2 check in ``work``: base, teacher, recordings, training, measurement; the report."""
    started = time.perf_counter()
    base_dir = write_learning_base_v2(work / "base", config.size, config.seed)
    base = CheckpointFolder(base_dir)
    teacher_dir = write_teacher_folder(base_dir, work / "teacher", config.seed + 3)
    voices, options = make_voices_v2(config, base), greedy_options(config.codes_per_text)
    record_teacher_v2(teacher_dir, voices, encode_prompt(base, work / "prompt.wav", config.seed), options,
                      config.device)
    recorded = time.perf_counter()
    info = write_extracted_data(work / "data", work / "audio", base, voices, config.heldout_per_voice, config.seed,
                                1.0 / SEMANTIC_CODES_PER_SECOND)
    training = train_student(base_dir, info, work / "run", config, training_deadline(config, started, recorded))
    trained = time.perf_counter()
    splits = read_splits(info, config.heldout_per_voice)
    voices_report = measure(work / "run", base_dir, work / "export", splits, options, config.device)
    return recovery_report(config, voices_report, training, (started, recorded, trained))
