"""The loadable files of a run (top level and inside each checkpoint).

``write_run_files(folder, ...)`` writes ``adapter/`` (PEFT format; ``adapter_config.json`` names
the base folder in ``base_model_name_or_path`` and ``adapter_model.safetensors`` carries the base
identity in its metadata), ``speakers.safetensors`` + ``speakers.json``, ``config.yaml`` and,
when special tokens were added, ``tokenizer/bpe.model``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file

from indextts.lora import LearnedConditions, TrainedSpeaker, save_speakers
from indextts.run_folder import ADAPTER_DIR, ADAPTER_WEIGHTS, RUN_CONFIG, TOKENIZER_FILE
from indextts.training.inputs import SpeakerData

SPEAKERS_ABOUT = ("speakers.safetensors: '<name>.condition' (32, D) GPT conditioning latents ((1, D) for "
                  "IndexTTS-2.5); '<name>.reference_mel' (100, F) log-mel of the medoid utterance for the vocoder "
                  "(IndexTTS-2/2.5: the (80, F) S2Mel prompt mel). IndexTTS-2/2.5 add '<name>.emotion' (D,) the "
                  "speaker's medoid emotion vector, '<name>.prompt_semantic' (Tp, C) the S2Mel prompt content "
                  "and '<name>.style' (192,) the CAMPPlus style of the medoid utterance.")


@dataclass
class RunFiles:
    """Everything the loadable run files are made of."""

    peft_model: object
    conditions: LearnedConditions
    speakers: list[SpeakerData]
    config_yaml: str  # the resolved training config + ``model`` (facts about the base), as YAML
    base_root: Path
    base_identity: dict  # CheckpointFolder.identity()
    tokenizer_path: Path | None  # the grown bpe.model when special tokens were added


def write_adapter(folder: Path, files: RunFiles) -> None:
    """PEFT's own files, with the base folder and its identity recorded for the loader's checks."""
    adapter = folder / ADAPTER_DIR
    files.peft_model.peft_config["default"].base_model_name_or_path = str(files.base_root)
    files.peft_model.save_pretrained(str(adapter), save_embedding_layers=False)
    weights = adapter / ADAPTER_WEIGHTS
    metadata = {"format": "pt", **{f"base_{key}": value for key, value in files.base_identity.items()}}
    save_file(load_file(str(weights)), str(weights), metadata=metadata)


def trained_speaker(speaker: SpeakerData, condition) -> TrainedSpeaker:
    """What inference needs of ``speaker`` with its trained ``condition`` (IndexTTS-2/2.5: emotion and prompt too)."""
    if speaker.prompt is None:
        return TrainedSpeaker(condition, speaker.reference_mel)
    prompt = speaker.prompt
    return TrainedSpeaker(condition, prompt.mel, emotion=speaker.emotion, prompt_semantic=prompt.semantic,
                          style=prompt.style)


def write_run_files(folder: Path, files: RunFiles, step: int) -> None:
    """Write a loadable run (adapter, speakers, config, tokenizer) into ``folder``."""
    write_adapter(folder, files)
    conditions = files.conditions.as_dict()
    trained = {s.name: trained_speaker(s, conditions[s.name]) for s in files.speakers}
    info = {"speakers": [{"name": s.name, "index": s.index, "medoid_uid": s.medoid_uid,
                          "medoid_audio": str(s.medoid_audio),
                          "condition_trained": files.conditions.latents.requires_grad} for s in files.speakers],
            "step": step, "about": SPEAKERS_ABOUT}
    save_speakers(folder, trained, info)
    (folder / RUN_CONFIG).write_text(files.config_yaml, encoding="utf-8")
    if files.tokenizer_path is not None and files.tokenizer_path != folder / TOKENIZER_FILE:
        (folder / TOKENIZER_FILE).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(files.tokenizer_path, folder / TOKENIZER_FILE)
