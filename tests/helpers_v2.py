"""Training runs on IndexTTS-2 / 2.5 bases without training, for the tests of loading and export.

``write_v2_run`` writes the layout ``indextts-train`` writes (``indextts.training.artifacts``):
``adapter/`` through the trainer's own ``write_adapter`` (PEFT files, base identity in the
metadata), ``speakers.safetensors`` + ``speakers.json`` with the IndexTTS-2 fields, and
``config.yaml`` with ``model_dir`` and the ``model`` facts of the trainer's ``_base_facts``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from indextts.checkpoint_folder import CheckpointFolder
from indextts.lora import TrainedSpeaker, add_lora, describe_base, make_lora_config, save_speakers
from indextts.run_folder import RUN_CONFIG
from indextts.training.artifacts import RunFiles, write_adapter

PROMPT_FRAMES = 12
"""Frames of the random S2Mel prompt (mel and content features) of each speaker."""
LORA_RANK = 4


def random_v2_speaker(folder: CheckpointFolder, generator: torch.Generator) -> TrainedSpeaker:
    """A speaker with every IndexTTS-2 field, shaped as extraction and the prompt encoder make them."""
    cfg, dim = folder.cfg, int(folder.cfg.gpt.model_dim)
    rows = 1 if folder.family.multilingual else int(folder.v2.gpt_dims.condition_num_latent)
    content = int(cfg.s2mel.length_regulator.in_channels)
    return TrainedSpeaker(condition=torch.randn(rows, dim, generator=generator),
                          reference_mel=torch.randn(int(cfg.s2mel.preprocess_params.spect_params.n_mels),
                                                    PROMPT_FRAMES, generator=generator),
                          emotion=torch.randn(dim, generator=generator),
                          prompt_semantic=torch.randn(PROMPT_FRAMES, content, generator=generator),
                          style=torch.randn(int(cfg.campplus.embedding_size), generator=generator))


def write_v2_run(run_dir: Path, model_dir: Path, seed: int = 0, speakers=("alice", "bob")) -> Path:
    """A run on the IndexTTS-2 / 2.5 base ``model_dir``: LoRA (r=4) on the default targets with random
    non-zero ``lora_A`` and ``lora_B`` (so merging changes the weights), random v2 speakers."""
    base = CheckpointFolder(model_dir)
    gpt = base.load_gpt()
    facts = {"family": base.family.version, **describe_base(gpt), "base_text_vocab_size": int(gpt.text_vocab_size),
             "new_token_ids": [], "base": base.identity()}
    peft_model = add_lora(gpt, make_lora_config(r=LORA_RANK, alpha=2 * LORA_RANK, dropout=0.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:  # lora_B starts at zero: perturb so that the adapter changes the weights
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    config = OmegaConf.create({"model_dir": str(base.root), "model": facts})
    write_adapter(run_dir, RunFiles(peft_model=peft_model, conditions=None, speakers=[],
                                    config_yaml=OmegaConf.to_yaml(config), base_root=base.root,
                                    base_identity=base.identity(), tokenizer_path=None))
    trained = {name: random_v2_speaker(base, generator) for name in speakers}
    save_speakers(run_dir, trained, {"speakers": [{"name": name} for name in speakers]})
    (run_dir / RUN_CONFIG).write_text(OmegaConf.to_yaml(config), encoding="utf-8")
    return run_dir
