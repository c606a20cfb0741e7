"""IndexTTS-2/2.5 clip encoding (indextts.v2.prompt) and the speakers file's IndexTTS-2 fields."""

import numpy as np
import pytest
import soundfile as sf
import torch

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.inference.adapters import load_speakers
from indextts.lora import TrainedSpeaker, save_speakers
from indextts.v2.campplus import CAMPPlusDims
from indextts.v2.prompt import MAX_PROMPT_SECONDS, ClipEncoder, SpeakerPrompt


def _tone(path, seconds: float, rate: int):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(7 * t))).astype(np.float32), rate)
    return path


@pytest.mark.parametrize("version", ["2", "2.5"])
def test_clip_encoder_shapes_and_prompt_content(tiny_v2_dirs, tmp_path, version):
    base = CheckpointFolder(tiny_v2_dirs[version])
    encoder = ClipEncoder.from_models(base.v2)
    clip = encoder.encode(_tone(tmp_path / "a.wav", 1.5, 24000))
    width = int(base.cfg.semantic_codec.hidden_size)
    assert clip.features.shape[1] == width and clip.prompt.semantic.shape[1] == width
    assert clip.prompt.mel.shape == (80, round(1.5 * 22050) // 256)
    assert clip.prompt.style.shape == (CAMPPlusDims.from_config(base.cfg).embedding_size,)
    quantized = encoder.codec.quantize(clip.features[None])[1][0]
    if version == "2":  # IndexTTS-2's prompt content is S_ref, the quantized features; 2.5 uses the features
        torch.testing.assert_close(clip.prompt.semantic, quantized)
    else:
        torch.testing.assert_close(clip.prompt.semantic, clip.features)


def test_clip_encoder_cuts_long_clips(tiny_v2_dirs, tmp_path):
    encoder = ClipEncoder.from_models(CheckpointFolder(tiny_v2_dirs["2"]).v2)
    audio_16k, audio_22k = encoder.read(_tone(tmp_path / "long.wav", MAX_PROMPT_SECONDS + 1, 16000))
    assert len(audio_16k) == MAX_PROMPT_SECONDS * 16000 and len(audio_22k) == MAX_PROMPT_SECONDS * 22050


def test_v2_speaker_fields_round_trip(tmp_path):
    prompt = SpeakerPrompt(torch.randn(7, 16), torch.randn(80, 30), torch.randn(32))
    speaker = TrainedSpeaker(torch.randn(32, 8), prompt.mel, emotion=torch.randn(8),
                             prompt_semantic=prompt.semantic, style=prompt.style)
    save_speakers(tmp_path, {"a.b": speaker, "old": TrainedSpeaker(torch.randn(32, 8), torch.randn(100, 5))}, {})
    loaded = load_speakers(tmp_path / "speakers.safetensors")
    assert loaded["a.b"].is_v2 and not loaded["old"].is_v2 and loaded["old"].style is None
    for key in ("condition", "reference_mel", *TrainedSpeaker.V2_KEYS):
        torch.testing.assert_close(getattr(loaded["a.b"], key), getattr(speaker, key))
