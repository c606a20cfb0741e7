"""Speaker encoders: plumbing with a tiny random WavLM; real offline models on the demo's eSpeak speech.

The real-model tests (resemblyzer's GE2E encoder and pocketsphinx's en-us model, both shipped
inside their wheels) prove that the evaluation pipeline runs real models on real speech and that
their outputs behave: same-speaker similarity above cross-speaker similarity, a finite WER. They
say nothing about the quality of IndexTTS output: the audio is eSpeak NG's, not a fine-tuned model's.
"""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import write_tiny_wavlm

from demo_data import make_demo_dataset
from indextts.errors import EvaluationError
from indextts.asr.backends import load_asr
from indextts.evaluation.metrics import pooled, score
from indextts.evaluation.run_inputs import EvalItem
from indextts.evaluation.scoring import Scorer
from indextts.evaluation.speaker import cosine_similarity, load_speaker_encoder


@pytest.fixture(scope="module")
def demo_clips(tmp_path_factory) -> list[tuple[str, np.ndarray, int, str]]:
    """(speaker, samples, sample rate, text) of 6 demo sentences per speaker (en, zh and mixed)."""
    clips = []
    for audio_list in make_demo_dataset(tmp_path_factory.mktemp("demo"), sentences_per_speaker=6, seed=0):
        for line in audio_list.read_text(encoding="utf-8").splitlines():
            path, text = line.split("\t")
            samples, sample_rate = sf.read(audio_list.parent / path, dtype="float32")
            clips.append((audio_list.stem, samples, sample_rate, text))
    return clips


def test_tiny_wavlm_plumbing_gives_unit_vectors_for_any_rate_layout_and_length(tmp_path):
    encoder = load_speaker_encoder(f"wavlm:{write_tiny_wavlm(tmp_path / 'wavlm')}")
    rng = np.random.default_rng(0)
    mono = rng.normal(0.0, 0.1, 24000).astype(np.float32)
    stereo = np.stack([mono, mono], axis=1)
    embedding = encoder.embed(mono, 24000)
    assert embedding.shape == (8,) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(encoder.embed(stereo, 24000), embedding, atol=1e-5)
    assert np.allclose(encoder.embed(mono, 24000), embedding)  # deterministic
    short = encoder.embed(mono[:500], 24000)  # padded to MIN_SECONDS instead of failing in the x-vector layers
    assert np.linalg.norm(short) == pytest.approx(1.0, abs=1e-5)
    assert encoder.name.startswith("wavlm:")


@pytest.mark.parametrize("spec", ["ecapa", "wavlm", "resemblyzer:large", ""])
def test_unknown_speaker_encoder_names_the_valid_ones(spec):
    with pytest.raises(EvaluationError, match="wavlm:<local path or hub id>' or 'resemblyzer"):
        load_speaker_encoder(spec)


def test_missing_resemblyzer_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # import fails as if not installed
    with pytest.raises(EvaluationError, match=r"\[eval\]"):
        load_speaker_encoder("resemblyzer")


def test_cosine_similarity():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(0.0)
    assert cosine_similarity(np.zeros(2), np.array([1.0, 0.0])) == 0.0


def test_resemblyzer_real_model_same_speaker_sim_above_cross_speaker_for_every_pair(demo_clips):
    """Real GE2E weights on real (eSpeak) speech: every same-speaker pair beats every cross-speaker pair.

    This proves the SIM pipeline on a real model, not the quality of IndexTTS output.
    """
    encoder = load_speaker_encoder("resemblyzer")
    embeddings = [(speaker, encoder.embed(samples, rate)) for speaker, samples, rate, _ in demo_clips]
    same, cross = [], []
    for (first, a), (second, b) in itertools.combinations(embeddings, 2):
        (same if first == second else cross).append(cosine_similarity(a, b))
    assert len(same) == 30 and len(cross) == 36
    assert min(same) > max(cross), (min(same), max(cross))


