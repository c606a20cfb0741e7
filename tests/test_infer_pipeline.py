"""Batched synthesis end to end: vocoder batches, many requests, streaming, precision, and empty results."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import conformance_folders, write_lora_run
from safetensors.torch import load_file

from indextts.checkpoint_folder import CheckpointFolder
from indextts.bigvgan.activations import Activation1d
from indextts.cli.infer import build_parser, load_model, main
from indextts.errors import AudioError, InferenceError, TextTooLongError
from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SpeechRequest, SynthesisOptions
from indextts.inference.speech import VOCODER_EDGE_FRAMES, SpeechModels

GREEDY = SynthesisOptions(GenerationConfig(max_new_tokens=10, num_beams=1, do_sample=False), pause_seconds=0.05,
                          max_text_tokens_per_sentence=12)
LONG_TEXT = "今天天气很好，我们去公园散步吧。The weather is lovely this morning. 我今天用 Python 写了一个 demo，效果不错。"
GOLDEN_TOLERANCE = 1e-3  # the conformance README's waveform tolerance


def _codes(codes) -> list[list[int]]:
    return [c.tolist() for c in codes]


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory) -> Path:
    t = np.arange(48000) / 24000
    path = tmp_path_factory.mktemp("ref") / "reference.wav"
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32),
             24000)
    return path


@pytest.fixture(scope="module")
def tts(tiny_model_dir, tmp_path_factory, reference_wav) -> IndexTTS:
    """The tiny base with two runs (voices a:alice, a:bob, b:alice, b:bob) and batched vocoding forced on."""
    folder = CheckpointFolder(tiny_model_dir)
    mel = SpeechModels(folder.cfg, folder.load_gpt(), folder.load_bigvgan(), "cpu").reference_mel(reference_wav)
    root = tmp_path_factory.mktemp("pipeline_runs")
    runs = {name: write_lora_run(root / name, folder.load_gpt(), mel, seed=seed, identity=folder.identity())
            for name, seed in (("a", 0), ("b", 1))}
    model = IndexTTS.from_pretrained(tiny_model_dir, adapters=runs, device="cpu")
    model.models.vocoder_batching = True
    return model


def test_vocoder_batches_give_each_row_what_it_gets_alone(tts):
    generator = torch.Generator().manual_seed(0)
    lengths = [5, 9, 9, 2 * VOCODER_EDGE_FRAMES + 3, 47, 0, 60]
    latents = [torch.randn(n, tts.models.gpt.model_dim, generator=generator) for n in lengths]
    embeddings = [tts.models.speaker_embedding(torch.randn(40 + 10 * i, 100, generator=generator)) for i in range(len(lengths))]
    with torch.inference_mode():
        batched = tts.models.vocode(latents, embeddings)
        tts.models.vocoder_batching = False
        alone = tts.models.vocode(latents, embeddings)
        tts.models.vocoder_batching = True
    for n, mine, theirs in zip(lengths, batched, alone):
        assert len(mine) == len(theirs) == n * tts.samples_per_code
        np.testing.assert_allclose(mine, theirs, atol=GOLDEN_TOLERANCE)


def test_many_requests_batched_equal_one_at_a_time(tts, reference_wav):
    requests = [SpeechRequest(LONG_TEXT, "a:alice", GREEDY), SpeechRequest("今天天气很好，我们去公园散步吧。", "b:bob", GREEDY),
                SpeechRequest(LONG_TEXT, None, GREEDY, reference_wav), SpeechRequest(LONG_TEXT, "b:alice", GREEDY),
                SpeechRequest("The weather is lovely.", "a:bob", replace(GREEDY, sentence_batch_size=1))]
    batched = tts.synthesize_many(requests)
    for request, result in zip(requests, batched):
        alone = tts.synthesize(request.text, request.voice, request.reference_audio, replace(request.options,
                                                                                             sentence_batch_size=1))
        assert result.sentences == alone.sentences
        assert _codes(result.codes) == _codes(alone.codes)
        np.testing.assert_allclose(result.waveform, alone.waveform, atol=GOLDEN_TOLERANCE)


def test_synthesize_many_reports_bad_requests_in_place(tts):
    requests = [SpeechRequest("Hello there.", "a:alice", GREEDY), SpeechRequest("   ", "a:alice", GREEDY),
                SpeechRequest("Hello there.", "nobody", GREEDY),
                SpeechRequest("Hello there.", "a:bob", replace(GREEDY, max_text_length=5))]
    results = tts.synthesize_many(requests, return_exceptions=True)
    assert len(results[0].waveform) > 0
    assert "empty" in str(results[1]) and "nobody" in str(results[2]) and isinstance(results[3], TextTooLongError)
    with pytest.raises(TextTooLongError, match="more than the limit of 5"):
        tts.synthesize_many(requests[3:])


def test_stream_yields_the_first_sentence_before_the_last_is_generated(tts, monkeypatch):
    generated_rows = []
    generate = tts.models.generate
    monkeypatch.setattr(tts.models, "generate",
                        lambda conditions, *args: generated_rows.append(len(conditions)) or generate(conditions, *args))
    chunks = tts.stream(LONG_TEXT, voice="a:bob", options=GREEDY)
    first = next(chunks)
    assert first.sentence_index == 0 and generated_rows == [1]
    rest = list(chunks)
    assert sum(generated_rows) == 1 + len(rest) > 2
    whole = tts.synthesize(LONG_TEXT, voice="a:bob", options=GREEDY)
    assert [c.text for c in [first, *rest]] == whole.sentences
    assert _codes(c.codes for c in [first, *rest]) == _codes(whole.codes)
    streamed = np.concatenate([c.waveform for c in [first, *rest]])
    assert len(streamed) == len(whole.waveform)
    np.testing.assert_allclose(streamed, whole.waveform, atol=GOLDEN_TOLERANCE)


def test_no_generated_audio_is_an_error_not_an_empty_wav(tts, monkeypatch, tmp_path, capsys, tiny_model_dir,
                                                          reference_wav):
    stop = tts.models.stop_mel_token
    monkeypatch.setattr(tts.models, "generate", lambda conditions, *args: [torch.tensor([stop])] * len(conditions))
    with pytest.raises(InferenceError, match="generated no audio"):
        tts.synthesize_to_file(LONG_TEXT, tmp_path / "empty.wav", "a:alice", options=GREEDY)
    assert not (tmp_path / "empty.wav").exists()
    with pytest.raises(InferenceError, match="generated no audio"):
        list(tts.stream(LONG_TEXT, "a:alice", options=GREEDY))
    monkeypatch.setattr(SpeechModels, "generate", lambda self, conditions, *args: [torch.tensor([stop])] * len(conditions))
    output = tmp_path / "cli.wav"
    code = main(["--model_dir", str(tiny_model_dir), "--reference_audio", str(reference_wav), "--text", "Hello.",
                 "--output", str(output), "--device", "cpu"])
    assert code == 2 and "generated no audio" in capsys.readouterr().err and not output.exists()


@pytest.mark.parametrize("kind, message", [("short", "too short"), ("silent", "silent")])
def test_a_short_or_silent_reference_is_rejected(tts, tmp_path, capsys, tiny_model_dir, kind, message):
    t = np.arange(int(0.4 * 24000) if kind == "short" else 48000) / 24000
    level = 0.3 if kind == "short" else 10 ** (-65 / 20)
    path = tmp_path / f"{kind}.wav"
    sf.write(str(path), (level * np.sin(2 * np.pi * 150 * t)).astype(np.float32), 24000)
    with pytest.raises(AudioError, match=message):
        tts.synthesize("Hello there.", reference_audio=path, options=GREEDY)
    code = main(["--model_dir", str(tiny_model_dir), "--reference_audio", str(path), "--text", "Hello.",
                 "--output", str(tmp_path / "o.wav"), "--device", "cpu"])
    assert code == 2 and message in capsys.readouterr().err


GOLDENS = conformance_folders("expected.safetensors")


def _golden_waveforms(folder: CheckpointFolder, precision: str, vocoder_precision: str,
                      device: str = "cpu") -> list[np.ndarray]:
    """Each golden example's waveform from its conditioning, text and codes at the given precisions."""
    expected = load_file(str(folder.root / "expected.safetensors"))
    models = SpeechModels(folder.cfg, folder.load_gpt(), folder.load_bigvgan(), device, precision, vocoder_precision)
    waveforms = []
    with torch.inference_mode():
        for i in (0, 1):
            text = expected[f"text_{i}"][None]
            latents = models.latents(expected[f"cond_{i}"][None].to(models.device), text.to(models.device),
                                     torch.tensor([text.shape[1]]), [expected[f"codes_{i}"]])
            embedding = models.speaker_embedding(expected[f"mel_{i}"].T)
            waveforms.append(models.vocode(latents, [embedding])[0])
    return waveforms


