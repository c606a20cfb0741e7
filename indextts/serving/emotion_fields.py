"""The IndexTTS-2/2.5 extensions of ``POST /v1/audio/speech``: emotion and duration fields.

``emotion_vector`` (8 weights), ``emotion_alpha``, ``emotion_text`` and ``duration_factor`` map to
the SynthesisOptions fields of the same names. An emotion clip comes only as ``emotion_audio_base64``
(the audio file's bytes, base64): it is written to a private temporary folder (mode 0700) that the
server removes when the request ends, so a request can never name a path on the server. Every bad
value answers 400 before the request is queued.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import soundfile as sf

from indextts.errors import IndexTTSError
from indextts.families import Family
from indextts.inference.synthesis import SynthesisOptions
from indextts.serving.http_errors import InvalidFieldError

OPTION_FIELDS = ("emotion_vector", "emotion_alpha", "emotion_text", "duration_factor")
"""Request fields copied onto SynthesisOptions when the request sets them."""
CLIP_FIELD = "emotion_audio_base64"
EXTENSION_FIELDS = (*OPTION_FIELDS, CLIP_FIELD)


class EmotionClip:
    """A request's emotion clip in its own private temporary folder; ``remove()`` deletes both.

    The file is named by the SHA-256 of its bytes: synthesis caches a clip's emotion by path, so a
    path that ever comes back (a reused temporary name) always holds the same audio.
    """

    def __init__(self, data: bytes):
        self.folder = Path(tempfile.mkdtemp(prefix="indextts-emotion-"))
        self.path = self.folder / hashlib.sha256(data).hexdigest()
        self.path.write_bytes(data)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _set_fields(body) -> list[str]:
    return [name for name in EXTENSION_FIELDS if getattr(body, name) is not None]


def check_family(body, voice: str, family: Family | None) -> None:
    """Refuse emotion fields for a voice whose base has none, and duration_factor on IndexTTS-2."""
    chosen = _set_fields(body)
    if family is None or not chosen:
        return
    if family.generation == 1:
        raise InvalidFieldError(
            f"The voice '{voice}' speaks on an {family} base, which has no emotion or duration control, but the "
            f"request sets {', '.join(chosen)}. Leave these fields out, or pick an IndexTTS-2/2.5 voice "
            "(GET /v1/voices shows each voice's family).", chosen[0])
    if not family.multilingual and body.duration_factor not in (None, 1.0):
        raise InvalidFieldError(
            f"The voice '{voice}' speaks on an {family} base; duration_factor is an IndexTTS-2.5 control. Leave "
            "it out (or 1.0), or pick an IndexTTS-2.5 voice.", "duration_factor")


def decode_clip(text: str, max_bytes: int) -> EmotionClip:
    """The base64 clip as a private temporary file; InvalidFieldError for bad base64, too many bytes or non-audio."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidFieldError(f"{CLIP_FIELD} is not valid base64. Send the audio file's bytes base64-encoded "
                                "(e.g. `base64 -w0 clip.wav`).", CLIP_FIELD) from None
    if len(data) > max_bytes:
        raise InvalidFieldError(f"The emotion clip has {len(data)} bytes; this server accepts at most {max_bytes}. "
                                "Send a shorter clip (a few seconds is enough).", CLIP_FIELD)
    clip = EmotionClip(data)
    try:
        sf.info(str(clip.path))
    except sf.LibsndfileError:
        clip.remove()
        raise InvalidFieldError(f"{CLIP_FIELD} does not hold audio this server can read. Send a WAV, FLAC or "
                                "OGG file, base64-encoded.", CLIP_FIELD) from None
    return clip


def request_options(defaults: SynthesisOptions, body, clip: EmotionClip | None) -> SynthesisOptions:
    """The server's options with the request's emotion fields, validated (InvalidFieldError naming the problem)."""
    changes = {name: getattr(body, name) for name in OPTION_FIELDS if getattr(body, name) is not None}
    if "emotion_vector" in changes:
        changes["emotion_vector"] = tuple(float(v) for v in changes["emotion_vector"])
    if clip is not None:
        changes["emotion_audio"] = str(clip.path)
    if not changes:
        return defaults
    options = replace(defaults, **changes)
    try:
        options.validate()
    except IndexTTSError as error:
        first = next(iter(changes))
        raise InvalidFieldError(str(error), CLIP_FIELD if first == "emotion_audio" else first) from None
    return options
