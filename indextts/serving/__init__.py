"""The OpenAI-compatible HTTP speech server (``indextts-serve``; ``python -m indextts.serving`` is the
same): the FastAPI app (``app``), the IndexTTS-2/2.5 request fields (``emotion_fields``), the model
thread with its bounded queue and dynamic batching (``worker``), several bases behind one synthesiser
(``router``) and which base each run speaks on (``bases``), JSON error answers (``http_errors``), the
audio encodings (``audio_encoding``) and a runner on a loopback port (``background``).
"""

from indextts.serving.app import CODES_HEADER, ServerSettings, codes_digest, create_app
from indextts.serving.background import serve_in_background
from indextts.serving.router import VoiceRouter

__all__ = ["CODES_HEADER", "ServerSettings", "VoiceRouter", "codes_digest", "create_app", "serve_in_background"]
