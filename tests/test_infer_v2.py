"""IndexTTS-2/2.5 synthesis through IndexTTS (indextts.inference.speech_v2, emotion_v2) on the tiny folders."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers_v2 import write_v2_run

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.cli.infer import main
from indextts.errors import AudioError, InferenceError
from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SynthesisOptions
from indextts.inference.adapters import load_speakers
from indextts.lora import TrainedSpeaker, save_speakers
from indextts.v2.emotion import EMOTIONS, mix_emotion, scale_emotion_vector
from indextts.v2.prompt import ClipEncoder
from indextts.v2.text import TextNormalizerV2
from indextts.v2.qwen_emotion import parse_scores
from indextts.v2.text25 import detect_language, encode_text, language_id

VERSIONS = ("2", "2.5")
TEXT = "Hello world, this is a test."
LONG_TEXT = "Hello world. This is a test of the system! The weather is lovely. We walk to the park today."
GREEDY = SynthesisOptions(GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=12, seed=3),
                          pause_seconds=0.05)


def _clip(path, seconds: float, rate: int, frequency: float):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * frequency * t) * (1 + np.sin(7 * t))).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    return _clip(root / "voice.wav", 1.5, 24000, 220.0), _clip(root / "emotion.wav", 1.2, 16000, 330.0)


@pytest.fixture(scope="module")
def engines(tiny_v2_dirs):
    return {v: IndexTTS.from_pretrained(tiny_v2_dirs[v], device="cpu", vocoder_mode="exact") for v in VERSIONS}


@pytest.mark.parametrize("version", VERSIONS)
def test_zero_shot_speaks_at_22k(engines, clips, version):
    tts = engines[version]
    result = tts.synthesize(TEXT, reference_audio=clips[0], options=GREEDY)
    assert tts.family.version == version and result.sample_rate == tts.sample_rate == 22050
    assert result.waveform.dtype == np.float32 and len(result.waveform) > 0 and np.isfinite(result.waveform).all()
    assert sum(len(c) for c in result.codes) > 0


@torch.inference_mode()
def _codes_by_hand(folder, clip_path, version: str) -> torch.Tensor:
    """The spoken codes of TEXT composed from the core parts: clip -> prefix, text -> ids, generate, stop cut."""
    models = CheckpointFolder(folder).v2
    gpt = models.load_gpt()
    clip = ClipEncoder.from_models(models).encode(clip_path)
    features = clip.features[None]
    speaker = gpt.campplus_conditioning(clip.prompt.style[None]) if version == "2.5" else gpt.get_conditioning(features)
    prefix = gpt.conditioning_prefix(speaker, gpt.emotion_vector(features))
    if version == "2.5":
        language = detect_language(TEXT)
        ids, language_id = encode_text(models.tokenizer(), TEXT, language, TextNormalizerV2.for_model_dir(models.root))
        languages = torch.tensor([language_id])
    else:
        tokenizer = models.tokenizer()
        ids, languages = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(TEXT)), None
    generated = gpt.generate(prefix, torch.tensor([ids]), torch.tensor([len(ids)]), GREEDY.generation, languages)[0]
    stops = (generated == int(models.cfg.gpt.stop_mel_token)).nonzero()
    return generated[: int(stops[0])] if len(stops) else generated


@pytest.mark.parametrize("version", VERSIONS)
def test_one_sentence_equals_the_core_parts_by_hand(engines, tiny_v2_dirs, clips, version):
    result = engines[version].synthesize(TEXT, reference_audio=clips[0], options=GREEDY)
    expected = _codes_by_hand(tiny_v2_dirs[version], clips[0], version)
    assert len(result.codes) == 1 and len(expected) > 0 and torch.equal(result.codes[0], expected.cpu())


@pytest.mark.parametrize("version", VERSIONS)
def test_a_batch_equals_one_sentence_at_a_time(engines, clips, version):
    tts = engines[version]
    options = replace(GREEDY, max_text_tokens_per_sentence=12)
    batched = tts.synthesize(LONG_TEXT, reference_audio=clips[0], options=replace(options, sentence_batch_size=4))
    alone = tts.synthesize(LONG_TEXT, reference_audio=clips[0], options=replace(options, sentence_batch_size=1))
    assert len(batched.codes) > 2 and batched.sentences == alone.sentences
    for a, b in zip(batched.codes, alone.codes):
        assert torch.equal(a, b)


@pytest.mark.parametrize("version", VERSIONS)
def test_streamed_sentences_join_to_the_synthesis(engines, clips, version):
    tts = engines[version]
    options = replace(GREEDY, max_text_tokens_per_sentence=12, sentence_batch_size=2)
    whole = tts.synthesize(LONG_TEXT, reference_audio=clips[0], options=options)
    chunks = list(tts.stream(LONG_TEXT, reference_audio=clips[0], options=options))
    assert [c.sentence_index for c in chunks] == list(range(len(whole.sentences)))
    np.testing.assert_allclose(np.concatenate([c.waveform for c in chunks]), whole.waveform, atol=1e-5)
    with pytest.raises(InferenceError, match="whole sentences"):
        next(tts.stream(LONG_TEXT, reference_audio=clips[0], options=options, chunk_codes=4))


def _emotion(tts, clip, **changes):
    voice = tts.voice(reference_audio=clip)
    return voice, tts.models.spoken_voice(voice, replace(GREEDY, **changes)).emotion.float()


def test_emotion_clip_and_alpha_blend_the_voice_emotion(engines, clips):
    tts = engines["2"]
    voice, alone = _emotion(tts, clips[0])
    torch.testing.assert_close(alone, voice.emotion.float())
    _, zero = _emotion(tts, clips[0], emotion_audio=str(clips[1]), emotion_alpha=0.0)
    torch.testing.assert_close(zero, voice.emotion.float())  # alpha 0: the voice's own emotion
    _, full = _emotion(tts, clips[0], emotion_audio=str(clips[1]))
    clip_emotion = tts.voice(reference_audio=clips[1]).emotion.float()
    torch.testing.assert_close(full, clip_emotion)  # alpha 1: the emotion clip's vector
    _, half = _emotion(tts, clips[0], emotion_audio=str(clips[1]), emotion_alpha=0.5)
    torch.testing.assert_close(half, voice.emotion.float() + 0.5 * (clip_emotion - voice.emotion.float()))


@pytest.mark.parametrize("version", VERSIONS)
def test_emotion_vector_mixes_matrix_rows_with_the_voice_emotion(engines, tiny_v2_dirs, clips, version):
    tts = engines[version]
    weights = (0.0, 0.6, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0)
    voice, zero = _emotion(tts, clips[0], emotion_vector=weights, emotion_alpha=0.0)
    torch.testing.assert_close(zero, voice.emotion.float())
    _, mixed = _emotion(tts, clips[0], emotion_vector=weights, emotion_alpha=0.5)
    matrices = CheckpointFolder(tiny_v2_dirs[version]).v2.load_emotion()
    scaled = torch.tensor(scale_emotion_vector(weights, 0.5))[None]
    rows = matrices.most_similar_rows(voice.prompt.style[None])
    expected = mix_emotion(matrices.weighted_rows(scaled, rows), scaled, voice.emotion.float()[None])[0]
    torch.testing.assert_close(mixed, expected)
    assert not torch.allclose(mixed, voice.emotion.float())
    prefix = tts.models.gpt.conditioning_prefix(voice.condition[None], mixed[None])
    torch.testing.assert_close(prefix[0, 0], voice.condition[0] + mixed)  # the emotion rides on every speaker row


@pytest.mark.parametrize("version", VERSIONS)
def test_a_trained_speaker_speaks_by_name(engines, clips, tmp_path, version):
    tts = engines[version]
    voice = tts.voice(reference_audio=clips[0])
    speaker = TrainedSpeaker(voice.condition.float(), voice.prompt.mel, emotion=voice.emotion.float(),
                             prompt_semantic=voice.prompt.semantic, style=voice.prompt.style)
    save_speakers(tmp_path, {"narrator": speaker}, {})
    name = f"export{version.replace('.', '')}"
    tts.add_speakers(name, load_speakers(tmp_path / "speakers.safetensors"))
    by_name = tts.synthesize(TEXT, voice=f"{name}:narrator", options=GREEDY)
    zero_shot = tts.synthesize(TEXT, reference_audio=clips[0], options=GREEDY)
    assert torch.equal(by_name.codes[0], zero_shot.codes[0])
    np.testing.assert_allclose(by_name.waveform, zero_shot.waveform, atol=1e-5)


def test_cli_writes_a_wav_at_the_asked_rate(tiny_v2_dirs, clips, tmp_path):
    output = tmp_path / "out.wav"
    status = main(["--model_dir", str(tiny_v2_dirs["2.5"]), "--reference_audio", str(clips[0]), "--text", TEXT,
                   "--output", str(output), "--device", "cpu", "--vocoder_mode", "exact", "--no-do_sample",
                   "--num_beams", "1", "--max_mel_tokens", "12", "--sample_rate", "16000",
                   "--emotion_vector", "0,0.5,0,0,0,0,0,0"])
    audio, rate = sf.read(output)
    assert status == 0 and rate == 16000 and len(audio) > 0
    refused = main(["--model_dir", str(tiny_v2_dirs["2.5"]), "--reference_audio", str(clips[0]), "--text", TEXT,
                    "--output", str(tmp_path / "never.wav"), "--sample_rate", "0"])
    assert refused == 2 and not (tmp_path / "never.wav").exists()


def test_emotion_options_are_refused_on_a_15_voice(tiny_model_dir, clips):
    tts = IndexTTS.from_pretrained(tiny_model_dir, device="cpu", vocoder_mode="exact")
    assert tts.family.version == "1.5"
    for changes in ({"emotion_vector": (0.5,) + (0.0,) * (len(EMOTIONS) - 1)}, {"emotion_audio": str(clips[1])},
                    {"emotion_alpha": 0.5}, {"duration_factor": 1.5}):
        with pytest.raises(InferenceError, match="IndexTTS-2/2.5"):
            tts.synthesize(TEXT, reference_audio=clips[0], options=replace(GREEDY, **changes))


def test_emotion_text_without_the_qwen_model_names_what_to_download(engines, tiny_v2_dirs, clips):
    with pytest.raises(InferenceError, match="qwen_emo_path") as error:
        engines["2"].synthesize(TEXT, reference_audio=clips[0], options=replace(GREEDY, emotion_text="happy"))
    assert str(tiny_v2_dirs["2"]) in str(error.value) and "IndexTeam/IndexTTS-2" in str(error.value)


def test_duration_factor_is_refused_on_2_and_used_on_25(engines, clips):
    with pytest.raises(InferenceError, match="IndexTTS-2.5"):
        engines["2"].synthesize(TEXT, reference_audio=clips[0], options=replace(GREEDY, duration_factor=1.5))
    plain = engines["2.5"].synthesize(TEXT, reference_audio=clips[0], options=GREEDY)
    slower = engines["2.5"].synthesize(TEXT, reference_audio=clips[0], options=replace(GREEDY, duration_factor=2.0))
    assert torch.equal(plain.codes[0], slower.codes[0]) and len(slower.waveform) > 1.8 * len(plain.waveform)


def test_25_sentences_carry_their_own_language(engines):
    tts = engines["2.5"]
    sentences, languages = tts._sentences("你好，今天天气很好。Hello world, how are you today?", 60)
    assert len(sentences) == 2 and languages == [language_id("zh"), language_id("en")]
    assert sentences[1][0] == "hello world, how are you today?"
    short = tts.split_text("Hello world, how are you today? I am fine, thanks.", 12)
    assert len(short) > 2 and all(len(ids) <= 12 for _, ids in short)


def test_qwen_answers_become_eight_weights():
    # The model's answer format (JSON keyed by the Chinese emotion names) as in the reference's QwenEmotion.
    assert parse_scores('{"高兴": 0.5, "愤怒": 2.0}', "so happy") == (0.5, 1.2, 0, 0, 0, 0, 0, 0)
    assert parse_scores('悲伤: 0.7, 低落: 0.1', "a gloomy day") == (0, 0, 0.1, 0, 0, 0.7, 0, 0)
    assert parse_scores("nothing", "flat") == (0, 0, 0, 0, 0, 0, 0, 1.0)


def test_a_v2_run_adds_voices_on_the_shared_base(tiny_v2_dirs, clips, tmp_path):
    folder = tiny_v2_dirs["2"]
    tts = IndexTTS.from_pretrained(folder, device="cpu", vocoder_mode="exact")
    run = write_v2_run(tmp_path / "run", folder, speakers=("narrator",))
    voice = tts.voice(reference_audio=clips[0])
    speaker = TrainedSpeaker(voice.condition.float(), voice.prompt.mel, emotion=voice.emotion.float(),
                             prompt_semantic=voice.prompt.semantic, style=voice.prompt.style)
    save_speakers(run, {"narrator": speaker}, {"speakers": ["narrator"]})
    before = tts.synthesize(TEXT, reference_audio=clips[0], options=GREEDY)
    assert [info.id for info in tts.add_voice("run", run)] == ["run:narrator"]
    adapted = tts.synthesize(TEXT, voice="narrator", options=GREEDY)
    after = tts.synthesize(TEXT, reference_audio=clips[0], options=GREEDY)
    assert not torch.equal(adapted.codes[0], before.codes[0])  # the same voice, spoken through the run's adapter
    assert torch.equal(after.codes[0], before.codes[0])  # and the base is itself again for zero-shot


def test_a_short_or_silent_reference_is_refused(engines, tmp_path):
    short = _clip(tmp_path / "short.wav", 0.3, 16000, 220.0)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(24000, dtype=np.float32), 24000)
    for path, reason in ((short, "too short"), (silent, "silent")):
        with pytest.raises(AudioError, match=reason):
            engines["2.5"].synthesize(TEXT, reference_audio=path, options=GREEDY)
