"""The server's IndexTTS-2/2.5 extensions and its many bases, with recording synthesisers (no model): voice
routing over bases, the family in /v1/voices, emotion fields reaching SynthesisOptions, 400 for bad values,
and the base64 emotion clip written to a private temporary file that is gone once the request ends."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from helpers import tone

from indextts.errors import VoiceNotFoundError
from indextts.families import FAMILIES
from indextts.inference.api import AudioChunk, SynthesisResult
from indextts.inference.voices import VoiceInfo
from indextts.serving import ServerSettings, VoiceRouter, create_app, serve_in_background

SPEECH = "/v1/audio/speech"
RATE = 22050


@dataclass
class RecordingBase:
    """One base with fixed voices: answers every request with a short tone and records what it was asked,
    including whether the emotion clip was a readable private file at that moment."""

    family: object
    voices: list[VoiceInfo]
    requests: list = field(default_factory=list)
    clip_modes: list = field(default_factory=list)

    def _record(self, request) -> None:
        self.requests.append(request)
        clip = request.options.emotion_audio if request.options else None
        if clip is not None:
            soundfile.info(clip)
            self.clip_modes.append((Path(clip), stat.S_IMODE(os.stat(Path(clip).parent).st_mode)))

    def synthesize_many(self, requests, return_exceptions=False):
        for request in requests:
            self._record(request)
        return [SynthesisResult(tone(0.2, RATE, 440.0), RATE, [r.text], []) for r in requests]

    def stream(self, text, voice=None, options=None):
        self._record(_Request(text, voice, options))
        for index, sentence in enumerate(text.split(".")):
            yield AudioChunk(tone(0.1, RATE, 440.0), RATE, index, sentence, None)


@dataclass
class _Request:
    text: str
    voice: str
    options: object


def _voices(run: str, *speakers: str) -> list[VoiceInfo]:
    return [VoiceInfo(f"{run}:{s}", run, s, s) for s in speakers]


@pytest.fixture
def bases():
    return {"1.5": RecordingBase(FAMILIES["1.5"], _voices("old", "alice", "bob")),
            "2": RecordingBase(FAMILIES["2"], _voices("new", "carol", "bob")),
            "2.5": RecordingBase(FAMILIES["2.5"], _voices("multi", "dave"))}


@pytest.fixture
def server(bases):
    settings = ServerSettings(max_emotion_audio_bytes=200_000)
    with serve_in_background(create_app(VoiceRouter(list(bases.values())), settings)) as url:
        yield url


def _wav_base64(seconds: float = 0.5) -> str:
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, 16000, 330.0), 16000, format="WAV")
    return base64.b64encode(buffer.getvalue()).decode()


def _speak(url: str, voice: str, **fields) -> httpx.Response:
    return httpx.post(f"{url}{SPEECH}", json={"input": "Hello there.", "voice": voice, "response_format": "wav",
                                             **fields}, timeout=30)


def test_voices_list_each_voice_with_its_base_family(server):
    data = httpx.get(f"{server}/v1/voices", timeout=10).json()["data"]
    assert {(v["id"], v["family"]) for v in data} == {
        ("old:alice", "1.5"), ("old:bob", "1.5"), ("new:carol", "2"), ("new:bob", "2"), ("multi:dave", "2.5")}


def test_requests_go_to_the_base_of_their_voice(server, bases):
    assert _speak(server, "alice").status_code == 200
    assert _speak(server, "new:bob").status_code == 200
    assert _speak(server, "dave", stream=True).status_code == 200
    assert [r.voice for r in bases["1.5"].requests] == ["alice"]
    assert [r.voice for r in bases["2"].requests] == ["new:bob"]
    assert [r.voice for r in bases["2.5"].requests] == ["dave"]
    ambiguous = _speak(server, "bob")
    assert ambiguous.status_code == 404 and "new:bob, old:bob" in ambiguous.json()["error"]["message"]
    unknown = _speak(server, "eve").json()["error"]
    assert unknown["code"] == "voice_not_found" and "carol" in unknown["message"]


def test_emotion_fields_reach_the_synthesis_options(server, bases):
    vector = [0, 0.5, 0, 0, 0, 0, 0, 0.25]
    answer = _speak(server, "carol", emotion_vector=vector, emotion_alpha=0.6)
    assert answer.status_code == 200, answer.text
    options = bases["2"].requests[-1].options
    assert (options.emotion_vector, options.emotion_alpha, options.emotion_audio) == (tuple(vector), 0.6, None)
    assert _speak(server, "dave", emotion_text="calm and happy", duration_factor=1.5, stream=True).status_code == 200
    options = bases["2.5"].requests[-1].options
    assert (options.emotion_text, options.duration_factor) == ("calm and happy", 1.5)
    assert _speak(server, "carol").status_code == 200
    assert bases["2"].requests[-1].options.emotion_vector is None


@pytest.mark.parametrize("stream", [False, True])
def test_an_emotion_clip_is_a_private_file_removed_after_the_request(server, bases, stream):
    clip = _wav_base64()
    answer = _speak(server, "carol", emotion_audio_base64=clip, emotion_alpha=0.5, stream=stream)
    assert answer.status_code == 200, answer.text
    (path, mode), = bases["2"].clip_modes
    assert mode == 0o700 and not path.exists() and not path.parent.exists()
    assert path.name == hashlib.sha256(base64.b64decode(clip)).hexdigest()  # a path names one content only


@pytest.mark.parametrize(("voice", "fields", "param", "words"), [
    ("carol", {"emotion_vector": [0.1] * 7}, "emotion_vector", "needs 8 values"),
    ("carol", {"emotion_vector": [0, 0, 0, 0, 0, 0, 0, 1.5]}, "emotion_vector", "between 0 and 1.2"),
    ("carol", {"emotion_alpha": 1.5}, "emotion_alpha", "emotion_alpha must lie in [0, 1]"),
    ("carol", {"emotion_vector": [0] * 8, "emotion_text": "sad"}, "emotion_vector", "choose one emotion source"),
    ("alice", {"emotion_vector": [0] * 8}, "emotion_vector", "IndexTTS-1.5 base"),
    ("alice", {"emotion_audio_base64": _wav_base64()}, "emotion_audio_base64", "IndexTTS-1.5 base"),
    ("carol", {"duration_factor": 1.5}, "duration_factor", "IndexTTS-2.5 control"),
    ("dave", {"duration_factor": 3.0}, "duration_factor", "duration_factor must lie in"),
    ("carol", {"emotion_audio_base64": "not base64!"}, "emotion_audio_base64", "not valid base64"),
    ("carol", {"emotion_audio_base64": base64.b64encode(b"hello").decode()}, "emotion_audio_base64",
     "does not hold audio"),
    ("carol", {"emotion_audio_base64": _wav_base64(6.5)}, "emotion_audio_base64", "accepts at most 200000"),
])
def test_bad_emotion_fields_answer_400_before_queueing(server, bases, voice, fields, param, words):
    answer = _speak(server, voice, **fields)
    error = answer.json()["error"]
    assert answer.status_code == 400 and (error["code"], error["param"]) == ("invalid_value", param), error
    assert words in error["message"]
    assert not any(base.requests for base in bases.values())


def test_a_body_over_the_limit_with_its_clip_is_refused_unread(server):
    answer = _speak(server, "carol", emotion_audio_base64=_wav_base64(20.0))
    error = answer.json()["error"]
    assert answer.status_code == 413 and "smaller emotion clip" in error["message"]


def test_one_base_without_a_family_passes_requests_through():
    base = RecordingBase(None, _voices("run", "alice"))
    router = VoiceRouter([base])
    assert router.family_of("nobody") is None and router.voices[0].family is None
    router.synthesize_many([_Request("Hi.", "nobody", None)])
    assert base.requests[0].voice == "nobody"


def test_many_bases_refuse_a_voice_id_twice_and_report_unknown_voices_per_request(bases):
    with pytest.raises(Exception, match="offered by two base folders"):
        VoiceRouter([bases["1.5"], RecordingBase(FAMILIES["2"], _voices("old", "alice"))])
    router = VoiceRouter(list(bases.values()))
    results = router.synthesize_many([_Request("a", "eve", None), _Request("b", "dave", None)], return_exceptions=True)
    assert isinstance(results[0], VoiceNotFoundError) and isinstance(results[1], SynthesisResult)
    assert isinstance(results[1].waveform, np.ndarray)
