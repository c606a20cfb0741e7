"""Strict loading of IndexTTS-2's ``s2mel.pth``.

The file is ``{"net": {"cfm": state_dict, "length_regulator": state_dict, "gpt_layer": state_dict}, ...}``
(other top-level entries, such as training state, are ignored; a DDP ``module.`` prefix is dropped as
the reference does). Weight-normed layers are stored as ``weight_g`` / ``weight_v`` and folded on load.
The file is read with ``weights_only=True``; its names and shapes must equal the model's exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from indextts.bigvgan.models import fold_weight_norm, unfold_weight_norm, weight_norm_module_names
from indextts.checkpoints import read_tensors, shape_mismatch, tensor_shapes, to_float32
from indextts.errors import CheckpointError
from indextts.releases import missing_file_error
from indextts.v2.s2mel.dims import S2MelDims
from indextts.v2.s2mel.model import S2Mel

logger = logging.getLogger(__name__)

NET_KEY = "net"
DDP_PREFIX = "module."


def stored_state_dict(model: S2Mel) -> dict[str, dict[str, torch.Tensor]]:
    """The model's weights in the file layout: part name -> state dict with weight_g / weight_v."""
    flat = unfold_weight_norm(model.state_dict(), weight_norm_module_names(model))
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in flat.items():
        part, _, rest = name.partition(".")
        parts.setdefault(part, {})[rest] = tensor
    return parts


def _flatten_parts(content, path: Path) -> dict[str, torch.Tensor]:
    """``{"net": {part: {name: tensor}}}`` -> ``{"part.name": tensor}`` (float32), DDP prefixes dropped."""
    net = content.get(NET_KEY) if isinstance(content, Mapping) else None
    if not isinstance(net, Mapping) or not all(isinstance(part, Mapping) for part in net.values()):
        raise CheckpointError(
            f"The s2mel checkpoint {path} is not in the IndexTTS-2 layout (a dict whose 'net' entry maps "
            "'cfm', 'length_regulator' and 'gpt_layer' to state dicts). Check that the file is the "
            "s2mel.pth of an IndexTTS-2 or 2.5 release.")
    return to_float32({f"{part}.{name.removeprefix(DDP_PREFIX)}": tensor
                       for part, state in net.items() for name, tensor in state.items()})


def expected_shapes(dims: S2MelDims, with_gpt_layer: bool = True) -> dict[str, tuple[int, ...]]:
    """Names ("part.name") and shapes an s2mel.pth for ``dims`` holds, from a model built on ``meta``."""
    with torch.device("meta"):
        model = S2Mel(dims, with_gpt_layer)
    return tensor_shapes({f"{part}.{name}": t for part, state in stored_state_dict(model).items()
                          for name, t in state.items()})


def load_s2mel(path: str | Path, dims: S2MelDims, with_gpt_layer: bool = True,
               device: str | torch.device = "cpu") -> S2Mel:
    """Load ``s2mel.pth`` strictly into the S2Mel ``dims`` describes; eval mode, float32.

    ``with_gpt_layer``: IndexTTS-2 has a gpt_layer, 2.5 none.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, "s2mel checkpoint", "2" if with_gpt_layer else "2.5")
    state_dict = _flatten_parts(read_tensors(path, "s2mel checkpoint"), path)
    problems = shape_mismatch(state_dict, expected_shapes(dims, with_gpt_layer))
    if problems:
        raise CheckpointError(
            f"The s2mel checkpoint {path} does not fit the s2mel section of the model config: "
            f"{problems}. Check that the model config belongs to these "
            "weights (IndexTTS-2 and 2.5 differ: 2.5 has no gpt_layer).")
    model = S2Mel(dims, with_gpt_layer)
    model.load_state_dict(fold_weight_norm(state_dict, weight_norm_module_names(model)), strict=True)
    logger.info("Loaded s2mel weights from %s", path)
    return model.to(device).eval()
