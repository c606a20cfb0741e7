"""Training runs as adapters of one base GPT: reading a run folder, checking that it fits the base,
and turning its LoRA adapter into a weight patch that can be put on and taken off the base in place.

A run folder (written by train.py) holds ``adapter/`` in PEFT's format (``adapter_config.json`` +
``adapter_model.safetensors``), ``speakers.safetensors`` + ``speakers.json``, ``config.yaml``
whose ``model`` section describes the base (shapes, and since the identity contract
``model.base = {"gpt_sha256", "bpe_sha256"}`` of :meth:`CheckpointFolder.identity`), and
``tokenizer/bpe.model`` when training added special tokens.

Family: ``model.family`` names the base's release ("1.0", "1.5", "2", "2.5"; runs without it are
1.x runs); a run is refused on a base of another family before its shapes are compared.

Identity: a run trained on a base of the same shapes but other weights, or with another
``bpe.model``, is refused (both fingerprints named) unless ``allow_base_mismatch`` is set;
runs written before the fingerprint existed load with a one-line notice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import PeftModel
from peft.tuners.lora import LoraLayer
from peft.tuners.trainable_tokens import TrainableTokensLayer
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.errors import CheckpointError
from indextts.lora import TrainedSpeaker, describe_base
from indextts.run_folder import (
    ADAPTER_CONFIG,
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    RUN_CONFIG,
    SPEAKERS_FILE,
    TOKENIZER_FILE,
    RunFolder,
)

logger = logging.getLogger(__name__)

GENERATION_1 = "1.x"
"""The family of runs whose ``model`` facts name none, and of a 1.0/1.5 GPT given without its folder."""
IDENTITY_KEYS = {"gpt_sha256": "GPT weights (gpt.pth)", "bpe_sha256": "tokenizer (bpe.model)"}
@dataclass
class LowRankDelta:
    """One LoRA-adapted weight: delta = scaling * B @ A, transposed for GPT-2's Conv1D (fan_in_fan_out)."""

    down: torch.Tensor  # A (r, in)
    up: torch.Tensor  # B (out, r)
    scaling: float
    fan_in_fan_out: bool

    def delta(self) -> torch.Tensor:
        """The dense weight change, float32, shaped like the adapted weight."""
        product = self.up.float() @ self.down.float()
        return (product.T if self.fan_in_fan_out else product) * self.scaling

    def add_to(self, base: torch.Tensor, out: torch.Tensor) -> None:
        """``out = base + delta`` in one fused matmul-add, without a dense delta in memory (a 4-8x faster switch)."""
        down, up = self.down.to(base.device, base.dtype), self.up.to(base.device, base.dtype)
        if self.fan_in_fan_out:
            torch.addmm(base, down.T, up.T, alpha=self.scaling, out=out)
        else:
            torch.addmm(base, up, down, alpha=self.scaling, out=out)


@dataclass
class WeightPatch:
    """What an adapter changes in the base GPT, keyed by parameter name.

    ``low_rank`` adds a LoRA delta to a weight; ``replaced_rows`` overwrites rows of an embedding
    (PEFT trainable tokens for special tokens) with ``(indices (K,), rows (K, D))``.
    """

    low_rank: dict[str, LowRankDelta] = field(default_factory=dict)
    replaced_rows: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def parameter_names(self) -> set[str]:
        return set(self.low_rank) | set(self.replaced_rows)

    @torch.no_grad()
    def write_into(self, key: str, original: torch.Tensor, parameter: torch.Tensor) -> None:
        """Set ``parameter`` (named ``key``) to its base value ``original`` with this patch's change."""
        if key in self.low_rank:
            self.low_rank[key].add_to(original, parameter)
        else:
            parameter.copy_(original)
        if key in self.replaced_rows:
            indices, rows = self.replaced_rows[key]
            parameter.index_copy_(0, indices.to(parameter.device), rows.to(parameter.device, parameter.dtype))

    @property
    def nbytes(self) -> int:
        """Bytes the patch keeps in memory (the adapter's own weights only)."""
        tensors = [t for d in self.low_rank.values() for t in (d.down, d.up)]
        tensors += [t for pair in self.replaced_rows.values() for t in pair]
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class TrainedRun:
    """A loaded training run: the GPT it was applied to, its speakers, tokenizer and weight patch."""

    gpt: nn.Module
    speakers: dict[str, TrainedSpeaker]
    tokenizer_path: Path | None  # the run's bpe.model when special tokens were added, else None (use the base one)
    patch: WeightPatch | None = None
    text_vocab_size: int = 0


