"""LoRA fine-tuning of the IndexTTS GPT on extracted speaker data.

A ``Trainer`` follows the recipe shape ``setup`` (``_check_inputs`` -> ``_setup_run_dir`` ->
``_setup_model`` -> ``_setup_data`` -> ``_setup_optimizer`` -> ``_resume``) then ``train``, with
``_loss_step`` computing one micro-batch's loss. Every problem with the inputs is collected and
raised once as a TrainingError before any weights are loaded.

Run folder (``run_dir``)::

    config.yaml             resolved training config + ``model`` (facts about the base GPT)
    adapter/                PEFT adapter (adapter_config.json + adapter_model.safetensors)
    speakers.safetensors    "<name>.condition" (32, D), "<name>.reference_mel" (100, F)
    speakers.json           speaker list and where each reference came from
    tokenizer/bpe.model     only when special tokens were added
    train.log, metrics.jsonl, tensorboard/
    checkpoints/step_XXXXXXXX/   the above artifacts + optimizer.safetensors/.json,
                                 trainer_state.json, rng.safetensors

The top-level artifacts hold the best model by validation mel loss (the last one when there is
no validation data). Checkpoints are written to a temporary folder and renamed into place, so a
run killed at any moment resumes from its latest complete checkpoint with the same data order,
dropout masks and optimiser state, giving the same losses as an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from peft.optimizers import create_loraplus_optimizer
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from indextts.atomic_files import replace_dir_atomic, restore_replaced_dir, write_json_atomic
from indextts.config import TRAIN_CONFIG
from indextts.data import (
    Batch, CodesDataset, Example, LengthLimits, TokenBudgetBatchSampler, build_examples, collate, read_manifest,
)
from indextts.errors import ConfigError, IndexTTSError, TrainingError
from indextts.lora import (
    ADAPTER_DIR, ADAPTER_WEIGHTS, RUN_CONFIG, SPEAKERS_FILE, TOKENIZER_FILE, TrainedSpeaker,
    LearnedConditions, add_lora, base_fingerprint, describe_base, make_lora_config, save_speakers,
)

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = TRAIN_CONFIG
CHECKPOINTS_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^step_(\d{8})$")
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "trainer_state.json"
OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_META = "optimizer.json"
RNG_FILE = "rng.safetensors"
MEDOID_INFO = "medoid_info.json"
TOP_K = 10


def load_train_config(path: str | Path = DEFAULT_CONFIG, overrides: Sequence[str] = ()) -> DictConfig:
    """The training config: the YAML at ``path`` with ``key=value`` dotlist ``overrides`` applied.

    Unknown keys (typos) in the overrides raise ConfigError instead of being ignored.
    """
    path = Path(path)
    try:
        cfg = OmegaConf.load(path)
        OmegaConf.set_struct(cfg, True)
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    except FileNotFoundError as error:
        raise ConfigError(f"Training config {path} does not exist. Use {TRAIN_CONFIG} as a template.") from error
    except (OmegaConfBaseException, ValueError) as error:
        raise ConfigError(f"Invalid training config {path} or override {list(overrides)}: {error}. Check the key "
                          f"names against {TRAIN_CONFIG}.") from error


@dataclass
class DistributedContext:
    """Where this process sits in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str) -> DistributedContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU) and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank if world_size > 1 else (chosen.index or 0))
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    rank = dist.get_rank() if world_size > 1 else 0
    return DistributedContext(rank=rank, world_size=world_size, device=chosen)


@dataclass
class SpeakerData:
    """One speaker's training inputs, checked and loaded."""

    name: str
    index: int
    medoid_condition: torch.Tensor  # (32, D)
    reference_mel: torch.Tensor  # (100, F)
    medoid_uid: str
    medoid_audio: Path
    train_examples: list[Example]
    valid_examples: list[Example]


class TrainingModel(nn.Module):
    """The trainable whole: the PEFT-wrapped GPT plus per-speaker conditions (what DDP wraps)."""

    def __init__(self, gpt: nn.Module, speakers: LearnedConditions):
        super().__init__()
        self.gpt = gpt
        self.speakers = speakers

    def forward(self, batch: Batch):
        conditioning = self.speakers(batch.speaker_ids)  # (B, 32, D)
        return self.gpt.get_base_model().forward_train(
            conditioning, batch.text_ids, batch.text_lengths, batch.codes, batch.code_lengths)