def test_pocketsphinx_real_model_wer_on_english_demo_clips_is_finite(demo_clips, capsys):
    """Real en-us PocketSphinx on the English demo clips: a finite, recorded WER.

    eSpeak's robotic voice is hard for a small 2015 model, so the number is high; it proves the
    ASR-to-WER pipeline on a real model, not the quality of IndexTTS output.
    """
    asr = load_asr("pocketsphinx")
    english = [(samples, rate, text) for _, samples, rate, text in demo_clips if text.isascii()]
    counts = [score(text, asr.transcribe(samples, rate, "en").text).counts["en"] for samples, rate, text in english]
    wer = pooled(counts).rate
    assert len(english) == 4 and wer is not None and np.isfinite(wer)
    with capsys.disabled():
        print(f"\npocketsphinx WER on {len(english)} English eSpeak demo clips: {wer:.3f}")


def test_scorer_counts_silence_as_all_deleted_and_the_reference_as_itself(demo_clips, tmp_path):
    """Real offline models inside the Scorer: a silent synthesis loses every word and gets no SIM."""
    speaker, samples, rate, text = next(clip for clip in demo_clips if clip[3].isascii())
    reference = tmp_path / "reference.wav"
    sf.write(reference, samples, rate)
    scorer = Scorer({"en": "pocketsphinx"}, "resemblyzer", {speaker: reference})
    item = EvalItem(speaker, "u1", text, None, seed=0)
    silent = scorer.score(item, np.zeros(10, dtype=np.float32), rate)
    assert silent["transcript"] == "" and silent["sim"] is None
    assert silent["errors_mixed"] == silent["tokens_mixed"] == len(text.split())
    itself = scorer.score(item, samples, rate)
    assert itself["sim"] == pytest.approx(1.0, abs=1e-5) and itself["asr"] == "pocketsphinx"
    chinese = scorer.score(EvalItem(speaker, "u2", "今天天气很好。", None, seed=0), samples, rate)
    assert chinese["asr"] is None and chinese["transcript"] is None and "errors_mixed" not in chinese


def test_sim_auto_is_wavlm_when_loadable_else_the_offline_resemblyzer(monkeypatch):
    import importlib.util

    from indextts.evaluation import speaker
    from indextts.evaluation.speaker import choose_speaker_encoder

    assert choose_speaker_encoder("resemblyzer") == "resemblyzer"
    monkeypatch.setattr(speaker, "model_available", lambda source: True)
    assert choose_speaker_encoder("auto") == "wavlm:microsoft/wavlm-base-plus-sv"
    monkeypatch.setattr(speaker, "model_available", lambda source: False)
    if importlib.util.find_spec("resemblyzer") is not None:
        assert choose_speaker_encoder("auto") == "resemblyzer"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "resemblyzer" else real_find_spec(name, *a))
    with pytest.raises(EvaluationError, match=r"No speaker encoder is available here.*pip install --no-deps resemblyzer"):
        choose_speaker_encoder("auto")


@pytest.mark.parametrize("rate", [22050, 24000])  # IndexTTS-2/2.5 output, IndexTTS 1.x output
def test_a_synthesis_is_resampled_once_for_asr_and_sim(tmp_path, monkeypatch, rate):
    from helpers import write_tiny_whisper

    from indextts.asr import backends

    reference = tmp_path / "reference.wav"
    clip = np.random.default_rng(0).normal(0.0, 0.1, rate).astype(np.float32)
    sf.write(reference, clip, rate)
    scorer = Scorer({"*": f"whisper:{write_tiny_whisper(tmp_path / 'whisper')}"},
                    f"wavlm:{write_tiny_wavlm(tmp_path / 'wavlm')}", {"a": reference})
    calls = []
    resample = backends.soxr.resample
    monkeypatch.setattr(backends.soxr, "resample", lambda *args, **kwargs: calls.append(args[1:3]) or
                        resample(*args, **kwargs))
    row = scorer.score(EvalItem("a", "u1", "Hello there.", None, seed=0), clip, rate)
    assert calls == [(rate, 16000)]
    assert row["sim"] == pytest.approx(1.0, abs=1e-5) and row["transcript"] is not None
