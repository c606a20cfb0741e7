"""indextts-serve with one base per family: the tiny IndexTTS-1.5, IndexTTS-2 and 2.5 folders behind one
server, a voice on each, over HTTP. Every answer is checked against the same request run directly."""

from __future__ import annotations

import base64
import io
from dataclasses import replace

import httpx
import numpy as np
import pytest
import soundfile as sf

from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.inference.synthesis import to_pcm16
from indextts.lora import TrainedSpeaker
from indextts.serving import CODES_HEADER, ServerSettings, VoiceRouter, codes_digest, create_app, serve_in_background

pytestmark = pytest.mark.slow

GREEDY = SynthesisOptions(GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=12, seed=3), pause_seconds=0.05,
                          max_text_tokens_per_sentence=12)
TEXT = "Hello world. This is a test."
SPEECH = "/v1/audio/speech"
VOICES = {"old:ann": ("1.5", 24000), "two:bea": ("2", 22050), "multi:cid": ("2.5", 22050)}


def _clip(path, seconds: float, rate: int, frequency: float):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * frequency * t) * (1 + np.sin(7 * t))).astype(np.float32), rate)
    return path


def _speaker(tts: IndexTTS, clip) -> TrainedSpeaker:
    """A trained-speaker record made from a clip (what training would save), so the voice speaks by name."""
    voice = tts.voice(reference_audio=clip)
    if tts.family.generation == 1:
        return TrainedSpeaker(voice.condition.float(), voice.reference_mel.transpose(0, 1).float())
    return TrainedSpeaker(voice.condition.float(), voice.prompt.mel, emotion=voice.emotion.float(),
                          prompt_semantic=voice.prompt.semantic, style=voice.prompt.style)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_v2_clips")
    return _clip(root / "voice.wav", 1.5, 24000, 220.0), _clip(root / "emotion.wav", 1.2, 16000, 330.0)


@pytest.fixture(scope="module")
def engines(tiny_model_dir, tiny_v2_dirs, clips) -> dict[str, IndexTTS]:
    """voice id -> the base that speaks it, each with one speaker added by name."""
    folders = {"old:ann": tiny_model_dir, "two:bea": tiny_v2_dirs["2"], "multi:cid": tiny_v2_dirs["2.5"]}
    engines = {}
    for voice_id, folder in folders.items():
        tts = IndexTTS.from_pretrained(folder, device="cpu", vocoder_mode="exact")
        run, speaker = voice_id.split(":")
        tts.add_speakers(run, {speaker: _speaker(tts, clips[0])})
        engines[voice_id] = tts
    return engines


@pytest.fixture(scope="module")
def server(engines):
    settings = ServerSettings(options=GREEDY, expose_codes=True, batch_wait=0.05)
    with serve_in_background(create_app(VoiceRouter(list(engines.values())), settings)) as url:
        yield url


def _speak(url: str, voice: str, **fields) -> httpx.Response:
    body = {"input": TEXT, "voice": voice, "response_format": "wav", **fields}
    return httpx.post(f"{url}{SPEECH}", json=body, timeout=300)


def test_voices_name_their_family(server):
    data = httpx.get(f"{server}/v1/voices", timeout=10).json()["data"]
    assert {v["id"]: v["family"] for v in data} == {voice: family for voice, (family, _) in VOICES.items()}


@pytest.mark.parametrize("voice", list(VOICES))
def test_each_family_speaks_as_the_library_does(server, engines, voice):
    answer = _speak(server, voice)
    assert answer.status_code == 200, answer.text
    expected = engines[voice].synthesize(TEXT, voice=voice, options=GREEDY)
    assert int(answer.headers["X-Sample-Rate"]) == expected.sample_rate == VOICES[voice][1]
    assert answer.headers[CODES_HEADER] == codes_digest(expected.codes)
    audio, rate = sf.read(io.BytesIO(answer.content), dtype="int16")
    assert rate == expected.sample_rate and np.array_equal(audio, to_pcm16(expected.waveform))


@pytest.mark.parametrize("voice", ["two:bea", "multi:cid"])
def test_an_indextts2_stream_joins_to_the_whole_audio(server, engines, voice):
    options = replace(GREEDY, emotion_vector=(0, 0, 0.6, 0, 0, 0, 0, 0), emotion_alpha=0.8)
    with httpx.stream("POST", f"{server}{SPEECH}", timeout=300,
                      json={"input": TEXT, "voice": voice, "response_format": "pcm", "stream": True,
                            "emotion_vector": list(options.emotion_vector), "emotion_alpha": 0.8}) as answer:
        assert answer.status_code == 200
        streamed = b"".join(answer.iter_bytes())
    expected = engines[voice].synthesize(TEXT, voice=voice, options=options)
    assert np.array_equal(np.frombuffer(streamed, dtype="<i2"), to_pcm16(expected.waveform))


def test_emotion_fields_speak_as_the_same_options_do(server, engines, clips):
    clip_field = base64.b64encode(clips[1].read_bytes()).decode()
    answer = _speak(server, "multi:cid", emotion_audio_base64=clip_field, emotion_alpha=0.5, duration_factor=1.5)
    assert answer.status_code == 200, answer.text
    options = replace(GREEDY, emotion_audio=str(clips[1]), emotion_alpha=0.5, duration_factor=1.5)
    expected = engines["multi:cid"].synthesize(TEXT, voice="multi:cid", options=options)
    assert answer.headers[CODES_HEADER] == codes_digest(expected.codes)
    audio, _ = sf.read(io.BytesIO(answer.content), dtype="int16")
    assert np.array_equal(audio, to_pcm16(expected.waveform))
    plain = engines["multi:cid"].synthesize(TEXT, voice="multi:cid", options=GREEDY)
    assert len(expected.waveform) > len(plain.waveform)  # duration_factor 1.5 speaks longer


def test_emotion_on_a_15_voice_and_duration_on_indextts2_answer_400(server):
    for voice, fields in (("ann", {"emotion_vector": [0.5] + [0] * 7}), ("bea", {"duration_factor": 1.2})):
        answer = _speak(server, voice, **fields)
        assert answer.status_code == 400 and answer.json()["error"]["param"] == next(iter(fields))
    assert httpx.get(f"{server}/health", timeout=10).json()["status"] == "ok"


def test_the_command_line_loads_one_base_per_family_with_its_runs(tiny_model_dir, tiny_v2_dirs):
    from indextts.cli.serve import build_parser, load_tts

    args = build_parser().parse_args(["--model_dir", str(tiny_model_dir), "--model_dir", str(tiny_v2_dirs["2.5"]),
                                      "--device", "cpu"])
    router = load_tts(args)
    assert [base.family.version for base in router.bases] == ["1.5", "2.5"]
    assert [base.base.root for base in router.bases] == [tiny_model_dir.resolve(), tiny_v2_dirs["2.5"].resolve()]