def cosine_with_warmup(warmup_steps: int, total_steps: int, min_lr_ratio: float):
    """LR multiplier: linear warm-up from 0, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return multiplier


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser state dict into tensors (for safetensors) and the rest (for JSON)."""
    state_dict = optimizer.state_dict()
    tensors, other = {}, {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                other.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "state": other}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of ``optimizer_to_files``: a state dict for ``Optimizer.load_state_dict``."""
    state: dict[int, dict] = {int(i): dict(values) for i, values in meta["state"].items()}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step under ``run_dir/checkpoints``, if any."""
    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name))
    return found[-1] if found else None


class Trainer:
    """LoRA fine-tuning driven by a config from ``load_train_config`` (see configs/train.yaml)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.train_cfg = cfg.train
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val_mel_loss = math.inf
        self.best_step = -1
        self.validations_without_improvement = 0
        self.stopped_early = False
        self.writer = None
        self._log_handler = None
        self._saved_steps: set[int] = set()
        self._restore_deterministic: bool | None = None

    # ----------------------------------------------------------------- setup
    def setup(self) -> "Trainer":
        """Check inputs, build the model, data, optimiser and scheduler; resume when asked."""
        self.dist = init_distributed(self.train_cfg.device)
        self.device = self.dist.device
        self._set_numerics()
        torch.manual_seed(int(self.train_cfg.seed) + self.dist.rank)
        self._check_inputs()
        self._setup_run_dir()
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        self._resume()
        return self

    def _set_numerics(self) -> None:
        precision = self.train_cfg.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else (
                "fp16" if self.device.type == "cuda" else "fp32")
        if precision not in ("bf16", "fp16", "fp32"):
            raise TrainingError(f"train.precision must be auto, bf16, fp16 or fp32, not {precision!r}.")
        if precision == "fp16" and self.device.type != "cuda":
            raise TrainingError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on CPU.")
        self.precision = precision
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = bool(self.train_cfg.tf32)
            torch.backends.cudnn.allow_tf32 = bool(self.train_cfg.tf32)
        if self.train_cfg.deterministic:
            self._restore_deterministic = torch.are_deterministic_algorithms_enabled()
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False

    def _check_inputs(self) -> None:
        """Collect every problem with the base checkpoint and the extracted data; raise once."""
        from indextts.config import checkpoint_paths, load_config
        from indextts.extraction import read_speaker_info

        problems: list[str] = []
        self.speaker_data: list[dict] = []
        model_dir = Path(self.cfg.model_dir).expanduser().resolve()
        self.model_config = None
        try:
            self.model_config = load_config(model_dir)
            self.paths = checkpoint_paths(model_dir, self.model_config)
            missing = [str(p) for p in (self.paths.gpt, self.paths.bpe) if not p.is_file()]
            if missing:
                problems.append(f"base checkpoint file(s) missing: {missing} (model_dir={model_dir}; download the "
                                "IndexTTS release into it or set model_dir=...)")
        except IndexTTSError as error:
            problems.append(f"base model config: {error}")
        infos = []
        info_path = Path(self.cfg.speaker_info).expanduser().resolve()
        try:
            infos = read_speaker_info(info_path)
            if not infos:
                problems.append(f"{info_path} lists no speakers (run tools/extract_codec.py for at least one)")
        except IndexTTSError as error:
            problems.append(f"speaker_info: {error}")
        if self.model_config is not None:
            self.speaker_data = self._check_speakers(infos, int(self.model_config.gpt.model_dim), problems)
        if problems:
            raise TrainingError("Training cannot start: " + " | ".join(problems))

    def _check_speakers(self, infos, model_dim: int, problems: list[str]) -> list[dict]:
        """Read each speaker's manifests and medoid condition; note problems instead of raising."""
        checked = []
        names = [info.speaker for info in infos]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"speaker names occur twice in speaker_info.json: {duplicates}")
        for info in infos:
            where = f"speaker '{info.speaker}'"
            try:
                train_rows = read_manifest(info.train_jsonl)
                valid_rows = read_manifest(info.valid_jsonl) if info.valid_jsonl and info.valid_jsonl.is_file() else []
            except IndexTTSError as error:
                problems.append(f"{where}: {error}")
                continue
            if not train_rows:
                problems.append(f"{where} has no rows in {info.train_jsonl}; re-run extraction for it or remove it "
                                "from speaker_info.json")
                continue
            if info.medoid_condition is None or not info.medoid_condition.is_file():
                problems.append(f"{where}: medoid condition {info.medoid_condition} does not exist; re-run extraction")
                continue
            condition = np.load(info.medoid_condition, allow_pickle=False)
            if condition.ndim != 2 or condition.shape[1] != model_dim:
                problems.append(
                    f"{where}: {info.medoid_condition} has shape {condition.shape} but the base GPT needs "
                    f"(32, {model_dim}); the data was extracted with another IndexTTS release. Re-run "
                    "tools/extract_codec.py with this model_dir")
                continue
            medoid_info_path = info.medoid_condition.parent / MEDOID_INFO
            try:
                medoid = json.loads(medoid_info_path.read_text(encoding="utf-8"))
                audio = Path(medoid["audio"])
                audio = audio if audio.is_absolute() else (medoid_info_path.parent / audio).resolve()
            except (OSError, ValueError, KeyError) as error:
                problems.append(f"{where}: cannot read the medoid audio from {medoid_info_path} ({error}); re-run "
                                "extraction")
                continue
            if not audio.is_file():
                problems.append(f"{where}: the medoid utterance audio {audio} (from {medoid_info_path}) is missing; "
                                "it gives the vocoder's speaker reference. Restore the file or re-run extraction")
                continue
            checked.append({"info": info, "train_rows": train_rows, "valid_rows": valid_rows,
                            "condition": torch.from_numpy(condition.astype(np.float32)),
                            "medoid_uid": str(medoid.get("uid", "")), "medoid_audio": audio})
        return checked

    def _setup_run_dir(self) -> None:
        self.run_dir = Path(self.cfg.run_dir).expanduser().resolve()
        resume = self.train_cfg.resume
        self.resume_from: Path | None = None
        if resume == "auto":
            self.resume_from = latest_checkpoint(self.run_dir)
        elif resume:
            self.resume_from = Path(resume).expanduser().resolve()
            if not (self.resume_from / STATE_FILE).is_file():
                raise TrainingError(f"train.resume={resume}: {self.resume_from} is not a complete checkpoint folder "
                                    f"(no {STATE_FILE}). Use train.resume=auto or a checkpoints/step_XXXXXXXX folder.")
        elif latest_checkpoint(self.run_dir) is not None:
            raise TrainingError(f"{self.run_dir} already holds checkpoints. Continue it with --resume "
                                "(train.resume=auto) or choose a new run_dir=... .")
        if self.dist.is_main:
            (self.run_dir / CHECKPOINTS_DIR).mkdir(parents=True, exist_ok=True)
            for stale in (self.run_dir / CHECKPOINTS_DIR).glob(".step_*"):
                shutil.rmtree(stale, ignore_errors=True)
            restore_replaced_dir(self.run_dir / ADAPTER_DIR)
            self._log_handler = logging.FileHandler(self.run_dir / "train.log", encoding="utf-8")
            self._log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger("indextts").addHandler(self._log_handler)
            if logging.getLogger("indextts").getEffectiveLevel() > logging.INFO:
                logging.getLogger("indextts").setLevel(logging.INFO)
        self._barrier()

    def _barrier(self) -> None:
        if self.dist.enabled:
            dist.barrier()

    def _setup_tokenizer(self) -> None:
        from indextts.text import TextTokenizer, add_special_tokens

        base = TextTokenizer(self.paths.bpe)
        tokens = list(self.train_cfg.special_tokens)
        self.new_token_ids: list[int] = []
        self.tokenizer_path = self.paths.bpe
        if tokens:
            self.tokenizer_path = self.run_dir / TOKENIZER_FILE
            if self.dist.is_main:
                add_special_tokens(self.paths.bpe, self.tokenizer_path, tokens)
            self._barrier()
            ids = TextTokenizer(self.tokenizer_path).convert_tokens_to_ids(tokens)
            self.new_token_ids = sorted({i for i in ids if i >= base.vocab_size})
            self.tokenizer = TextTokenizer(self.tokenizer_path)
        else:
            self.tokenizer = base

    def _setup_model(self) -> None:
        from indextts.audio import MelSpectrogramFeatures, load_audio
        from indextts.checkpoints import load_gpt

        self._setup_tokenizer()
        gpt = load_gpt(self.cfg.model_dir, self.model_config, device="cpu")
        self.base_model_facts = describe_base(gpt)
        self.base_model_facts["base_text_vocab_size"] = self.base_model_facts["text_vocab_size"]
        self.base_model_facts["base_fingerprint"] = base_fingerprint(gpt, gpt.text_vocab_size)
        needed_rows = max(gpt.text_vocab_size, self.tokenizer.vocab_size)
        if needed_rows > gpt.text_vocab_size:
            gpt.resize_text_vocab(needed_rows)
        self.base_model_facts["text_vocab_size"] = int(gpt.text_vocab_size)
        self.base_model_facts["new_token_ids"] = list(self.new_token_ids)
        gpt.set_gradient_checkpointing(bool(self.train_cfg.gradient_checkpointing))
        lora = self.train_cfg.lora
        peft_model = add_lora(gpt, make_lora_config(int(lora.r), float(lora.alpha), float(lora.dropout),
                                                    list(lora.target_modules), self.new_token_ids))
        mel = MelSpectrogramFeatures.from_config(self.model_config.dataset.mel)
        sample_rate = int(self.model_config.dataset.sample_rate)
        for speaker in self.speaker_data:
            speaker["reference_mel"] = mel(load_audio(speaker["medoid_audio"], sample_rate))[0]
        names = [s["info"].speaker for s in self.speaker_data]
        speakers = LearnedConditions(names, torch.stack([s["condition"] for s in self.speaker_data]),
                                     trainable=bool(self.train_cfg.speaker_conditions.trainable))
        self.model = TrainingModel(peft_model, speakers).to(self.device)
        self.model.train()
        self.peft_model = peft_model
        self.speakers = speakers
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        logger.info("Trainable parameters: %d of %d (%.3f%%)", trainable, total, 100.0 * trainable / total)
        self.ddp_model = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                          if self.dist.enabled else self.model)

    def _setup_data(self) -> None:
        data = self.cfg.data
        gpt_cfg = self.model_config.gpt
        max_duration = math.inf if data.max_duration is None else float(data.max_duration)
        limits = LengthLimits(float(data.min_duration), max_duration,
                              int(gpt_cfg.max_text_tokens), int(gpt_cfg.max_mel_tokens))
        train, valid, problems = [], [], []
        for index, speaker in enumerate(self.speaker_data):
            name = speaker["info"].speaker
            kept, report = build_examples(speaker["train_rows"], self.tokenizer.encode, index, limits)
            valid_kept, valid_report = build_examples(speaker["valid_rows"], self.tokenizer.encode, index, limits)
            logger.info("Speaker '%s': train %s; valid %s", name, report, valid_report)
            if not kept:
                problems.append(f"speaker '{name}' has no training rows left after filtering ({report}); widen "
                                "data.min_duration/data.max_duration or check its transcripts")
            train += kept
            valid += valid_kept
        if problems:
            raise TrainingError("Training cannot start: " + " | ".join(problems))
        seed = int(self.train_cfg.seed)
        self.train_sampler = TokenBudgetBatchSampler(
            [e.length for e in train], int(data.max_tokens), int(data.max_batch_size), seed, shuffle=True,
            rank=self.dist.rank, world_size=self.dist.world_size)
        self.train_loader = self._loader(CodesDataset(train), self.train_sampler)
        self.valid_loader = None
        if valid:
            self.valid_sampler = TokenBudgetBatchSampler(
                [e.length for e in valid], int(data.max_tokens), int(data.max_batch_size), seed, shuffle=False,
                rank=self.dist.rank, world_size=self.dist.world_size, even=False)
            self.valid_loader = self._loader(CodesDataset(valid), self.valid_sampler)
        else:
            logger.warning("No validation rows: the final model is the last one and early stopping is off.")
        self.num_train_examples = len(train)
        accumulation = int(self.train_cfg.grad_accum)
        self.batches_per_epoch = len(self.train_sampler.epoch_batches(0))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / accumulation)
        max_steps = self.train_cfg.max_steps
        self.total_steps = int(max_steps) if max_steps else int(self.train_cfg.epochs) * self.steps_per_epoch
        logger.info("%d training examples in %d batches per epoch per process -> %d optimizer steps per epoch, %d "
                    "in total", len(train), self.batches_per_epoch, self.steps_per_epoch, self.total_steps)

    def _loader(self, dataset: CodesDataset, sampler: TokenBudgetBatchSampler) -> DataLoader:
        workers = int(self.cfg.data.num_workers)
        # A dedicated generator keeps DataLoader start-up from drawing on the global RNG (dropout masks).
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False,
                          generator=torch.Generator().manual_seed(int(self.train_cfg.seed)))

    def _setup_optimizer(self) -> None:
        opt = self.train_cfg.optimizer
        token_params = [p for n, p in self.peft_model.named_parameters() if p.requires_grad and "trainable_tokens" in n]
        for param in token_params:
            param.requires_grad_(False)  # grouped below with their own learning rate and no weight decay
        self.optimizer = create_loraplus_optimizer(
            self.peft_model, torch.optim.AdamW, lr=float(opt.lr), loraplus_lr_ratio=float(opt.loraplus_lr_ratio),
            loraplus_weight_decay=float(opt.weight_decay), betas=tuple(opt.betas), eps=float(opt.eps))
        for param in token_params:
            param.requires_grad_(True)
        if token_params:
            self.optimizer.add_param_group({"params": token_params, "lr": float(opt.token_embedding_lr),
                                            "weight_decay": 0.0})
        if self.speakers.latents.requires_grad:
            self.optimizer.add_param_group({"params": [self.speakers.latents],
                                            "lr": float(self.train_cfg.speaker_conditions.lr), "weight_decay": 0.0})
        self.trainable_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        sched = self.train_cfg.scheduler
        warmup = int(round(float(sched.warmup_ratio) * self.total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, cosine_with_warmup(warmup, self.total_steps, float(sched.min_lr_ratio)))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    # ---------------------------------------------------------------- resume
    def _resolved_config(self) -> DictConfig:
        resolved = OmegaConf.create(OmegaConf.to_container(self.cfg, resolve=True))
        resolved.model = self.base_model_facts
        return resolved

    def _resume(self) -> None:
        if self.resume_from is None:
            if self.dist.is_main:
                OmegaConf.save(self._resolved_config(), self.run_dir / RUN_CONFIG)
                (self.run_dir / METRICS_FILE).write_text("", encoding="utf-8")
            self._open_writer(purge_step=None)
            return
        folder = self.resume_from
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        if state["world_size"] != self.dist.world_size:
            raise TrainingError(f"{folder} was written by {state['world_size']} process(es) but this run has "
                                f"{self.dist.world_size}; the data order would differ. Resume with the same number.")
        self._warn_config_changes(folder)
        adapter = load_file(str(folder / ADAPTER_DIR / ADAPTER_WEIGHTS), device=str(self.device))
        result = set_peft_model_state_dict(self.peft_model, adapter)
        if result.unexpected_keys or any("lora_" in k or "trainable_tokens" in k for k in result.missing_keys):
            raise TrainingError(f"The adapter in {folder} does not match this run's LoRA settings (unexpected "
                                f"{result.unexpected_keys[:3]}). Resume with the config it was trained with.")
        speakers = load_file(str(folder / SPEAKERS_FILE))
        with torch.no_grad():
            for index, name in enumerate(self.speakers.names):
                self.speakers.latents[index].copy_(speakers[f"{name}.condition"].to(self.device))
        tensors = load_file(str(folder / OPTIMIZER_TENSORS))
        meta = json.loads((folder / OPTIMIZER_META).read_text(encoding="utf-8"))
        self.optimizer.load_state_dict(optimizer_from_files(tensors, meta))
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rng = load_file(str(folder / RNG_FILE))
        torch.set_rng_state(rng[f"cpu.rank{self.dist.rank}"])
        if self.device.type == "cuda" and f"cuda.rank{self.dist.rank}" in rng:
            torch.cuda.set_rng_state(rng[f"cuda.rank{self.dist.rank}"], self.device)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.best_val_mel_loss = state["best_val_mel_loss"] if state["best_val_mel_loss"] is not None else math.inf
        self.best_step = state["best_step"]
        self.validations_without_improvement = state["validations_without_improvement"]
        self._saved_steps.add(self.step)
        if self.dist.is_main:
            self._truncate_metrics(self.step)
        self._open_writer(purge_step=self.step + 1)
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", folder, self.step, self.epoch, self.batch_in_epoch)

    def _warn_config_changes(self, folder: Path) -> None:
        saved = OmegaConf.to_container(OmegaConf.load(folder / RUN_CONFIG))
        current = OmegaConf.to_container(self._resolved_config())
        for section in ("train", "data"):
            for key in sorted(set(saved.get(section, {})) | set(current.get(section, {}))):
                old, new = saved.get(section, {}).get(key), current.get(section, {}).get(key)
                if key != "resume" and old != new:
                    logger.warning("Config differs from the checkpoint: %s.%s was %r, now %r", section, key, old, new)

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric lines logged after ``step`` by the interrupted run (they will be redone)."""
        path = self.run_dir / METRICS_FILE
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        kept = []
        for line in lines:
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line)
            except (ValueError, KeyError):
                break  # a line cut short by the kill
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def _open_writer(self, purge_step: int | None) -> None:
        if self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge_step)

    # -------------------------------------------------------------- training
    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _loss_step(self, batch: Batch, model: nn.Module | None = None):
        """One micro-batch: text_weight * text CE + (1 - text_weight) * mel CE. Returns (loss, TrainOutput).

        ``model`` defaults to the (DDP-wrapped) training model; validation passes the plain one.
        """
        batch = batch.to(self.device, non_blocking=True)
        with self._autocast():
            output = (self.ddp_model if model is None else model)(batch)
        weight = float(self.train_cfg.text_weight)
        loss = weight * output.text_loss + (1.0 - weight) * output.mel_loss
        return loss, output

    def _optimizer_step(self) -> float:
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable_params, float(self.train_cfg.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def _all_reduce(self, values: list[float]) -> list[float]:
        """Sum ``values`` over processes."""
        if not self.dist.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def train(self) -> dict:
        """Run until ``total_steps`` (or early stopping); returns the last validation metrics (or {})."""
        accumulation = int(self.train_cfg.grad_accum)
        progress = tqdm(total=self.total_steps, initial=self.step, disable=not self.dist.is_main,
                        desc="train", unit="step", dynamic_ncols=True)
        last_metrics: dict = {}
        self.optimizer.zero_grad(set_to_none=True)
        while self.step < self.total_steps and not self.stopped_early:
            self.train_sampler.set_epoch(self.epoch, self.batch_in_epoch)
            micro = self.batch_in_epoch
            sums = np.zeros(3)  # loss, text loss, mel loss (each already divided by the group size)
            tokens, started = 0, time.perf_counter()
            for batch in self.train_loader:
                group_start = (micro // accumulation) * accumulation
                group_size = min(accumulation, self.batches_per_epoch - group_start)
                last_in_group = micro + 1 == group_start + group_size
                sync = nullcontext() if last_in_group or not self.dist.enabled else self.ddp_model.no_sync()
                with sync:
                    loss, output = self._loss_step(batch)
                    self.scaler.scale(loss / group_size).backward()
                parts = torch.stack([loss.detach(), output.text_loss.detach(), output.mel_loss.detach()])
                sums += parts.double().cpu().numpy() / group_size  # one device sync per micro-batch
                tokens += batch.num_tokens
                micro += 1
                if not last_in_group:
                    continue
                grad_norm = self._optimizer_step()
                self.step += 1
                self.batch_in_epoch = micro
                epoch_done = micro >= self.batches_per_epoch
                if epoch_done:
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                reduced = self._all_reduce([*sums.tolist(), float(tokens)])
                elapsed = time.perf_counter() - started
                record = {"step": self.step, "epoch": self.epoch, "loss": reduced[0] / self.dist.world_size,
                          "text_loss": reduced[1] / self.dist.world_size, "mel_loss": reduced[2] / self.dist.world_size,
                          "lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                          "tokens_per_s": reduced[3] / max(elapsed, 1e-9)}
                self._log_step(record, progress)
                sums[:] = 0
                tokens, started = 0, time.perf_counter()
                last_metrics = self._after_step(epoch_done) or last_metrics
                if self.step >= self.total_steps or self.stopped_early:
                    break
            else:
                if self.batch_in_epoch:  # the sampler ran dry before the epoch's counted batches
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        progress.close()
        self._finish()
        return last_metrics

    def _after_step(self, epoch_done: bool) -> dict | None:
        """Validate, keep the best model, checkpoint and decide on early stopping after an optimizer step."""
        every_val = int(self.train_cfg.val_every_steps)
        every_save = int(self.train_cfg.save_every_steps)
        finished = self.step >= self.total_steps
        metrics = None
        if self.valid_loader is not None and (epoch_done or finished or (every_val and self.step % every_val == 0)):
            metrics = self.validate()
            self._log_validation(metrics)
            if metrics["mel_loss"] < self.best_val_mel_loss:
                self.best_val_mel_loss, self.best_step = metrics["mel_loss"], self.step
                self.validations_without_improvement = 0
                self._write_best()
            else:
                self.validations_without_improvement += 1
                patience = int(self.train_cfg.early_stopping_patience)
                if patience and self.validations_without_improvement >= patience:
                    logger.info("Early stopping: no better validation mel loss for %d validations (best %.4f at "
                                "step %d)", patience, self.best_val_mel_loss, self.best_step)
                    self.stopped_early = True
        if epoch_done or finished or self.stopped_early or (every_save and self.step % every_save == 0):
            self.save_checkpoint()
        return metrics

    @torch.no_grad()
    def validate(self) -> dict:
        """Validation text/mel loss and mel top-1/top-10 accuracy, averaged over all valid targets."""
        self.model.eval()
        totals = np.zeros(6)  # text loss sum, text count, mel loss sum, mel count, top-1, top-k
        for batch in self.valid_loader:
            _, output = self._loss_step(batch, self.model)
            text_count = int(output.text_target_mask.sum())
            mel_count = int(output.mel_target_mask.sum())
            top = output.mel_logits.topk(min(TOP_K, output.mel_logits.shape[1]), dim=1).indices  # (B, K, N+1)
            hits = (top == output.mel_targets.unsqueeze(1)) & output.mel_target_mask.unsqueeze(1)
            totals += np.array([output.text_loss.item() * text_count, text_count, output.mel_loss.item() * mel_count,
                                mel_count, int(hits[:, 0].sum()), int(hits.any(dim=1).sum())], dtype=np.float64)
        totals = np.array(self._all_reduce(totals.tolist()))
        self.model.train()
        return {"step": self.step, "text_loss": totals[0] / max(totals[1], 1), "mel_loss": totals[2] / max(totals[3], 1),
                "mel_top1": totals[4] / max(totals[3], 1), f"mel_top{TOP_K}": totals[5] / max(totals[3], 1)}

    # --------------------------------------------------------------- logging
    def _append_metrics(self, record: dict) -> None:
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _log_step(self, record: dict, progress: tqdm) -> None:
        progress.update(1)
        if not self.dist.is_main:
            return
        progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                             tok_s=f"{record['tokens_per_s']:.0f}")
        self._append_metrics({"kind": "train", **record})
        for key in ("loss", "text_loss", "mel_loss", "lr", "grad_norm", "tokens_per_s"):
            self.writer.add_scalar(f"train/{key}", record[key], self.step)
        if self.step % int(self.train_cfg.log_every_steps) == 0 or self.step == 1:
            logger.info("step %d/%d epoch %d loss %.4f (text %.4f, mel %.4f) lr %.3e grad %.3f %.0f tok/s",
                        self.step, self.total_steps, self.epoch, record["loss"], record["text_loss"],
                        record["mel_loss"], record["lr"], record["grad_norm"], record["tokens_per_s"])

    def _log_validation(self, metrics: dict) -> None:
        if not self.dist.is_main:
            return
        self._append_metrics({"kind": "valid", **metrics})
        for key, value in metrics.items():
            if key != "step":
                self.writer.add_scalar(f"valid/{key}", value, self.step)
        logger.info("validation at step %d: text loss %.4f, mel loss %.4f, mel top-1 %.3f, top-%d %.3f", self.step,
                    metrics["text_loss"], metrics["mel_loss"], metrics["mel_top1"], TOP_K, metrics[f"mel_top{TOP_K}"])

    # ----------------------------------------------------------------- saving
    def _write_artifacts(self, folder: Path) -> None:
        """Write a loadable run (adapter, speakers, config, tokenizer) into ``folder``."""
        self.peft_model.save_pretrained(str(folder / ADAPTER_DIR))
        conditions = self.speakers.as_dict()
        speakers = {s["info"].speaker: TrainedSpeaker(conditions[s["info"].speaker], s["reference_mel"])
                    for s in self.speaker_data}
        info = {"speakers": [{"name": s["info"].speaker, "index": i, "medoid_uid": s["medoid_uid"],
                              "medoid_audio": str(s["medoid_audio"]), "condition_trained": self.speakers.latents.requires_grad}
                             for i, s in enumerate(self.speaker_data)],
                "step": self.step,
                "about": "speakers.safetensors: '<name>.condition' (32, D) GPT conditioning latents; "
                         "'<name>.reference_mel' (100, F) log-mel of the medoid utterance for the vocoder."}
        save_speakers(folder, speakers, info)
        OmegaConf.save(self._resolved_config(), folder / RUN_CONFIG)
        if self.new_token_ids:
            (folder / TOKENIZER_FILE).parent.mkdir(parents=True, exist_ok=True)
            if folder != self.run_dir:
                shutil.copyfile(self.tokenizer_path, folder / TOKENIZER_FILE)

    def _write_best(self) -> None:
        """Replace the top-level artifacts with the current model (crash-safe swap)."""
        if not self.dist.is_main:
            return
        temp = self.run_dir / ".best.tmp"
        shutil.rmtree(temp, ignore_errors=True)
        self._write_artifacts(temp)
        for name in ("speakers.safetensors", "speakers.json"):
            os.replace(temp / name, self.run_dir / name)
        replace_dir_atomic(temp / ADAPTER_DIR, self.run_dir / ADAPTER_DIR)
        shutil.rmtree(temp, ignore_errors=True)

    def _rng_states(self) -> dict[str, torch.Tensor]:
        states = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.dist.enabled:
            return {f"{k}.rank0": v for k, v in states.items()}
        gathered: list = [None] * self.dist.world_size
        dist.all_gather_object(gathered, {k: v.cpu() for k, v in states.items()})
        return {f"{k}.rank{r}": v for r, s in enumerate(gathered) for k, v in s.items()}

    def save_checkpoint(self) -> Path | None:
        """Write checkpoints/step_XXXXXXXX atomically (rank 0) and prune old ones."""
        rng = self._rng_states()
        if not self.dist.is_main or self.step in self._saved_steps:
            return None
        folder = self.run_dir / CHECKPOINTS_DIR / f"step_{self.step:08d}"
        temp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(temp, ignore_errors=True)
        self._write_artifacts(temp)
        tensors, meta = optimizer_to_files(self.optimizer)
        save_file(tensors, str(temp / OPTIMIZER_TENSORS))
        write_json_atomic(temp / OPTIMIZER_META, meta, sync=False)
        save_file({k: v.contiguous() for k, v in rng.items()}, str(temp / RNG_FILE))
        write_json_atomic(temp / STATE_FILE, {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.dist.world_size,
            "best_val_mel_loss": None if math.isinf(self.best_val_mel_loss) else self.best_val_mel_loss,
            "best_step": self.best_step, "validations_without_improvement": self.validations_without_improvement,
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
        }, sync=False)
        os.rename(temp, folder)
        self._saved_steps.add(self.step)
        self._prune_checkpoints()
        logger.info("Saved checkpoint %s", folder)
        return folder

    def _prune_checkpoints(self) -> None:
        keep = int(self.train_cfg.keep_checkpoints)
        folder = self.run_dir / CHECKPOINTS_DIR
        found = sorted(p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name))
        for old in found[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)

    def _finish(self) -> None:
        if self.valid_loader is None or self.best_step < 0:
            self._write_best()
        if self.dist.is_main:
            logger.info("Training finished at step %d; best validation mel loss %s at step %d; run folder %s",
                        self.step, f"{self.best_val_mel_loss:.4f}" if self.best_step >= 0 else "n/a",
                        self.best_step, self.run_dir)
        self._barrier()

    def close(self) -> None:
        """Flush TensorBoard, detach the log file and leave the process group."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._log_handler is not None:
            logging.getLogger("indextts").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self._restore_deterministic is not None:
            torch.use_deterministic_algorithms(self._restore_deterministic)
            self._restore_deterministic = None
        if getattr(self, "dist", None) is not None and self.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()


def run_training(cfg: DictConfig) -> dict:
    """Set up a Trainer from ``cfg``, train, and clean up; returns the last validation metrics."""
    trainer = Trainer(cfg)
    try:
        trainer.setup()
        return trainer.train()
    finally:
        trainer.close()
