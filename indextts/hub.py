"""Models named by a hub id, on a machine without network: say so in seconds, not minutes of retries.

transformers downloads a hub id on first use and retries a failing connection with back-off for
minutes. Before such a load, one short TCP probe of the hub endpoint decides: when it cannot be
reached, the hub's offline mode is switched on for this process, so a model already in the hub
cache still loads and a missing one fails at once with a message that names the network.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

PROBE_SECONDS = 3.0


def hub_endpoint() -> str:
    """The hub address the downloads would use (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def hub_reachable(endpoint: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to ``endpoint``'s host and port opens within ``timeout`` seconds."""
    address = urlsplit(endpoint)
    port = address.port or (443 if address.scheme == "https" else 80)
    try:
        socket.create_connection((address.hostname, port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def prepare_hub_source(source: str) -> str:
    """Get ready to load ``source``; returns the sentence a failed load should add ('' if none).

    A path (absolute, relative with ``.``, ``~``, or existing), or a process already in offline
    mode, is left alone. A hub id whose endpoint
    cannot be reached switches the hub to offline mode (cached copies still load).
    """
    from huggingface_hub import constants

    if source.startswith(("/", ".", "~")) or Path(source).exists():
        return ""  # a path, even a missing one: the loader's own message says so
    if constants.HF_HUB_OFFLINE:
        return f"The hub is in offline mode (HF_HUB_OFFLINE) and '{source}' is not in its cache ({constants.HF_HUB_CACHE}). "
    endpoint = hub_endpoint()
    if hub_reachable(endpoint):
        return ""
    logger.warning("The model hub %s cannot be reached; using the local hub cache only (offline mode)", endpoint)
    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"  # for child processes and libraries that read the environment
    return (f"This machine cannot reach the model hub ({endpoint}) and '{source}' is not in the hub cache "
            f"({constants.HF_HUB_CACHE}); download it once where there is network, or copy its folder here. ")


def model_available(source: str) -> bool:
    """Whether a model named by a folder or a hub id can be loaded here, without loading it: the folder
    exists, or the hub cache holds the id's config.json, or the hub answers (it is downloaded once)."""
    from huggingface_hub import constants, try_to_load_from_cache

    if source.startswith(("/", ".", "~")) or Path(source).exists():
        return Path(source).expanduser().is_dir()
    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return True
    prepare_hub_source(source)  # switches the hub to offline mode when it cannot be reached
    return not constants.HF_HUB_OFFLINE
