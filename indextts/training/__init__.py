"""LoRA fine-tuning: typed config, checked inputs, the trainer and its checkpoints.

``load_train_config`` (config.py) -> ``run_training`` (trainer.py); ``inputs.py`` checks the data
before weights load, ``checkpointing.py`` owns the run folder's step checkpoints and lock.
"""

from indextts.training.checkpointing import latest_checkpoint
from indextts.training.config import DEFAULT_CONFIG, TrainConfig, load_train_config
from indextts.training.trainer import Trainer, run_training

__all__ = ["DEFAULT_CONFIG", "TrainConfig", "Trainer", "latest_checkpoint", "load_train_config", "run_training"]
