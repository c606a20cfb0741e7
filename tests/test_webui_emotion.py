"""The Listen tab's IndexTTS-2/2.5 controls without a browser: which families show them, and the
SynthesisOptions their values give."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio", reason="the web UI needs the [webui] extra (pip install -e '.[webui]')")

from indextts.families import FAMILIES  # noqa: E402
from indextts.inference import SynthesisOptions  # noqa: E402
from indextts.webui import backend  # noqa: E402
from indextts.webui.emotion_controls import EmotionControls, apply  # noqa: E402

NO_EMOTION = [0.0] * 8


def test_the_controls_show_for_indextts2_and_the_duration_factor_for_25_only():
    shown = {version: tuple(update["visible"] for update in EmotionControls.visibility(family))
             for version, family in FAMILIES.items()}
    assert shown == {"1.0": (False, False), "1.5": (False, False), "2": (True, False), "2.5": (True, True)}
    assert EmotionControls.visibility(None) == EmotionControls.visibility(FAMILIES["1.5"])


def test_control_values_become_the_emotion_options():
    defaults = SynthesisOptions()
    weights = [0.0, 0.6, 0, 0, 0, 0, 0, 0.2]
    options = apply(defaults, FAMILIES["2"], *weights, None, 0.4, "  ", 1.7)
    assert (options.emotion_vector, options.emotion_alpha, options.emotion_text) == (tuple(weights), 0.4, None)
    assert options.duration_factor == 1.0  # IndexTTS-2 has no duration control: the slider's value is not used
    options = apply(defaults, FAMILIES["2.5"], *NO_EMOTION, "clip.wav", 1.0, " calm ", 1.7)
    assert (options.emotion_vector, options.emotion_audio, options.emotion_text, options.duration_factor) == (
        None, "clip.wav", "calm", 1.7)
    assert apply(defaults, FAMILIES["1.5"], *weights, "clip.wav", 0.4, "calm", 1.7) is defaults


def test_two_emotion_sources_are_refused_with_the_libraries_message():
    from indextts.errors import InferenceError

    options = apply(SynthesisOptions(), FAMILIES["2"], *[0.3] * 8, "clip.wav", 1.0, "", 1.0)
    with pytest.raises(InferenceError, match="choose one emotion source"):
        options.validate()


def test_a_loaded_base_tells_its_family(tiny_model_dir):
    assert backend.VoiceBank(str(tiny_model_dir), "cpu").family == FAMILIES["1.5"]


def test_the_page_has_the_emotion_controls_hidden_until_a_v2_base_is_loaded(tmp_path):
    from indextts.webui.app import build_app
    from indextts.webui.workspace import Settings, Workspace

    app = build_app(Workspace(Settings(model_dir=tmp_path, workdir=tmp_path / "work")))
    blocks = {block.elem_id: block for block in app.blocks.values() if block.elem_id}
    assert {"speak-emotion", "speak-emotion-happy", "speak-emotion-calm", "speak-emotion-clip",
            "speak-emotion-alpha", "speak-emotion-text", "speak-duration"} <= set(blocks)
    assert not blocks["speak-emotion"].visible and not blocks["speak-duration"].visible
