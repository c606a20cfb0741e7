"""Loading an IndexTTS-2 / 2.5 ``gpt.pth`` strictly, with a missing file explained.

Kept apart from the model so that ``indextts.checkpoints`` (which builds ``UnifiedVoiceV2`` for
``GPTV2Dims``) and the model do not import each other.
"""

from __future__ import annotations

from pathlib import Path

import torch

from indextts.checkpoints import load_model
from indextts.families import FAMILIES
from indextts.releases import missing_file_error
from indextts.v2.gpt.dims import GPTV2Dims, speaker_mode_of
from indextts.v2.gpt.model import UnifiedVoiceV2

RELEASE_OF_MODE = {speaker_mode_of(family): family.version for family in FAMILIES.values() if family.generation == 2}
"""The release (an ``indextts download`` version) whose ``gpt.pth`` has each speaker mode."""


def load_gpt_v2(path: str | Path, dims: GPTV2Dims, device: str | torch.device = "cpu",
                config_source: str | Path = "the model config") -> UnifiedVoiceV2:
    """Load an IndexTTS-2 / 2.5 ``gpt.pth`` (``{"model": state_dict}``) strictly; eval mode, float32.

    Read with ``torch.load(weights_only=True)``; names and shapes are checked against ``dims`` first.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, "GPT checkpoint", RELEASE_OF_MODE[dims.spk_cond_mode])
    return load_model(path, dims, device, config_source)
