"""The HTTP speech server's parts: the FastAPI app (``app``), the model thread with its bounded queue
and dynamic batching (``worker``), JSON error answers (``http_errors``) and the audio encodings
(``audio_encoding``). Start it with ``indextts-serve`` or :mod:`indextts.serve`.
"""
