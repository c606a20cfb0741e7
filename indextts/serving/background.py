"""``serve_in_background``: the speech server on a loopback port from a thread (tests, notebooks).

Python::

    from indextts.inference import IndexTTS
    from indextts.serving import ServerSettings, create_app, serve_in_background

    tts = IndexTTS.from_pretrained("checkpoints", adapters={"kaishu": "runs/kaishu"})
    with serve_in_background(create_app(tts, ServerSettings())) as url:
        ...  # POST f"{url}/v1/audio/speech"
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from indextts.errors import IndexTTSError


@contextlib.contextmanager
def serve_in_background(app, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 60.0,
                        log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` with uvicorn from a daemon thread; yields the base URL (``http://host:port``).

    ``port=0`` picks a free port. The socket is bound before the server starts, so the port is
    known and held at once; on exit the server shuts down (its lifespan stops the model thread).
    """
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    # log_config=None: uvicorn's records go through the host program's logging (root handlers).
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise IndexTTSError(f"The speech server did not start on {host}:{listener.getsockname()[1]} "
                                    f"within {startup_timeout:g} s; see the log above for the reason.")
            time.sleep(0.02)
        yield f"http://{host}:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        listener.close()
