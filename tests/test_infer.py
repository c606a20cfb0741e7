"""IndexTTS synthesis API and CLI on tiny checkpoints and a tiny LoRA training run."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import file_digests, write_lora_run

from indextts.inference.adapters import load_trained_run
from indextts.audio import MelSpectrogramFeatures, load_audio
from indextts.checkpoint_folder import CheckpointFolder
from indextts.cli.infer import build_parser, main
from indextts.cli.options import synthesis_options_from_args as options_from_args
from indextts.config import load_config
from indextts.errors import AudioError, CheckpointError, InferenceError, TextError
from indextts.gpt.generation import GenerationConfig
from indextts.gpt.model import UnifiedVoice
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.inference.synthesis import to_pcm16

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEAKERS = ("alice", "bob")
TEXTS = {
    "zh": "今天天气很好，我们去公园散步吧。",
    "en": "The weather is lovely this morning, so we walk to the park.",
    "mixed": "我今天用 Python 写了一个 demo，效果不错。",
    "long": "今天天气很好，我们去公园散步吧。The weather is lovely this morning. " * 2,
}
# Few codes and no beams keep every synthesis well under a second on the tiny model.
FAST = SynthesisOptions(GenerationConfig(max_new_tokens=8, num_beams=1, seed=0), pause_seconds=0.05)


def with_generation(options: SynthesisOptions, **changes) -> SynthesisOptions:
    """``options`` with the given generation settings changed."""
    return replace(options, generation=replace(options.generation, **changes))


GREEDY = with_generation(FAST, do_sample=False, seed=None)


def expected_samples(tts: IndexTTS, result, options: SynthesisOptions) -> int:
    pause = round(options.pause_seconds * tts.sample_rate)
    return sum(len(c) for c in result.codes) * tts.samples_per_code + pause * (len(result.sentences) - 1)


def write_run(run_dir: Path, gpt: UnifiedVoice, reference_mel: torch.Tensor, seed: int = 0,
              speakers=SPEAKERS, model_dir: Path | None = None) -> Path:
    """A training run folder in train.py's layout: a perturbed LoRA adapter on ``gpt`` and two speakers,
    recording the base identity of ``model_dir`` when given."""
    identity = CheckpointFolder(model_dir).identity() if model_dir else None
    return write_lora_run(run_dir, gpt, reference_mel, speakers, seed, identity, model_dir)


@pytest.fixture(scope="module")
def reference_wav(tmp_path_factory) -> Path:
    """Two seconds of a voiced-like stereo signal at 22.05 kHz (resampled and down-mixed on load)."""
    rate = 22050
    t = np.arange(2 * rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noise = 0.02 * np.random.default_rng(0).standard_normal(t.shape)
    path = tmp_path_factory.mktemp("audio") / "reference.wav"
    sf.write(str(path), np.stack([tone + noise, tone - noise], axis=1).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def reference_mel(tiny_model_dir, reference_wav) -> torch.Tensor:
    cfg = load_config(tiny_model_dir)
    return MelSpectrogramFeatures.from_config(cfg.dataset.mel)(load_audio(reference_wav))[0]


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, reference_mel, tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"), CheckpointFolder(tiny_model_dir).load_gpt(), reference_mel,
                     model_dir=tiny_model_dir)


@pytest.fixture(scope="module")
def zero_shot(tiny_model_dir) -> IndexTTS:
    return IndexTTS.from_pretrained(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def tuned(tiny_model_dir, run_dir) -> IndexTTS:
    return IndexTTS.from_pretrained(tiny_model_dir, adapter=run_dir, device="cpu")


@pytest.mark.parametrize("language", sorted(TEXTS))
def test_fine_tuned_speaker_wav_length_matches_the_codes(tuned, language):
    options = replace(FAST, max_text_tokens_per_sentence=16)
    result = tuned.synthesize(TEXTS[language], voice="alice", options=options)
    assert result.sample_rate == 24000
    assert result.waveform.dtype == np.float32 and np.abs(result.waveform).max() <= 1.0
    assert len(result.waveform) == expected_samples(tuned, result, options)
    assert len(result.codes) == len(result.sentences)
    assert all(0 < len(c) <= options.generation.max_new_tokens for c in result.codes)
    if language == "long":
        assert len(result.sentences) > 2


def test_zero_shot_from_reference_audio(zero_shot, reference_wav, tmp_path):
    output = tmp_path / "nested" / "zero_shot.wav"
    result = zero_shot.synthesize_to_file(TEXTS["mixed"], output, reference_audio=reference_wav, options=FAST)
    info = sf.info(str(output))
    assert (info.samplerate, info.subtype, info.channels) == (24000, "PCM_16", 1)
    assert info.frames == len(result.waveform) == expected_samples(zero_shot, result, FAST)
    assert result.timings.audio_seconds == pytest.approx(info.frames / 24000)
    assert result.timings.rtf > 0


def test_the_only_speaker_of_a_run_is_the_default(tuned, tiny_model_dir, reference_mel, tmp_path):
    solo_run = write_run(tmp_path / "solo", CheckpointFolder(tiny_model_dir).load_gpt(), reference_mel, speakers=("alice",))
    solo = IndexTTS.from_pretrained(tiny_model_dir, adapter=solo_run, device="cpu")
    implicit = solo.synthesize(TEXTS["en"], options=GREEDY)
    explicit = tuned.synthesize(TEXTS["en"], voice="alice", options=GREEDY)
    assert [c.tolist() for c in implicit.codes] == [c.tolist() for c in explicit.codes]


def test_reference_audio_replaces_only_the_vocoder_reference(tuned, reference_wav):
    learned = tuned.voice("alice")
    overridden = tuned.voice("alice", reference_wav)
    torch.testing.assert_close(overridden.condition, learned.condition)
    assert overridden.reference_mel.shape[1] == 100
    assert not torch.equal(tuned.voice("bob").condition, learned.condition)


def test_merged_adapter_latents_equal_unmerged_peft_latents(tiny_model_dir, run_dir, tuned):
    unmerged = load_trained_run(run_dir, CheckpointFolder(tiny_model_dir).load_gpt(), merge=False).gpt
    voice = tuned.voice("alice")
    tuned.weights.activate(voice.run, tuned.library.sources[voice.run].patch)  # what synthesis does per batch
    merged_gpt = tuned.models.gpt
    assert any("lora_" in name for name, _ in unmerged.named_parameters())
    assert not any("lora_" in name for name, _ in merged_gpt.named_parameters())
    base = CheckpointFolder(tiny_model_dir).load_gpt()
    generator = torch.Generator().manual_seed(0)
    condition = voice.condition.unsqueeze(0).expand(2, -1, -1)
    text_ids = torch.randint(3, 50, (2, 7), generator=generator)
    text_lengths = torch.tensor([7, 4])
    codes = torch.randint(0, base.stop_mel_token - 1, (2, 9), generator=generator)
    code_lengths = torch.tensor([9, 6])
    with torch.inference_mode():
        merged = merged_gpt.forward_latents(condition, text_ids, text_lengths, codes, code_lengths)
        reference = unmerged.forward_latents(condition, text_ids, text_lengths, codes, code_lengths)
        plain = base.forward_latents(condition, text_ids, text_lengths, codes, code_lengths)
    torch.testing.assert_close(merged[0], reference[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged[1, :6], reference[1, :6], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(merged[0], plain[0], atol=1e-3)


def test_seeded_sampling_is_reproducible(tuned):
    text = TEXTS["zh"] + TEXTS["en"]
    options = replace(FAST, max_text_tokens_per_sentence=16)
    first = tuned.synthesize(text, voice="bob", options=options)
    again = tuned.synthesize(text, voice="bob", options=options)
    assert len(first.sentences) > 1
    assert [c.tolist() for c in first.codes] == [c.tolist() for c in again.codes]
    np.testing.assert_array_equal(first.waveform, again.waveform)
    other = tuned.synthesize(text, voice="bob", options=with_generation(options, seed=1))
    assert [c.tolist() for c in other.codes] != [c.tolist() for c in first.codes]


def test_batched_sentences_get_the_codes_they_get_alone(tuned):
    text = TEXTS["zh"] + TEXTS["en"] + TEXTS["mixed"]
    options = replace(with_generation(GREEDY, max_new_tokens=6), max_text_tokens_per_sentence=16)
    batched = tuned.synthesize(text, voice="alice", options=replace(options, sentence_batch_size=8))
    alone = tuned.synthesize(text, voice="alice", options=replace(options, sentence_batch_size=1))
    assert len(batched.sentences) > 2 and batched.sentences == alone.sentences
    assert [c.tolist() for c in batched.codes] == [c.tolist() for c in alone.codes]
    np.testing.assert_allclose(batched.waveform, alone.waveform, atol=1e-4)


def test_beam_search_runs_with_the_reference_defaults(tuned):
    options = SynthesisOptions(GenerationConfig(max_new_tokens=8, seed=0))
    result = tuned.synthesize(TEXTS["zh"], voice="alice", options=options)
    assert len(result.waveform) == expected_samples(tuned, result, options)


def test_silence_code_runs_are_shortened(tuned):
    plain = tuned.synthesize(TEXTS["zh"], voice="alice", options=GREEDY)
    silence = int(torch.mode(torch.cat(plain.codes)).values)
    trimmed = tuned.synthesize(TEXTS["zh"], voice="alice",
                               options=replace(GREEDY, silence_code=silence, max_silence_codes=0,
                                               silence_trimming="strict"))
    assert silence not in torch.cat(trimmed.codes).tolist()
    assert len(trimmed.waveform) == expected_samples(tuned, trimmed, GREEDY)


# ---- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   \n", "!!! ... ???"])
def test_empty_or_unspeakable_text_is_a_text_error(zero_shot, reference_wav, text):
    with pytest.raises(TextError):
        zero_shot.synthesize(text, reference_audio=reference_wav, options=FAST)


def test_unknown_speaker_lists_the_available_ones(tuned):
    with pytest.raises(InferenceError, match="alice, bob"):
        tuned.synthesize(TEXTS["en"], voice="carol", options=FAST)


def test_speaker_without_adapter_and_no_voice_at_all_are_explained(zero_shot):
    with pytest.raises(InferenceError, match="--adapter"):
        zero_shot.synthesize(TEXTS["en"], voice="alice", options=FAST)
    with pytest.raises(InferenceError, match="--reference_audio"):
        zero_shot.synthesize(TEXTS["en"], options=FAST)


def test_several_speakers_need_a_choice(tuned):
    with pytest.raises(InferenceError, match="Choose a speaker"):
        tuned.synthesize(TEXTS["en"], options=FAST)


def test_missing_adapter_folder(tiny_model_dir, tmp_path):
    with pytest.raises(CheckpointError, match="lacks"):
        IndexTTS.from_pretrained(tiny_model_dir, adapter=tmp_path / "no_such_run", device="cpu")


def test_adapter_trained_on_another_base(tiny_model_dir, reference_mel, tmp_path):
    dims = CheckpointFolder(tiny_model_dir).dims.gpt
    other = UnifiedVoice(replace(dims, layers=dims.layers + 1))
    run = write_run(tmp_path / "other_run", other, reference_mel)
    with pytest.raises(CheckpointError, match="different base"):
        IndexTTS.from_pretrained(tiny_model_dir, adapter=run, device="cpu")


def test_unreadable_or_missing_reference_audio(zero_shot, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file")
    with pytest.raises(AudioError, match="broken.wav"):
        zero_shot.synthesize(TEXTS["en"], reference_audio=broken, options=FAST)
    with pytest.raises(AudioError, match="does not exist"):
        zero_shot.synthesize(TEXTS["en"], reference_audio=tmp_path / "missing.wav", options=FAST)


def test_output_path_not_writable(zero_shot, reference_wav, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(InferenceError, match="Cannot write"):
        zero_shot.synthesize_to_file(TEXTS["en"], blocker / "out.wav", reference_audio=reference_wav, options=FAST)
    with pytest.raises(InferenceError, match="is a folder"):
        zero_shot.synthesize_to_file(TEXTS["en"], tmp_path, reference_audio=reference_wav, options=FAST)


def test_too_many_tokens_per_sentence_is_refused(zero_shot, reference_wav):
    limit = int(zero_shot.cfg.gpt.max_text_tokens)
    with pytest.raises(InferenceError, match="max_text_tokens_per_sentence"):
        zero_shot.synthesize(TEXTS["en"], reference_audio=reference_wav,
                             options=replace(FAST, max_text_tokens_per_sentence=limit + 1))


# ---- command line ----------------------------------------------------------------------------

FAST_FLAGS = ["--device", "cpu", "--max_mel_tokens", "8", "--num_beams", "1", "--seed", "0", "--pause", "0.05"]


def test_cli_defaults_are_the_synthesis_option_defaults():
    args = build_parser().parse_args(["--text", "x", "--output", "out.wav"])
    assert options_from_args(args) == SynthesisOptions()
    args = build_parser().parse_args(["--text", "x", "--output", "out.wav", "--max_mel_tokens", "7", "--seed", "3"])
    generation = options_from_args(args).generation
    assert (generation.max_new_tokens, generation.seed) == (7, 3)
    assert generation.cuda_graph
    args = build_parser().parse_args(["--text", "x", "--output", "out.wav", "--no_cuda_graph"])
    assert not options_from_args(args).generation.cuda_graph


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_text_with_adapter_and_speaker(capsys, tiny_model_dir, run_dir, tuned, tmp_path):
    output = tmp_path / "out" / "speech.wav"
    code, out, err = run_main(capsys, "--model_dir", tiny_model_dir, "--adapter", run_dir, "--speaker", "bob",
                              "--text", TEXTS["mixed"], "--output", output, "--verbose", *FAST_FLAGS)
    assert code == 0, err
    assert "RTF" in out and "codes/s" in out
    expected = tuned.synthesize(TEXTS["mixed"], voice="bob", options=FAST)
    data, rate = sf.read(str(output), dtype="int16")
    assert rate == 24000
    np.testing.assert_array_equal(data, to_pcm16(expected.waveform))


def test_cli_text_file_keeps_going_past_a_bad_line(capsys, tiny_model_dir, reference_wav, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text(f"{TEXTS['zh']}\n!!! ???\n\n{TEXTS['en']}\n", encoding="utf-8")
    out_dir = tmp_path / "wavs"
    code, _, err = run_main(capsys, "--model_dir", tiny_model_dir, "--reference_audio", reference_wav,
                            "--text_file", lines, "--output", out_dir, *FAST_FLAGS)
    assert code == 2
    assert sorted(p.name for p in out_dir.iterdir()) == ["0001.wav", "0004.wav"]
    assert "line 2" in err and "Traceback" not in err


def test_cli_list_format_uses_prompt_wavs_for_zero_shot(capsys, tiny_model_dir, reference_wav, tmp_path):
    listing = tmp_path / "test.lst"
    listing.write_text(
        f"utt_a|prompt text|{reference_wav}|{TEXTS['en']}\n"
        f"broken line without fields\n"
        f"utt_b|prompt text|{reference_wav.name}|{TEXTS['zh']}\n",
        encoding="utf-8",
    )
    (tmp_path / reference_wav.name).write_bytes(reference_wav.read_bytes())
    out_dir = tmp_path / "listed"
    code, _, err = run_main(capsys, "--model_dir", tiny_model_dir, "--list", listing, "--output", out_dir,
                            *FAST_FLAGS)
    assert code == 2
    assert sorted(p.name for p in out_dir.iterdir()) == ["utt_a.wav", "utt_b.wav"]
    assert "test.lst:2" in err and "1 line(s) failed; 2 wav(s) written" in err


@pytest.mark.parametrize("uid, problem", [
    ("../../x", "holds a path separator"), ("{tmp}/abs/x", "holds a path separator"),
    ("a\\b", "holds a path separator"),
    ("..", "holds '..'"), ("x..y", "holds '..'"),
])
def test_cli_list_refuses_uids_that_leave_the_output(capsys, tiny_model_dir, reference_wav, tmp_path, uid, problem):
    out_dir = tmp_path / "a" / "b" / "out"
    listing = tmp_path / "bad.lst"
    uid = uid.format(tmp=tmp_path)
    listing.write_text(f"ok|p|{reference_wav}|{TEXTS['en']}\n\n{uid}|p|{reference_wav}|{TEXTS['en']}\n",
                       encoding="utf-8")
    before = file_digests(tmp_path)
    code, out, err = run_main(capsys, "--model_dir", tiny_model_dir, "--list", listing, "--output", out_dir,
                              *FAST_FLAGS)
    assert code == 2 and "Traceback" not in err
    assert f"line 3: uid '{uid}' {problem}" in err and "nothing was synthesised" in err
    assert file_digests(tmp_path) == before and not out_dir.exists()


def test_cli_list_refuses_duplicate_uids_up_front(capsys, tiny_model_dir, reference_wav, tmp_path):
    listing = tmp_path / "dup.lst"
    listing.write_text("".join(f"{uid}|p|{reference_wav}|{TEXTS['en']}\n" for uid in ("a", "b", "a")),
                       encoding="utf-8")
    before = file_digests(tmp_path)
    code, _, err = run_main(capsys, "--model_dir", tiny_model_dir, "--list", listing, "--output", tmp_path / "o",
                            *FAST_FLAGS)
    assert code == 2 and "Traceback" not in err
    assert "lines 1, 3: the same uid 'a'" in err and "each on one line only" in err
    assert file_digests(tmp_path) == before and not (tmp_path / "o").exists()


def test_cli_list_format_with_a_speaker(capsys, tiny_model_dir, run_dir, tmp_path):
    listing = tmp_path / "speaker.lst"
    listing.write_text(f"u1|p|/nowhere/prompt.wav|{TEXTS['en']}\n", encoding="utf-8")
    code, _, err = run_main(capsys, "--model_dir", tiny_model_dir, "--adapter", run_dir, "--speaker", "alice",
                            "--list", listing, "--output", tmp_path / "o", *FAST_FLAGS)
    assert code == 0, err
    assert (tmp_path / "o" / "u1.wav").is_file()


@pytest.mark.parametrize("args, message", [
    (["--text", "   "], "empty"),
    (["--text", "hello", "--speaker", "carol"], "alice, bob"),
    (["--text", "hello", "--adapter", "{missing}"], "lacks"),
    (["--text", "hello", "--reference_audio", "{missing}.wav"], "does not exist"),
    (["--text_file", "{lines}", "--output", "{tmp}/x.wav"], "is a folder for the numbered wavs"),
    (["--text", "hello", "--sentence_batch_size", "0"], "sentence_batch_size must be >= 1"),
])
def test_cli_errors_are_one_message_and_exit_2(capsys, tiny_model_dir, run_dir, tmp_path, args, message):
    lines = tmp_path / "lines.txt"
    lines.write_text("hello\n", encoding="utf-8")
    values = {"missing": tmp_path / "missing", "lines": lines, "tmp": tmp_path}
    args = [a.format(**values) for a in args]
    if "--adapter" not in args and "--reference_audio" not in args:
        args += ["--adapter", str(run_dir)]
    if "--output" not in args:
        args += ["--output", str(tmp_path / "out.wav")]
    code, _, err = run_main(capsys, "--model_dir", tiny_model_dir, *args, *FAST_FLAGS)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cli_cuda_without_a_gpu(capsys, tiny_model_dir, reference_wav, tmp_path):
    code, _, err = run_main(capsys, "--model_dir", tiny_model_dir, "--reference_audio", reference_wav,
                            "--text", "hello", "--output", tmp_path / "o.wav", "--device", "cuda")
    assert code == 2 and "--device cpu" in err


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["script", "module"])
def test_cli_runs_as_script_and_as_module(tiny_model_dir, reference_wav, zero_shot, tmp_path, launcher):
    """``python indextts/infer.py`` works from any folder; ``python -m indextts.infer`` from the repo root."""
    output = tmp_path / "cli.wav"
    entry = [str(REPO_ROOT / "indextts" / "infer.py")] if launcher == "script" else ["-m", "indextts.infer"]
    command = [sys.executable, *entry, "--model_dir", str(tiny_model_dir), "--reference_audio",
               str(reference_wav), "--text", TEXTS["en"], "--output", str(output), *FAST_FLAGS]
    completed = subprocess.run(command, cwd=tmp_path if launcher == "script" else REPO_ROOT,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    expected = zero_shot.synthesize(TEXTS["en"], reference_audio=reference_wav, options=FAST)
    data, _ = sf.read(str(output), dtype="int16")
    np.testing.assert_array_equal(data, to_pcm16(expected.waveform))


@pytest.mark.parametrize("mode", ["int8", "bf16"])
def test_cpu_quantization_generates_with_a_quantised_copy_of_the_active_voice(tiny_model_dir, run_dir, mode):
    """The opt-in CPU mode decodes with quantised weights of the voice in use; latents stay float32."""
    tts = IndexTTS.from_pretrained(tiny_model_dir, adapter=run_dir, device="cpu", cpu_quantization=mode)
    result = tts.synthesize(TEXTS["en"], voice="alice", options=GREEDY)
    assert result.waveform.size > 0 and np.isfinite(result.waveform).all()
    decoder = tts.models.decoder(tts.models._weights_key)
    assert decoder is not tts.models.gpt
    assert not any(type(m) is torch.nn.Linear for m in decoder.gpt.h.modules())
    assert next(tts.models.gpt.parameters()).dtype == torch.float32


def test_cpu_quantization_is_refused_where_it_does_not_apply(tiny_model_dir):
    with pytest.raises(InferenceError, match="needs device cpu, precision fp32"):
        IndexTTS.from_pretrained(tiny_model_dir, device="cpu", precision="bf16", cpu_quantization="int8")