@pytest.mark.skipif(not GOLDENS, reason="no conformance golden folder (../shared/conformance or INDEXTTS_CONFORMANCE_DIRS)")
@pytest.mark.parametrize("folder", GOLDENS, ids=lambda p: p.name)
@pytest.mark.parametrize("vocoder_precision", ["fp32", "fp16"])
def test_half_precision_waveform_snr_is_at_least_60_db(folder, vocoder_precision):
    """The CUDA default (GPT fp16, BigVGAN fp32) and the half vocoder (output layer in fp32) against fp32."""
    golden = CheckpointFolder(folder)
    reference = _golden_waveforms(golden, "fp32", "fp32")
    expected = load_file(str(folder / "expected.safetensors"))
    for i, waveform in enumerate(reference):
        np.testing.assert_allclose(waveform, expected[f"wav_{i}"].numpy(), atol=GOLDEN_TOLERANCE)
    for clean, noisy in zip(reference, _golden_waveforms(golden, "fp16", vocoder_precision)):
        assert _snr_db(clean, noisy) >= 60, f"waveform SNR {_snr_db(clean, noisy):.1f} dB < 60 dB"


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((clean - noisy).astype(np.float64) ** 2)))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or not GOLDENS, reason="needs a CUDA GPU and a golden folder")
@pytest.mark.parametrize("folder", GOLDENS, ids=lambda p: p.name)
def test_cuda_default_precision_is_fp16_gpt_with_snr_at_least_60_db(folder):
    golden = CheckpointFolder(folder)
    models = SpeechModels(golden.cfg, golden.load_gpt(), golden.load_bigvgan(), "cuda")
    assert (models.precision, models.vocoder_precision, models.vocoder_batching) == ("fp16", "fp32", True)
    for clean, noisy in zip(_golden_waveforms(golden, "fp32", "fp32"), _golden_waveforms(golden, "auto", "fp32", "cuda")):
        assert _snr_db(clean, noisy) >= 60