def load_speakers(path: Path) -> dict[str, TrainedSpeaker]:
    """Read a ``speakers.safetensors`` file into name -> TrainedSpeaker."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist. A finished training run writes it; check the run "
                              "folder, or export again with indextts-export.")
    tensors = load_file(str(path))
    names = sorted({key.rsplit(".", 1)[0] for key in tensors})
    broken = [n for n in names if f"{n}.condition" not in tensors or f"{n}.reference_mel" not in tensors]
    if broken or not names:
        raise CheckpointError(f"{path} must hold '<name>.condition' and '<name>.reference_mel' for every "
                              f"speaker; incomplete: {broken or 'no speakers at all'}. Re-run or re-export the training run.")
    return {n: TrainedSpeaker(tensors[f"{n}.condition"], tensors[f"{n}.reference_mel"],
                              **{key: tensors.get(f"{n}.{key}") for key in TrainedSpeaker.V2_KEYS}) for n in names}


def read_run_model(run_dir: Path) -> dict:
    """The run's ``model`` section (base facts) after checking the run folder has every file."""
    needed = [run_dir / ADAPTER_DIR / ADAPTER_CONFIG, run_dir / ADAPTER_DIR / ADAPTER_WEIGHTS,
              run_dir / SPEAKERS_FILE, run_dir / RUN_CONFIG]
    missing = [str(p.relative_to(run_dir)) for p in needed if not p.is_file()]
    if missing:
        raise CheckpointError(f"The training run folder {run_dir} lacks {missing}. Point to a folder written by "
                              "indextts-train (runs/<name>) that has finished at least one validation or the final save.")
    run_config = RunFolder(run_dir).config()
    if "model" not in run_config:
        raise CheckpointError(f"{run_dir / RUN_CONFIG} has no 'model' section; it was not written by this "
                              "indextts-train. Re-train or point to another run folder.")
    return OmegaConf.to_container(run_config.model)


def check_shapes(run_dir: Path, run_model: dict, gpt: nn.Module, base_text_rows: int | None = None) -> None:
    """Refuse a run whose base had other shapes (width, layers, vocabularies) than ``gpt``.

    ``base_text_rows`` is the base's own text vocabulary when other runs have grown ``gpt``'s.
    """
    base = describe_base(gpt)
    if base_text_rows is not None:
        base["text_vocab_size"] = base_text_rows
    base_rows = int(run_model["base_text_vocab_size"])
    problems = [f"{key} {run_model[key]} in the run but {base[key]} in the base"
                for key in ("model_dim", "layers", "mel_vocab_size") if int(run_model[key]) != base[key]]
    if base["text_vocab_size"] not in (base_rows, int(run_model["text_vocab_size"])):
        problems.append(f"text vocabulary {base['text_vocab_size']} rows in the base but {base_rows} in the "
                        "run's base")
    if problems:
        raise CheckpointError(
            f"The adapter in {run_dir} was trained on a different base GPT: {'; '.join(problems)}. Load it with "
            f"the checkpoint folder it was trained from (model_dir in {run_dir / RUN_CONFIG}).")


def _gpt_family(gpt: nn.Module) -> str:
    """The family a loaded base GPT belongs to: "2" / "2.5" from an IndexTTS-2 GPT's speaker mode, else "1.x"."""
    from indextts.v2.gpt.loading import RELEASE_OF_MODE
    from indextts.v2.gpt.model import UnifiedVoiceV2

    return RELEASE_OF_MODE[gpt.spk_cond_mode] if isinstance(gpt, UnifiedVoiceV2) else GENERATION_1


