"""The names of a base folder's layout that other modules refer to (the folder itself: ``folder.py``).

Kept apart from :class:`~indextts.checkpoint_folder.folder.CheckpointFolder`, which loads weights,
so that the lowest modules (the config reader, the release list) can name the config file without
importing the loaders.
"""

from pathlib import Path

CONFIG_FILENAME = "config.yaml"
"""A base folder's model config (the release schema), also a run folder's copy of its training config."""
DEFAULT_MODEL_DIR = Path("checkpoints")
"""Where the release folder lives by default (the upstream repository's layout)."""
