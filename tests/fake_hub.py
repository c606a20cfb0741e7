"""A local model hub for tests: the HTTP routes huggingface_hub calls, serving small in-memory repositories.

Routes: ``GET /api/models/<repo>[/revision/<rev>]`` (model info with file metadata) and
``HEAD``/``GET /<repo>/resolve/<rev>/<path>`` (ETag, X-Repo-Commit, Content-Length, range requests).
Files named like weights are served as LFS files (sha256 metadata), the others as git blobs. Faults on
request: a corrupted file (same size, other bytes), a failing download (500) and a stall (a GET that sends part of a file, then
waits until the test releases it).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import numpy as np

LFS_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".model")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """``with FakeHub({"org/name": {"path": b"bytes"}}) as hub:`` serves at ``hub.endpoint``."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.commits = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in repos}
        self.corrupted: set[tuple[str, str]] = set()
        self.failing: set[tuple[str, str]] = set()
        """Files whose download (GET) answers 500."""
        self.stall_at: dict[tuple[str, str], int] = {}
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.requests: list[tuple[str, str, str | None]] = []
        """(method, path, Range header) of every request, in order."""
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), HubRequestHandler)
        self.server.daemon_threads = True
        self.server.hub = self
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def gets(self, repo: str, name: str) -> list[str | None]:
        """The Range headers of the downloads (GET) of ``name`` from ``repo``, in order."""
        return [rng for method, path, rng in self.requests if method == "GET"
                and path.startswith(f"/{repo}/resolve/") and path.split("/", 5)[5] == name]

    def sibling(self, repo: str, path: str) -> dict:
        data = self.repos[repo][path]
        entry = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "pointerSize": 130}
        return entry

    def etag(self, repo: str, path: str) -> str:
        entry = self.sibling(repo, path)
        return entry["lfs"]["sha256"] if "lfs" in entry else entry["blobId"]

    def served_bytes(self, repo: str, path: str) -> bytes:
        data = self.repos[repo][path]
        return (np.frombuffer(data, np.uint8) ^ 0xFF).tobytes() if (repo, path) in self.corrupted else data


class HubRequestHandler(BaseHTTPRequestHandler):
    """Answers one request from the FakeHub at ``self.server.hub``."""

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        self.hub.requests.append((self.command, path, self.headers.get("Range")))
        info = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if info:
            self._model_info(info[1], info[2] or "main")
        elif resolve:
            self._resolve(resolve[1], resolve[2], resolve[3], send_body)
        else:
            self._error(404, "RepoNotFound")

    def _json(self, status: int, value: dict, error_code: str | None = None) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        if error_code:
            self.send_header("X-Error-Code", error_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        self._json(status, {"error": code}, code)

    def _known(self, repo: str, revision: str) -> bool:
        if repo not in self.hub.repos:
            self._error(404, "RepoNotFound")
        elif revision not in ("main", self.hub.commits[repo]):
            self._error(404, "RevisionNotFound")
        else:
            return True
        return False

    def _model_info(self, repo: str, revision: str) -> None:
        if not self._known(repo, revision):
            return
        self._json(200, {"id": repo, "sha": self.hub.commits[repo],
                         "siblings": [self.hub.sibling(repo, name) for name in self.hub.repos[repo]]})

    def _resolve(self, repo: str, revision: str, name: str, send_body: bool) -> None:
        if not self._known(repo, revision):
            return
        if name not in self.hub.repos[repo]:
            self._error(404, "EntryNotFound")
            return
        if send_body and (repo, name) in self.hub.failing:
            self._json(500, {"error": "the hub is overloaded"})
            return
        data = self.hub.served_bytes(repo, name)
        start = int(re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "bytes=0-")[1])
        self.send_response(206 if start else 200)
        self.send_header("X-Repo-Commit", self.hub.commits[repo])
        self.send_header("ETag", f'"{self.hub.etag(repo, name)}"')
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if send_body:
            self._send(data[start:], self.hub.stall_at.pop((repo, name), None) if not start else None)

    def _send(self, data: bytes, stall_at: int | None) -> None:
        if stall_at is None:
            self.wfile.write(data)
            return
        self.wfile.write(data[:stall_at])
        self.wfile.flush()
        self.hub.stalled.set()
        self.hub.release.wait(60)
        self.close_connection = True

