"""The whole IndexTTS-2/2.5 workflow through the user's commands, in order, on the same files (issue 24).

prepare (two speakers' long recordings) -> extract -> train (2 speakers) -> eval --promote -> infer by speaker
name with an emotion vector and with an emotion clip -> serve (one request per voice, one streamed) -> the web
UI's speak function. Each command runs as its console script's ``main(argv)`` in this process (as
``indextts voice build`` runs them), which spares a torch import per command. The recordings are the long eSpeak
recordings of the two demo speakers (``voice_recordings``), transcribed offline with PocketSphinx; eval scores
with the tiny random Whisper and WavLM of test_eval.py. Every stage has its own tests; this one checks that each
stage reads what the one before it wrote.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

import httpx
import numpy as np
import pytest
import soundfile as sf
from helpers import write_tiny_wavlm, write_tiny_whisper

from indextts.cli import eval as eval_cli
from indextts.cli import extract, infer, prepare, serve, train
from indextts.cli.options import synthesis_options_from_args
from indextts.serving import ServerSettings, create_app, serve_in_background
from indextts.webui import backend, emotion_controls

pytestmark = pytest.mark.slow

SPEAKERS = ("demo_speaker_a", "demo_speaker_b")
SAMPLE_RATE = 22050
"""IndexTTS-2/2.5 speak at BigVGAN v2's 22.05 kHz."""
FEW_TOKENS = ["--max_mel_tokens", "12", "--device", "cpu"]
GREEDY = ["--no-do_sample", "--num_beams", "1", *FEW_TOKENS]
"""Greedy decoding: a sampled code of the tiny random model may end every sentence at once (no audio)."""
EMOTION = "0,0,0.6,0,0,0,0,0"
TEXT = "Hello there. This is my voice."


def run(main, argv: list) -> None:
    """Run one command as its console script does; it must exit 0."""
    assert main([str(arg) for arg in argv]) == 0, f"{main.__module__} {argv} failed"


def prepare_and_extract(recordings, base, root) -> str:
    """indextts-prepare per speaker, then indextts-extract of both lists; returns speaker_info.json's path."""
    lists = []
    for speaker in SPEAKERS:
        output = root / "prepared" / speaker
        run(prepare.main, ["--input", recordings / speaker, "--output_dir", output, "--speaker", speaker,
                           "--model_dir", base, "--asr", "pocketsphinx", "--language", "en", "--no_progress"])
        lists.append(output / f"{speaker}.lst")
    features = root / "features"
    run(extract.main, [*(a for path in lists for a in ("--audio_list", path)), "--extract_condition",
                       "--model_dir", base, "--output_dir", features, "--device", "cpu", "--num_workers", "0",
                       "--valid_ratio", "0.25", "--min_duration", "0.1", "--no_progress"])
    return features / "speaker_info.json"


def train_and_promote(base, speaker_info, run_dir, root) -> None:
    """indextts-train a few steps (checkpoints kept), then indextts-eval --promote with the tiny backends."""
    run(train.main, [f"model_dir={base}", f"speaker_info={speaker_info}", f"run_dir={run_dir}", "train.device=cpu",
                     "train.precision=fp32", "train.max_steps=2", "train.save_every_steps=1", "train.val_every_steps=0",
                     "train.keep_checkpoints=2", "data.num_workers=0", "data.min_duration=0.1"])
    run(eval_cli.main, ["--run", run_dir, "--promote", "--asr", f"whisper:{write_tiny_whisper(root / 'whisper')}",
                        "--sim", f"wavlm:{write_tiny_wavlm(root / 'wavlm')}", "--max_per_speaker", "1", *FEW_TOKENS])
    best = json.loads((run_dir / "eval" / "best.json").read_text(encoding="utf-8"))["best"]
    promoted = run_dir / "checkpoints" / best / "adapter" / "adapter_model.safetensors"
    assert (run_dir / "adapter" / "adapter_model.safetensors").read_bytes() == promoted.read_bytes()


def infer_by_name(run_dir, emotion_clip, root) -> None:
    """indextts-infer --run_dir --speaker with an emotion vector, then with an emotion clip: 22.05 kHz wavs."""
    for name, emotion in (("vector", ["--emotion_vector", EMOTION]), ("clip", ["--emotion_audio", emotion_clip])):
        output = root / f"infer_{name}.wav"
        run(infer.main, ["--run_dir", run_dir, "--speaker", SPEAKERS[0], "--text", TEXT, "--output", output,
                         *emotion, *GREEDY])
        info = sf.info(output)
        assert info.samplerate == SAMPLE_RATE and info.frames > 0, name


def speak_through_the_server(base, run_dir) -> None:
    """indextts-serve's router and options from its command line: one request per voice, one streamed."""
    args = serve.build_parser().parse_args([str(a) for a in ("--model_dir", base, "--run_dir", run_dir, *GREEDY)])
    app = create_app(serve.load_tts(args), ServerSettings(options=synthesis_options_from_args(args)))
    with serve_in_background(app) as url:
        voices = [v["id"] for v in httpx.get(f"{url}/v1/voices", timeout=10).json()["data"]]
        assert sorted(voice.split(":")[-1] for voice in voices) == sorted(SPEAKERS)
        for voice in voices:
            answer = httpx.post(f"{url}/v1/audio/speech", timeout=300,
                                json={"input": TEXT, "voice": voice, "response_format": "wav"})
            assert answer.status_code == 200, answer.text
            assert sf.info(io.BytesIO(answer.content)).samplerate == SAMPLE_RATE
        body = {"input": TEXT, "voice": voices[0], "response_format": "pcm", "stream": True,
                "emotion_vector": [float(w) for w in EMOTION.split(",")]}
        with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=300) as answer:
            assert answer.status_code == 200
            assert len(b"".join(answer.iter_bytes())) > 0


def speak_in_the_web_ui(base, run_dir) -> None:
    """The web UI's Listen tab: load the run's voices on the base, speak one with an emotion vector."""
    bank = backend.load_voices(str(base), str(run_dir), "cpu")
    voice = next(v for v in bank.voices if v.endswith(SPEAKERS[1]))
    advanced = backend.synthesis_options(temperature=0.8, top_p=0.8, top_k=30, num_beams=1, seed=0, sentence_tokens=40)
    advanced.generation = replace(advanced.generation, do_sample=False, max_new_tokens=12)
    weights = [float(w) for w in EMOTION.split(",")]
    options = emotion_controls.apply(advanced, bank.family, *weights, None, 1.0, "", 1.0)
    assert options.emotion_vector == tuple(weights)
    pieces = list(bank.stream(TEXT, voice, None, options))
    assert pieces and all(rate == SAMPLE_RATE and np.isfinite(piece).all() for rate, piece in pieces)


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_the_whole_workflow_runs_through_the_commands(version, tiny_v2_dirs, voice_recordings, tmp_path):
    base = tiny_v2_dirs[version]
    speaker_info = prepare_and_extract(voice_recordings, base, tmp_path)
    run_dir = tmp_path / "runs" / "voices"
    train_and_promote(base, speaker_info, run_dir, tmp_path)
    emotion_clip = next((tmp_path / "prepared" / SPEAKERS[1]).rglob("*.wav"))
    infer_by_name(run_dir, emotion_clip, tmp_path)
    speak_through_the_server(base, run_dir)
    speak_in_the_web_ui(base, run_dir)