def _activation_modes(bigvgan) -> set[str]:
    return {module.mode for module in bigvgan.modules() if isinstance(module, Activation1d)}


@pytest.mark.parametrize(("requested", "expected"), [("auto", "fused"), ("exact", "exact"), ("fused", "fused")])
def test_vocoder_mode_reaches_every_activation(tiny_model_dir, requested, expected):
    """``vocoder_mode`` through IndexTTS.from_pretrained; auto is the fused mode on the CPU."""
    tts = IndexTTS.from_pretrained(tiny_model_dir, device="cpu", vocoder_mode=requested)
    assert tts.models.vocoder_mode == expected
    assert _activation_modes(tts.models.bigvgan) == {expected}


def test_unknown_vocoder_mode_is_refused(tiny_model_dir):
    folder = CheckpointFolder(tiny_model_dir)
    with pytest.raises(InferenceError, match="vocoder_mode='fast'"):
        SpeechModels(folder.cfg, folder.load_gpt(), folder.load_bigvgan(), "cpu", vocoder_mode="fast")


def test_cli_vocoder_mode_reaches_the_model(tiny_model_dir):
    args = build_parser().parse_args(["--model_dir", str(tiny_model_dir), "--text", "hi", "--output", "o.wav", "--vocoder_mode", "exact",
                                      "--device", "cpu"])
    assert _activation_modes(load_model(args).models.bigvgan) == {"exact"}
    assert build_parser().parse_args(["--text", "hi", "--output", "o.wav"]).vocoder_mode == "auto"


def test_without_a_cpu_compiler_auto_is_exact_and_fused_is_refused(tiny_model_dir, monkeypatch):
    """torch.compile builds CPU kernels with a C++ compiler: without one, auto keeps the exact activations
    and an explicit fused request is a clear error instead of a compiler traceback at the first call."""
    monkeypatch.setattr("indextts.inference.speech.shutil.which", lambda name: None)
    assert IndexTTS.from_pretrained(tiny_model_dir, device="cpu").models.vocoder_mode == "exact"
    with pytest.raises(InferenceError, match="needs a C\\+\\+ compiler"):
        IndexTTS.from_pretrained(tiny_model_dir, device="cpu", vocoder_mode="fused")
