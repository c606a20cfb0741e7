"""Strict loading of the three IndexTTS weight files, with errors that say what to fix.

The loaders take a resolved file path and the model's dims (``indextts.dims``); a base folder is
opened, its config read and its files resolved by ``indextts.checkpoint_folder.CheckpointFolder``.

``gpt.pth`` is ``{"model": state_dict}`` (or a plain state dict), ``dvae.pth`` a plain state dict
(or ``{"model": ...}``), ``bigvgan_generator.pth`` ``{"generator": state_dict}`` with weight norm
stored as ``weight_g`` / ``weight_v``. Files are read with ``torch.load(weights_only=True)`` by
:func:`read_tensors`, the one reader of weight files (the IndexTTS-2/2.5 loaders use it too; it also
reads safetensors).

Before any weights are allocated, the file's tensor names and shapes are compared with the model
the dims describe (built on the ``meta`` device, which costs no memory). On a mismatch the
error names the file, the first missing / unexpected / mis-shaped tensors, and the release config
that fits the file when it is an IndexTTS-1.5 or 1.0 checkpoint paired with the other config.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from indextts.bigvgan import BigVGAN, fold_weight_norm
from indextts.config import RELEASE_CONFIGS
from indextts.checkpoint_folder.layout import CONFIG_FILENAME
from indextts.dims import BigVGANDims, DVAEDims, GPTDims, SectionDims
from indextts.dvae.model import DiscreteVAE
from indextts.errors import CheckpointError, ConfigError
from indextts.v2.gpt.dims import GPTV2Dims

logger = logging.getLogger(__name__)

KINDS = ("gpt", "dvae", "bigvgan")
WRAPPER_KEYS = {"gpt": ("model",), "dvae": ("model",), "bigvgan": ("generator", "model")}
LISTED_NAMES = 5


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def read_tensors(path: str | Path, what: str):
    """A safetensors file, or a ``torch.load(weights_only=True)`` object, read on the CPU.

    ``what`` names the file in errors ("gpt checkpoint", "emotion matrix"). A file that holds anything
    but tensors and plain containers, or that is truncated or corrupt, raises CheckpointError. The
    caller checks that the file exists, so that a missing one gets its release's advice.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"The {what} {path} holds objects other than tensors, so it is not loaded (only plain tensors "
            f"are read, for safety): {_first_line(error)}. Re-save it as a plain state dict with "
            "torch.save(model.state_dict(), path).") from error
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"Cannot read the {what} {path}: the file is truncated or corrupt "
            f"({_first_line(error)}). Download or copy it again.") from error


def _first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type for an error without one (an empty file's EOFError)."""
    return (str(error).splitlines() or [type(error).__name__])[0]


def load_state_dict(path: str | Path, kind: str) -> dict[str, torch.Tensor]:
    """Read a weight file of ``kind`` ("gpt", "dvae" or "bigvgan") as a plain name -> tensor dict.

    Unwraps ``{"model": ...}`` / ``{"generator": ...}``; raises CheckpointError when the file is
    missing, truncated, not a PyTorch file, or holds anything but tensors.
    """
    _check_kind(kind)
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"The {kind} checkpoint {path} does not exist. Download the IndexTTS release files (gpt.pth, "
            "dvae.pth, bigvgan_generator.pth, bpe.model) into the model folder (`indextts download 1.5 --dir "
            "DIR`), or write a tiny test folder with `python -m indextts.cli.tiny DIR`.")
    content = read_tensors(path, f"{kind} checkpoint")
    if isinstance(content, Mapping):
        for key in WRAPPER_KEYS[kind]:
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if not isinstance(content, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items()
    ):
        raise CheckpointError(
            f"The {kind} checkpoint {path} is not a state dict (a mapping of names to tensors, "
            f"optionally under {' or '.join(repr(k) for k in WRAPPER_KEYS[kind])}). Check that the "
            "file is the IndexTTS release file of that name."
        )
    return dict(content)


def build_model(dims: SectionDims) -> nn.Module:
    """Construct the model ``dims`` describes (on the current default device)."""
    if isinstance(dims, GPTV2Dims):
        from indextts.v2.gpt.model import UnifiedVoiceV2

        return UnifiedVoiceV2(dims)
    if isinstance(dims, GPTDims):
        from indextts.gpt.model import UnifiedVoice

        return UnifiedVoice(dims)
    if isinstance(dims, DVAEDims):
        return DiscreteVAE(dims)
    if isinstance(dims, BigVGANDims):
        return BigVGAN(dims)
    raise TypeError(f"no model is built from {type(dims).__name__}")


def _stored_state_dict(model: nn.Module) -> Mapping[str, torch.Tensor]:
    return model.stored_state_dict() if isinstance(model, BigVGAN) else model.state_dict()


def _meta_model(dims: SectionDims) -> nn.Module:
    with torch.device("meta"):
        return build_model(dims)