def _same_family(trained: str, base: str) -> bool:
    """Whether a run of family ``trained`` fits a base of family ``base`` ("1.x": any IndexTTS 1.0/1.5)."""
    if GENERATION_1 in (trained, base):
        return trained.startswith("1.") and base.startswith("1.")
    return trained == base


def check_family(run_dir: Path, run_model: dict, gpt: nn.Module, base: CheckpointFolder | None = None) -> None:
    """Refuse a run trained on another model family than the base (IndexTTS-2 vs 1.5, 2 vs 2.5).

    Runs whose ``model`` facts name no ``family`` were trained on IndexTTS 1.0/1.5. Checked before
    the shapes, so that a family mismatch is never reported as a shape error.
    """
    trained = str(run_model.get("family") or GENERATION_1)
    actual = base.family.version if base is not None else _gpt_family(gpt)
    if _same_family(trained, actual):
        return
    where = base.root if base is not None else "the base GPT given"
    recorded = RunFolder(run_dir).config().get("model_dir", "not recorded")
    raise CheckpointError(
        f"The run {run_dir} was trained on an IndexTTS-{trained} base (model.family in {run_dir / RUN_CONFIG}), "
        f"but {where} holds IndexTTS-{actual}: an adapter fits only the model family it was trained on. Load it "
        f"with the base it was trained on (model_dir in its {RUN_CONFIG}: {recorded}), or pass that folder as "
        "--model_dir.")


def check_identity(run_dir: Path, run_model: dict, base: CheckpointFolder | None,
                   allow_base_mismatch: bool = False) -> None:
    """Refuse a run trained on other base weights or another bpe.model (fingerprints named).

    Runs without ``model.base`` predate the fingerprint and load with a one-line notice; with
    ``allow_base_mismatch`` a mismatch is only a warning.
    """
    recorded = run_model.get("base")
    if base is None:
        return
    if not recorded:
        logger.info("Run %s predates base fingerprints; its base identity is not checked.", run_dir)
        return
    actual = base.identity()
    differences = [f"{label}: run trained on {recorded.get(key)}, this base has {actual[key]}"
                   for key, label in IDENTITY_KEYS.items() if recorded.get(key) != actual[key]]
    if not differences:
        return
    if allow_base_mismatch:
        logger.warning("Loading %s on a base it was not trained on (%s) because allow_base_mismatch is set: the "
                       "voice may sound wrong, mispronounce text or produce silence.", run_dir, "; ".join(differences))
        return
    raise CheckpointError(
        f"The run {run_dir} was trained on another base than {base.root}: {'; '.join(differences)}. Use the "
        f"checkpoint folder it was trained from (model_dir in {run_dir / RUN_CONFIG}), or pass "
        "--allow_base_mismatch (allow_base_mismatch=True) to load it anyway.")


def _peft_model(run_dir: Path, run_model: dict, base_gpt: nn.Module) -> PeftModel:
    """PEFT's adapter wrapped around ``base_gpt`` (vocabulary grown first when the run added tokens)."""
    if base_gpt.text_vocab_size < int(run_model["text_vocab_size"]):
        base_gpt.resize_text_vocab(int(run_model["text_vocab_size"]))
    adapter_dir = run_dir / ADAPTER_DIR
    try:
        model = PeftModel.from_pretrained(base_gpt, str(adapter_dir), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"The adapter in {adapter_dir} does not fit the base GPT: {error}. Load it with the "
                              "checkpoint folder it was trained from.") from error
    try:
        _check_adapter_keys(model, adapter_dir)
    except CheckpointError:
        model.unload()  # leave the base GPT as it was: PEFT injected its layers in place
        raise
    return model.eval()


