"""Read the semantic front's files strictly, with errors that say where each file comes from.

- ``hf_cache/semantic_codec_model.safetensors`` (IndexTTS-2, from ``amphion/MaskGCT``) and
  ``codec.pth`` (IndexTTS-2.5, ``{"model": state_dict}``, in the release itself): the semantic codec;
- ``wav2vec2bert_stats.pt``: ``{"mean": (C,), "var": (C,)}`` of the w2v-BERT hidden state.

Files are read with safetensors or ``torch.load(weights_only=True)``; nothing is downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from indextts.bigvgan.models import fold_weight_norm, unfold_weight_norm
from indextts.checkpoints import read_tensors, shape_mismatch, tensor_shapes
from indextts.errors import CheckpointError
from indextts.releases import MASKGCT_CODEC, W2V_BERT, missing_file_error
from indextts.v2.semantic.codec import SemanticCodec, SemanticCodecDims

logger = logging.getLogger(__name__)

def _codec_state_dict(path: Path) -> dict[str, torch.Tensor]:
    content = read_tensors(path, "semantic codec")
    if isinstance(content, Mapping) and isinstance(content.get("model"), Mapping):
        content = content["model"]
    if not isinstance(content, Mapping) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise CheckpointError(
            f"The semantic codec {path} is not a state dict (names -> tensors, optionally under 'model'). "
            "Check that it is the MaskGCT semantic_codec/model.safetensors or the IndexTTS-2.5 codec.pth.")
    return {name: tensor.float() for name, tensor in content.items()}


def stored_codec_shapes(dims: SemanticCodecDims) -> dict[str, tuple[int, ...]]:
    """Names and shapes a codec checkpoint of ``dims`` holds (weight norm as ``weight_g`` / ``weight_v``)."""
    with torch.device("meta"):
        model = SemanticCodec(dims)
    return tensor_shapes(unfold_weight_norm(model.state_dict(), model.weight_norm_modules()))


def _check_codec_names(found: Mapping[str, torch.Tensor], dims: SemanticCodecDims, path: Path) -> None:
    problems = shape_mismatch(found, stored_codec_shapes(dims))
    if not problems:
        return
    raise CheckpointError(
        f"The semantic codec {path} does not fit the config's semantic_codec section {dims}: "
        f"{problems}. Check that the config belongs to this codec (IndexTTS-2 uses the MaskGCT "
        "codec with downsample_scale 1, IndexTTS-2.5 its codec.pth with downsample_scale 2).")


def load_semantic_codec(path: str | Path, dims: SemanticCodecDims, device: str | torch.device = "cpu"
                        ) -> SemanticCodec:
    """Load a codec file strictly into the codec ``dims`` describes; weight norm folded; eval mode."""
    path = Path(path)
    if not path.is_file():
        if path.suffix == ".safetensors":  # MaskGCT's codec, which IndexTTS-2 uses
            raise missing_file_error(path, "semantic codec", "2", MASKGCT_CODEC)
        raise missing_file_error(path, "semantic codec", "2.5")
    state_dict = _codec_state_dict(path)
    _check_codec_names(state_dict, dims, path)
    with torch.device("meta"):
        model = SemanticCodec(dims)
    model.load_state_dict(fold_weight_norm(state_dict, model.weight_norm_modules()), strict=True, assign=True)
    logger.info("Loaded the semantic codec from %s", path)
    return model.to(device).eval()


def load_w2v_stats(path: str | Path, version: str = "2") -> tuple[torch.Tensor, torch.Tensor]:
    """``wav2vec2bert_stats.pt`` -> (mean (C,), std (C,)), std = sqrt(var) as the reference takes it.

    ``version``: the release a missing file is fetched with (``indextts download <version>``).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path, "w2v-BERT statistics file", version)
    stats = read_tensors(path, "w2v-BERT statistics file")
    if not (isinstance(stats, Mapping) and all(isinstance(stats.get(k), torch.Tensor) for k in ("mean", "var"))):
        raise CheckpointError(
            f"The w2v-BERT statistics file {path} must hold the tensors 'mean' and 'var' (one value per "
            "feature channel). Take wav2vec2bert_stats.pt from the IndexTTS-2 release.")
    return stats["mean"].float(), torch.sqrt(stats["var"].float())


def w2v_bert_files(folder: str | Path) -> Path:
    """The w2v-BERT folder, after checking it holds the three files transformers reads."""
    folder = Path(folder)
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise missing_file_error(folder / name, "w2v-BERT file", "2", W2V_BERT)
    return folder