def tensor_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in ``state_dict``."""
    return {name: tuple(t.shape) for name, t in state_dict.items()}


def shape_mismatch(state_dict: Mapping[str, torch.Tensor], wanted: Mapping[str, tuple[int, ...]]) -> str:
    """Why ``state_dict`` does not hold exactly the names and shapes ``wanted`` (``describe_differences``,
    joined by "; "); "" when it does."""
    return "; ".join(describe_differences(tensor_shapes(state_dict), wanted))


def expected_shapes(dims: SectionDims) -> dict[str, tuple[int, ...]]:
    """Names and shapes a checkpoint of the model ``dims`` describes must hold, in the on-disk layout."""
    return tensor_shapes(_stored_state_dict(_meta_model(dims)))


def describe_differences(found: Mapping[str, tuple], wanted: Mapping[str, tuple]) -> list[str]:
    """Phrases naming the tensors missing from, unexpected in, or mis-shaped in ``found`` against ``wanted``."""
    missing = [n for n in wanted if n not in found]
    unexpected = [n for n in found if n not in wanted]
    misshaped = [n for n in wanted if n in found and tuple(found[n]) != tuple(wanted[n])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensors missing ({', '.join(missing[:LISTED_NAMES])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensors ({', '.join(unexpected[:LISTED_NAMES])})")
    if misshaped:
        shapes = [f"{n} is {list(found[n])} in the file but {list(wanted[n])} in the config"
                  for n in misshaped[:LISTED_NAMES]]
        parts.append(f"{len(misshaped)} tensors with another shape ({'; '.join(shapes)})")
    return parts


def _fitting_release(found: Mapping[str, tuple], dims: SectionDims) -> str | None:
    """The release config file whose model of ``dims``'s kind has exactly the file's names and shapes."""
    for path in RELEASE_CONFIGS.values():
        if not path.is_file():
            continue
        try:  # a release config of another family lacks keys of this dims class
            release = type(dims).from_config(OmegaConf.load(path))
            if release != dims and expected_shapes(release) == dict(found):
                return str(path)
        except (ConfigError, TypeError):
            continue
    return None


def check_state_dict(state_dict: Mapping[str, torch.Tensor], dims: SectionDims, source: str | Path,
                     config_source: str | Path = "the model config",
                     wanted: Mapping[str, tuple[int, ...]] | None = None) -> None:
    """Raise CheckpointError unless ``state_dict`` has exactly the names and shapes ``dims`` implies.

    ``wanted`` (the expected names and shapes) is computed from ``dims`` when not given.
    """
    found = tensor_shapes(state_dict)
    wanted = expected_shapes(dims) if wanted is None else dict(wanted)
    if found == wanted:
        return
    problems = describe_differences(found, wanted)
    message = (f"The {dims.kind} checkpoint {source} does not fit the model described by {config_source}: "
               f"{'; '.join(problems)}.")
    release = _fitting_release(found, dims)
    if release is not None:
        message += (f" The file matches the release config {release}: copy that file as {CONFIG_FILENAME} "
                    "into the model folder (or pass it as the config).")
    else:
        message += (f" Check that {CONFIG_FILENAME} belongs to these weights (IndexTTS-1.5 and 1.0 need "
                    "different configs) and that the file is not from another model.")
    raise CheckpointError(message)


def to_float32(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with its floating-point tensors in float32 (integer buffers kept)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def _has_meta_tensors(model: nn.Module) -> bool:
    """True when anything (parameter, buffer or plain tensor attribute) is still on ``meta``."""
    for module in model.modules():
        tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        tensors += [v for v in vars(module).values() if isinstance(v, torch.Tensor)]
        if any(t.is_meta for t in tensors):
            return True
    return False


def load_model(path: str | Path, dims: SectionDims, device: str | torch.device = "cpu",
               config_source: str | Path = "the model config") -> nn.Module:
    """Load the weight file ``path`` strictly into the model ``dims`` describes; eval mode, float32.

    ``config_source`` names where ``dims`` were read, for the error on a mismatch.
    """
    state_dict = to_float32(load_state_dict(path, dims.kind))
    # Build without allocating random weights, check the names and shapes, adopt the loaded tensors.
    model = _meta_model(dims)
    check_state_dict(state_dict, dims, path, config_source, tensor_shapes(_stored_state_dict(model)))
    if isinstance(model, BigVGAN):
        state_dict = fold_weight_norm(state_dict, model.weight_norm_modules())
    model.load_state_dict(state_dict, strict=True, assign=True)
    if _has_meta_tensors(model):
        model = build_model(dims)
        model.load_state_dict(state_dict, strict=True)
    logger.info("Loaded %s weights from %s", dims.kind, path)
    return model.to(device).eval()


def load_speech_models(paths, dims, device: str | torch.device = "cpu",
                       config_source: str | Path = "the model config") -> tuple[nn.Module, nn.Module, object]:
    """The GPT and the vocoder of a base folder's ``paths`` (``BaseFiles``), strictly loaded, and its
    text tokenizer: everything synthesis needs, in one call."""
    from indextts.text import TextTokenizer

    gpt = load_model(paths.gpt, dims.gpt, device, config_source)
    return gpt, load_model(paths.bigvgan, dims.bigvgan, device, config_source), TextTokenizer(paths.bpe)