def _check_adapter_keys(model: PeftModel, adapter_dir: Path) -> None:
    """Exactly the adapter's tensors must have been loaded: none missing, none left over."""
    with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as handle:
        stored = set(handle.keys())
    # The run's vocabulary is known (config.yaml's model.text_vocab_size, applied before loading) and training
    # saves without embedding layers; "auto" would probe base_model_name_or_path for a config.json
    # (hub lookup included) and warn that it found none on every load.
    expected = set(get_peft_model_state_dict(model, save_embedding_layers=False).keys())
    if stored != expected:
        missing, extra = sorted(expected - stored)[:5], sorted(stored - expected)[:5]
        raise CheckpointError(f"The adapter in {adapter_dir} does not match its config or the base GPT: missing "
                              f"tensors {missing}, unexpected tensors {extra}. Re-export it from the run's checkpoints.")


def _weight_patch(model: PeftModel, adapter_dir: Path) -> tuple[WeightPatch, nn.Module]:
    """The LoRA factors and replaced embedding rows of PEFT's active adapter, and the unloaded base GPT.

    The patch is keyed by the base parameter names, found after PEFT's layers are unloaded (PEFT
    wraps e.g. ``text_embedding`` as ``text_embedding.token_adapter``).
    """
    low_rank, replaced, name = {}, {}, model.active_adapter
    for module in model.get_base_model().modules():
        if isinstance(module, LoraLayer) and name in module.lora_A:
            if module.use_dora.get(name, False):
                raise CheckpointError(f"The adapter in {adapter_dir} uses DoRA, which inference does not support. "
                                      "Train with plain LoRA.")
            low_rank[id(module.get_base_layer().weight)] = LowRankDelta(
                module.lora_A[name].weight.detach().clone(), module.lora_B[name].weight.detach().clone(),
                float(module.scaling[name]), bool(module.fan_in_fan_out))
        elif isinstance(module, TrainableTokensLayer) and name in module.token_indices:
            indices = torch.tensor(module.token_indices[name], dtype=torch.long)
            replaced[id(module.get_base_layer().weight)] = (indices, module.trainable_tokens_delta[name].detach().clone())
    gpt = model.unload()
    names = {id(parameter): key for key, parameter in gpt.named_parameters()}
    patch = WeightPatch({names[k]: v for k, v in low_rank.items()}, {names[k]: v for k, v in replaced.items()})
    return patch, gpt


def load_trained_run(run_dir: str | Path, base_gpt: nn.Module, merge: bool = True,
                     base: CheckpointFolder | None = None, allow_base_mismatch: bool = False,
                     patch_only: bool = False, base_text_rows: int | None = None) -> TrainedRun:
    """Apply a training run to ``base_gpt`` (a UnifiedVoice loaded strictly from the base checkpoint).

    With ``merge`` the adapter is folded into the weights and the plain UnifiedVoice is returned;
    otherwise the UnifiedVoice keeps PEFT's adapter layers (same outputs, slower). With
    ``patch_only`` the adapter is read as a :class:`WeightPatch` and ``base_gpt`` is left with its
    own weights (only its text vocabulary grows when the run added tokens). ``base`` (the folder
    ``base_gpt`` came from) enables the identity check; ``base_text_rows`` see :func:`check_shapes`. Raises CheckpointError when files are
    missing or the adapter does not fit the base.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    run_model = read_run_model(run_dir)
    check_family(run_dir, run_model, base_gpt, base)
    check_shapes(run_dir, run_model, base_gpt, base_text_rows)
    check_identity(run_dir, run_model, base, allow_base_mismatch)
    model = _peft_model(run_dir, run_model, base_gpt)
    patch = None
    if patch_only:
        patch, gpt = _weight_patch(model, run_dir / ADAPTER_DIR)
    else:
        gpt = model.merge_and_unload() if merge else model.get_base_model()
    tokenizer = run_dir / TOKENIZER_FILE
    return TrainedRun(gpt=gpt, speakers=load_speakers(run_dir / SPEAKERS_FILE),
                      tokenizer_path=tokenizer if tokenizer.is_file() else None, patch=patch,
                      text_vocab_size=int(run_model["text_vocab_size"]))
