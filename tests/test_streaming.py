"""Streaming within a sentence: settled codes, crossfaded windows, and the pieces against whole synthesis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tone

from indextts.errors import InferenceError
from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.inference.synthesis import CrossfadeStitcher, settled_speech_codes, silence_min_total, trim_silence_runs

SILENCE = 52
CODES = 48
TEXT = "The weather is lovely this morning. We walk."
GOLDEN_TOLERANCE = 1e-3  # the conformance README's waveform tolerance; crossfades included


@pytest.mark.parametrize("mode", ["reference", "strict", "off"])
def test_settled_codes_begin_the_trimmed_sentence_at_every_step(mode):
    """Random sentences rich in silence runs: what is settled after k codes never changes later."""
    generator = torch.Generator().manual_seed(0)
    min_total = silence_min_total(mode)
    for _ in range(40):
        codes = torch.randint(0, 4, (120,), generator=generator)
        codes = torch.where(codes == 0, SILENCE, codes)
        codes[30:55] = SILENCE  # one long run, sometimes pushing the total past the reference's 30
        final = trim_silence_runs(codes, SILENCE, 10, min_total).tolist()
        previous = 0
        for k in range(len(codes) + 1):
            settled = settled_speech_codes(codes[:k], SILENCE, 10, min_total).tolist()
            assert settled == final[: len(settled)]
            assert len(settled) >= previous
            previous = len(settled)


def test_settled_codes_wait_inside_an_undecided_long_silence():
    codes = torch.tensor([1, 2] + [SILENCE] * 14 + [3])
    settled = settled_speech_codes(codes, SILENCE, 10, silence_min_total("reference"))
    assert settled.tolist() == [1, 2] + [SILENCE] * 10
    assert settled_speech_codes(codes, SILENCE, 10, 0).tolist() == [1, 2] + [SILENCE] * 10 + [3]


def test_the_stitcher_gives_back_one_signal_from_overlapping_windows():
    """Windows that agree on their overlap come out as the signal itself, crossfades included."""
    signal = np.sin(np.arange(1000, dtype=np.float32) / 7)
    stitcher, pieces, start = CrossfadeStitcher(overlap=40), [], 0
    for end in (100, 110, 400, 1000):
        begin = start - len(stitcher.held)
        pieces.append(stitcher.add(signal[begin:end], last=end == 1000))
        start = end
    np.testing.assert_allclose(np.concatenate(pieces), signal, atol=1e-6)
    assert [len(piece) for piece in pieces] == [60, 40, 260, 640]  # a short window holds back less


@pytest.fixture(scope="module")
def tts(tiny_model_dir, tmp_path_factory) -> IndexTTS:
    return IndexTTS.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "reference.wav"
    sf.write(str(path), tone(2.0, 24000, 150.0), 24000)
    return path


@pytest.mark.parametrize("generation", [dict(do_sample=False, num_beams=1, repetition_penalty=1.0),
                                        dict(num_beams=3, seed=2)], ids=["greedy", "default"])
def test_the_first_sentence_streams_in_pieces_that_join_into_its_audio(tts, reference_wav, generation, monkeypatch):
    options = SynthesisOptions(GenerationConfig(max_new_tokens=CODES, min_new_tokens=CODES, **generation),
                               silence_trimming="off")
    flags = []
    stream_codes = tts.models.stream_codes
    monkeypatch.setattr(tts.models, "stream_codes",
                        lambda *args, **kwargs: ((rows, flags.append(final) or final)
                                                 for rows, final in stream_codes(*args, **kwargs)))
    chunks = tts.stream(TEXT, reference_audio=reference_wav, options=options, chunk_codes=8)
    first = next(chunks)
    assert True not in flags, "the first piece waited for the whole sentence"
    assert first.sentence_index == 0 and not first.final
    chunks = [first, *chunks]
    whole = tts.synthesize(TEXT, reference_audio=reference_wav, options=options)
    sentence = [c for c in chunks if c.sentence_index == 0]
    assert len(sentence) > 2 and [c.final for c in sentence] == [False] * (len(sentence) - 1) + [True]
    assert torch.cat([c.codes for c in sentence]).tolist() == whole.codes[0].tolist()
    streamed = np.concatenate([c.waveform for c in chunks])
    assert len(streamed) == len(whole.waveform)
    np.testing.assert_allclose(streamed, whole.waveform, atol=GOLDEN_TOLERANCE)


def test_chunk_codes_below_one_is_refused(tts, reference_wav):
    with pytest.raises(InferenceError, match="chunk_codes must be at least 1"):
        next(tts.stream(TEXT, reference_audio=reference_wav, chunk_codes=0))
