"""LoRA fine-tuning of the IndexTTS GPT on extracted speaker data.

A ``Trainer`` follows the recipe shape ``setup`` (inputs checked -> run folder -> model -> data ->
optimizer -> resume) then ``train``; ``step.TrainStepRunner`` runs the micro-batches and updates.

The run folder's layout is ``indextts.run_folder.RunFolder``'s (with a tokenizer when special tokens
were added). The top-level files hold the best model by validation mel loss (the last one when
there is no validation data). A run killed at any moment resumes from its latest complete checkpoint with the
same data order, dropout masks and optimiser state, giving the same losses as an uninterrupted run.

The step keeps the device busy: losses and gradient norms are summed on the device and read only
every ``train.log_every_steps``; an out-of-memory error splits the micro-batch in two and retries.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from indextts.training.data import Batch, LengthLimits
from indextts.errors import TrainingError
from indextts.lora import LearnedConditions, add_lora, describe_base, make_lora_config
from indextts.run_folder import RUN_CONFIG, SPEAKERS_FILE, RunFolder
from indextts.runtime import constant_buffer_ddp_options, init_distributed, reuse_freed_host_memory
from indextts.training import checkpointing as ckpt
from indextts.training.artifacts import RunFiles, write_run_files
from indextts.training.config import TrainConfig, config_to_dict
from indextts.training.inputs import check_inputs
from indextts.training.loaders import build_all_examples, build_loaders, prepare_tokenizer, resolve_token_budget
from indextts.training.metrics import RunLog
from indextts.training.model import TrainingModel, build_optimizer, build_scheduler, check_family_settings, prefix_rows
from indextts.training.text_encoding import row_encoder
from indextts.training.progress import LossWindow, resume_differences, time_based_log_seconds
from indextts.training.step import (
    TOP_K, TrainStepRunner, compute_loss, deterministic_error, enable_deterministic_algorithms, training_precision,
)

logger = logging.getLogger(__name__)



class Trainer:
    """LoRA fine-tuning driven by a config from ``load_train_config`` (see indextts/configs/train.yaml)."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.train_cfg = cfg.train
        self.step = self.epoch = self.batch_in_epoch = 0
        self.best_val_mel_loss, self.best_step = math.inf, -1
        self.validations_without_improvement = 0
        self.stopped_early = False
        self.last_metrics: dict = {}
        self.dist = None
        self.log: RunLog | None = None
        self.lock: ckpt.RunLock | None = None
        self._saved_steps: set[int] = set()
        self._restore_deterministic: bool | None = None

    # ----------------------------------------------------------------- setup
    def setup(self) -> "Trainer":
        """Check inputs, build the model, data, optimiser and scheduler; resume when asked."""
        if self.train_cfg.deterministic:  # before CUDA starts
            self._restore_deterministic = enable_deterministic_algorithms()
        self.dist = init_distributed(self.train_cfg.device, self.train_cfg.dist_timeout_s)
        self.device = self.dist.device
        if self.device.type == "cpu":
            reuse_freed_host_memory()
        self.precision = training_precision(self.train_cfg.precision, self.device, self.train_cfg.tf32)
        torch.manual_seed(self.train_cfg.seed + self.dist.rank)
        self.inputs = check_inputs(self.cfg.model_dir, self.cfg.speaker_info, list(self.train_cfg.special_tokens),
                                   ckpt.trained_speakers(self.cfg.run_dir, self.train_cfg.resume))
        check_family_settings(self.train_cfg, self.inputs.base)
        self._setup_run_dir()
        self._setup_model()
        self._setup_data()
        self._setup_optimizer()
        self._resume()
        return self

    def _setup_run_dir(self) -> None:
        """Lock the run folder (rank 0), pick the checkpoint to resume, tidy what a kill left behind."""
        self.run_dir = Path(self.cfg.run_dir).expanduser().resolve()
        self.run = RunFolder(self.run_dir)
        if self.dist.is_main:
            self.lock = ckpt.RunLock(self.run_dir).acquire()
        self.dist.barrier()
        self.resume_from = ckpt.resume_target(self.run_dir, self.train_cfg.resume)
        self.resume_state = ckpt.read_checkpoint_state(self.resume_from) if self.resume_from else None
        if self.resume_from is not None:
            self._check_resumable_config()
        self.log = RunLog(self.run_dir, self.dist.is_main)
        if self.dist.is_main:
            if self.resume_state is not None:
                ckpt.abandon_later_checkpoints(self.run_dir, self.resume_state["step"])
            self.run.checkpoints_dir.mkdir(parents=True, exist_ok=True)
            self.run.remove_temp()
        self.dist.barrier()

    def _check_resumable_config(self) -> None:
        """Changed LoRA settings, or a change of what is trained, cannot resume (refused before anything is
        touched); other changes are warned about."""
        fixed_changes = resume_differences(RunFolder(self.resume_from).config(), config_to_dict(self.cfg))
        if fixed_changes:
            raise TrainingError(f"Cannot resume from {self.resume_from} with other LoRA settings or another choice "
                                f"of what is trained: {'; '.join(fixed_changes)}. Resume with the settings it was "
                                f"trained with (its {RUN_CONFIG}), or start a new run_dir=... .")

    def _base_facts(self, gpt: nn.Module) -> dict:
        facts = describe_base(gpt)
        facts["base_text_vocab_size"] = facts["text_vocab_size"]
        facts["base"] = self.inputs.base.identity()
        facts["family"] = self.inputs.base.family.version  # the adapter loader refuses another family's base
        return facts

    def _setup_model(self) -> None:
        self.tokenizer, self.tokenizer_path, self.new_token_ids = prepare_tokenizer(
            self.inputs.base, self.inputs.tokenizer, list(self.train_cfg.special_tokens), self.run_dir, self.dist)
        gpt = self.inputs.base.load_gpt("cpu")
        self.base_model_facts = self._base_facts(gpt)
        if self.tokenizer.vocab_size > gpt.text_vocab_size:
            gpt.resize_text_vocab(self.tokenizer.vocab_size)
        self.base_model_facts.update(text_vocab_size=int(gpt.text_vocab_size), new_token_ids=self.new_token_ids)
        gpt.set_gradient_checkpointing(self.train_cfg.gradient_checkpointing)
        lora = self.train_cfg.lora
        self.peft_model = add_lora(gpt, make_lora_config(lora.r, lora.alpha, lora.dropout, list(lora.target_modules),
                                                         self.new_token_ids))
        speakers, paired = self.inputs.speakers, self.train_cfg.condition_pairing == "prompt"
        self.speakers = LearnedConditions([s.name for s in speakers],  # unused by paired training: kept as the medoid
                                          torch.stack([s.medoid_condition for s in speakers]),
                                          trainable=self.train_cfg.speaker_conditions.trainable and not paired)
        self.model = TrainingModel(self.peft_model, self.speakers, self.inputs.base.family).to(self.device).train()
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        logger.info("Trainable parameters: %d of %d (%.3f%%)", trainable, total, 100.0 * trainable / total)
        self.ddp_model = self.model
        if self.dist.enabled:  # buffers are constant (the unused conditioning encoder's): never re-broadcast
            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                **constant_buffer_ddp_options())
        self.forward_model = torch.compile(self.ddp_model) if self.train_cfg.compile else self.ddp_model

    def _probe_step(self, batch: Batch) -> None:
        try:  # the auto-budget probe is the first backward: its errors read as the training loop's do
            loss, _ = compute_loss(self.model, batch, self.device, self.precision, self.train_cfg.text_weight)
            loss.backward()
        except RuntimeError as error:
            raise deterministic_error(error, self.device) or error
        self.model.zero_grad(set_to_none=True)

    def _setup_data(self) -> None:
        data, gpt_cfg = self.cfg.data, self.inputs.base.cfg.gpt
        limits = LengthLimits(data.min_duration, data.max_duration, int(gpt_cfg.max_text_tokens),
                              int(gpt_cfg.max_mel_tokens))
        base, speakers = self.inputs.base, self.inputs.speakers
        train, valid = build_all_examples(speakers, row_encoder(base, self.tokenizer), limits,
                                          speaker_emotion=self.train_cfg.emotion == "speaker")
        saved = None if self.resume_state is None else self.resume_state.get("max_tokens")
        emotion_dim = 0 if speakers[0].emotion is None else int(speakers[0].emotion.shape[0])
        prefix = prefix_rows(base.family, int(speakers[0].medoid_condition.shape[0]))
        max_tokens = resolve_token_budget(data, train, self.dist, self._probe_step, saved, emotion_dim, prefix)
        self.data = build_loaders(data, train, valid, max_tokens, self.train_cfg.seed, self.dist, prefix,
                                  pair_conditions=self.train_cfg.condition_pairing == "prompt")
        self.batches_per_epoch = len(self.data.train_sampler.epoch_batches(0))
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / self.train_cfg.grad_accum)
        self.total_steps = self.train_cfg.max_steps or self.train_cfg.epochs * self.steps_per_epoch
        logger.info("%d training examples in %d batches of <= %d tokens per epoch per process -> %d optimizer steps "
                    "per epoch, %d in total", len(train), self.batches_per_epoch, max_tokens, self.steps_per_epoch,
                    self.total_steps)

    def _setup_optimizer(self) -> None:
        self.optimizer = build_optimizer(self.peft_model, self.speakers, self.train_cfg, self.device)
        self.scheduler = build_scheduler(self.optimizer, self.train_cfg, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.window = LossWindow(self.device, time_based_log_seconds(self.train_cfg.log_every_seconds,
                                                                     self.dist.world_size))
        self.steps = TrainStepRunner(self.model, self.ddp_model, self.forward_model, self.dist, self.precision,
                                self.train_cfg.text_weight, self.train_cfg.grad_clip, self.optimizer, self.scheduler,
                                self.scaler, self.window, self.data.train_examples)

    # ---------------------------------------------------------------- resume
    @functools.cached_property
    def _config_yaml(self) -> str:
        """The run's config file: the resolved config and the base's facts, rendered once (saves are frequent)."""
        return OmegaConf.to_yaml(OmegaConf.create({**config_to_dict(self.cfg), "model": self.base_model_facts}))

    def _run_files(self) -> RunFiles:
        return RunFiles(self.peft_model, self.speakers, self.inputs.speakers, self._config_yaml,
                        self.inputs.base.root, self.inputs.base.identity(), self.tokenizer_path)

    def _resume(self) -> None:
        if self.resume_from is None:
            if self.dist.is_main:
                self.run.config_path.write_text(self._config_yaml, encoding="utf-8")
            self.log.open(None)
            return
        folder, state = self.resume_from, self.resume_state
        if state["world_size"] != self.dist.world_size:
            raise TrainingError(f"{folder} was written by {state['world_size']} process(es) but this run has "
                                f"{self.dist.world_size}; the data order would differ. Resume with the same number.")
        ckpt.load_adapter(self.peft_model, folder, self.device, "train.lora unchanged")
        speakers = load_file(str(folder / SPEAKERS_FILE))
        with torch.no_grad():
            for index, name in enumerate(self.speakers.names):
                self.speakers.latents[index].copy_(speakers[f"{name}.condition"].to(self.device))
        ckpt.load_optimizer(self.optimizer, folder)
        self._restore_state(state, load_file(str(folder / ckpt.RNG_FILE)))
        self.log.open(self.step)
        logger.info("Resumed from %s at step %d (epoch %d, batch %d)", folder, self.step, self.epoch,
                    self.batch_in_epoch)

    def _restore_state(self, state: dict, rng: dict[str, torch.Tensor]) -> None:
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.restore_rng_states(rng, self.dist)
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.steps.step = self.step
        best = state["best_val_mel_loss"]
        self.best_val_mel_loss = math.inf if best is None else best
        self.best_step = state["best_step"]
        self.validations_without_improvement = state["validations_without_improvement"]
        self.window.load_state_dict(state.get("window"), self.dist.is_main)
        self._saved_steps.add(self.step)

    # -------------------------------------------------------------- training
    def train(self) -> dict:
        """Run until ``total_steps`` (or early stopping); returns the last validation metrics (or {})."""
        progress = tqdm(total=self.total_steps, initial=self.step, disable=not self.dist.is_main,
                        desc="train", unit="step", dynamic_ncols=True)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            while self.step < self.total_steps and not self.stopped_early:
                self._train_epoch(progress)
        except RuntimeError as error:
            raise deterministic_error(error, self.device) or error
        progress.close()
        self._finish()
        return self.last_metrics

    def _train_epoch(self, progress: tqdm) -> None:
        """Micro-batches of the current epoch from ``batch_in_epoch`` on, an optimizer step per group."""
        accumulation = self.train_cfg.grad_accum
        self.data.train_sampler.set_epoch(self.epoch, self.batch_in_epoch)
        self.data.train_loader.dataset.set_epoch(self.epoch)  # before the workers start: the condition partners
        micro = self.batch_in_epoch
        for batch in self.data.train_loader:
            group_start = (micro // accumulation) * accumulation
            group_size = min(accumulation, self.batches_per_epoch - group_start)
            last_in_group = micro + 1 == group_start + group_size
            self.window.add_losses(self.steps.backward(batch, 1.0 / group_size, last_in_group) / group_size,
                                   batch.real_size(self.model.prefix_rows))
            micro += 1
            if not last_in_group:
                continue
            self.steps.update()
            self.step, self.batch_in_epoch = self.step + 1, micro
            epoch_done = micro >= self.batches_per_epoch
            if epoch_done:
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            progress.update(1)
            if (self.step % self.train_cfg.log_every_steps == 0 or self.step >= self.total_steps
                    or self.window.overdue()):
                self._log_window(progress)
            self._after_step(epoch_done)
            if self.step >= self.total_steps or self.stopped_early:
                return
        if self.batch_in_epoch:  # the sampler ran dry before the epoch's counted batches
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _log_window(self, progress: tqdm | None = None) -> None:
        """Read the summed losses (the step's only host sync), log them, start a new window."""
        if self.window.steps == 0:
            return
        record = self.window.summary(self.steps.all_reduce, self.dist.world_size)
        record = {"step": self.step, "epoch": self.epoch, **record}
        if progress is not None:
            progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                 tok_s=f"{record['tokens_per_s']:.0f}")
        self.log.record("train", record)
        logger.info("step %d/%d epoch %d loss %.4f (text %.4f, mel %.4f) lr %.3e grad %.3f %.0f tok/s",
                    self.step, self.total_steps, self.epoch, record["loss"], record["text_loss"],
                    record["mel_loss"], record["lr"], record["grad_norm"], record["tokens_per_s"])

    def _after_step(self, epoch_done: bool) -> None:
        """Validate, keep the best model, checkpoint and decide on early stopping after an optimizer step."""
        every_val, every_save = self.train_cfg.val_every_steps, self.train_cfg.save_every_steps
        finished = self.step >= self.total_steps
        due = epoch_done or finished or (every_val and self.step % every_val == 0)
        if self.data.valid_loader is not None and due:
            self._validate_and_keep_best()
        if epoch_done or finished or self.stopped_early or (every_save and self.step % every_save == 0):
            self.save_checkpoint()

    def _validate_and_keep_best(self) -> None:
        metrics = self.last_metrics = {"step": self.step, **self.steps.validate(self.data.valid_loader)}
        self.log.record("valid", metrics)
        logger.info("validation at step %d: text loss %.4f, mel loss %.4f, mel top-1 %.3f, top-%d %.3f", self.step,
                    metrics["text_loss"], metrics["mel_loss"], metrics["mel_top1"], TOP_K, metrics[f"mel_top{TOP_K}"])
        if metrics["mel_loss"] < self.best_val_mel_loss:
            self.best_val_mel_loss, self.best_step = metrics["mel_loss"], self.step
            self.validations_without_improvement = 0
            self._write_best()
            return
        self.validations_without_improvement += 1
        patience = self.train_cfg.early_stopping_patience
        if patience and self.validations_without_improvement >= patience:
            logger.info("Early stopping: no better validation mel loss for %d validations (best %.4f at step %d)",
                        patience, self.best_val_mel_loss, self.best_step)
            self.stopped_early = True

    # ----------------------------------------------------------------- saving
    def _write_best(self) -> None:
        """Replace the top-level run files with the current model (crash-safe swap)."""
        if not self.dist.is_main:
            return
        self.run.install_final(self._write_run_files)

    def _write_run_files(self, folder: Path) -> None:
        write_run_files(folder, self._run_files(), self.step)

    def _trainer_state(self, window: dict) -> dict:
        return {"window": window,
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "world_size": self.dist.world_size, "max_tokens": self.data.max_tokens,
            "best_val_mel_loss": None if math.isinf(self.best_val_mel_loss) else self.best_val_mel_loss,
            "best_step": self.best_step, "validations_without_improvement": self.validations_without_improvement,
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
        }

    def save_checkpoint(self) -> Path | None:
        """Write the step's checkpoint atomically (rank 0) and prune old ones."""
        rng = ckpt.gather_rng_states(self.dist)  # collective, like the window's sums
        window = self.window.state_dict(self.steps.all_reduce)
        if not self.dist.is_main or self.step in self._saved_steps:
            return None
        folder = ckpt.write_checkpoint(self.run_dir, self.step, self._write_run_files, self.optimizer, rng,
                                       self._trainer_state(window))
        self._saved_steps.add(self.step)
        ckpt.prune_checkpoints(self.run_dir, self.train_cfg.keep_checkpoints)
        logger.info("Saved checkpoint %s", folder)
        return folder

    def _finish(self) -> None:
        self._log_window()  # a window cut short by early stopping
        if self.data.valid_loader is None or self.best_step < 0:
            self._write_best()
        if self.dist.enabled:
            self.steps.check_replicas()
        logger.info("Training finished at step %d; best validation mel loss %s at step %d; run folder %s%s",
                    self.step, f"{self.best_val_mel_loss:.4f}" if self.best_step >= 0 else "n/a",
                    self.best_step, self.run_dir, self._peak_memory())
        self.dist.barrier()

    def _peak_memory(self) -> str:
        if self.device.type != "cuda":
            return ""
        return f"; peak GPU memory {torch.cuda.max_memory_allocated(self.device) / 2**20:.1f} MiB"

    def close(self) -> None:
        """Flush the logs, release the run folder and leave the process group."""
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self._restore_deterministic is not None:
            torch.use_deterministic_algorithms(self._restore_deterministic)
            self._restore_deterministic = None
        if self.dist is not None and self.dist.enabled and dist.is_initialized():
            dist.destroy_process_group()


def run_training(cfg: TrainConfig) -> dict:
    """Set up a Trainer from ``cfg``, train, and clean up; returns the last validation metrics."""
    trainer = Trainer(cfg)
    try:
        trainer.setup()
        return trainer.train()
    except RuntimeError as error:  # a collective that gave up on another rank: name this rank and the step
        raise (trainer.dist and trainer.dist.lost_peer(error, f"at step {trainer.step}")) or error
    finally:
        trainer.close()
