"""The base folder (an IndexTTS release checkpoint folder): :class:`CheckpointFolder` and its layout.

``layout`` holds the names other modules refer to and imports nothing; ``folder`` holds the class,
which imports the loaders (torch). ``from indextts.checkpoint_folder.folder import CheckpointFolder`` loads
``folder`` on first use, so that the config reader below it can import ``layout`` without a cycle.
"""

from indextts.checkpoint_folder.layout import CONFIG_FILENAME, DEFAULT_MODEL_DIR

__all__ = ["CONFIG_FILENAME", "DEFAULT_MODEL_DIR", "FINGERPRINT_CACHE_SUFFIX", "CheckpointFolder"]


def __getattr__(name: str):
    if name in ("CheckpointFolder", "FINGERPRINT_CACHE_SUFFIX"):
        from indextts.checkpoint_folder import folder

        return getattr(folder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
