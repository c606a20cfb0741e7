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


def in_hub_cache(source: str) -> bool:
    """Whether the hub cache holds the config.json of the hub id ``source``."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(source, "config.json"), str)


def offline_and_missing(source: str) -> str:
    """The network sentence of ``prepare_hub_source`` when ``source`` is a hub id that cannot be loaded
    here (no hub, not cached), else ''. Checked before importing a model's code, so the failure is
    immediate."""
    network = prepare_hub_source(source)
    return network if network and not in_hub_cache(source) else ""


def model_available(source: str) -> bool:
    """Whether a model named by a folder or a hub id can be loaded here, without loading it: the folder
    exists, or the hub cache holds the id's config.json, or the hub has it (it is downloaded once)."""
    from huggingface_hub import HfApi, constants

    if source.startswith(("/", ".", "~")) or Path(source).exists():
        return Path(source).expanduser().is_dir()
    if in_hub_cache(source):
        return True
    prepare_hub_source(source)  # switches the hub to offline mode when it cannot be reached
    if constants.HF_HUB_OFFLINE:
        return False
    try:
        return HfApi(endpoint=hub_endpoint()).file_exists(source, "config.json")
    except Exception as error:  # noqa: BLE001 - any hub failure (HTTP, auth, a bad id) means "not here"
        logger.info("The hub cannot give %s (%s); treating it as unavailable.", source, error)
        return False
