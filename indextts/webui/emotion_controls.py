"""The Listen tab's IndexTTS-2/2.5 controls: emotion weights, an emotion clip, its strength, an emotion
description, and 2.5's duration factor, shown only while the loaded base has them.

``EmotionControls.build()`` lays them out (hidden until voices of an IndexTTS-2/2.5 base are loaded),
``visibility(family)`` gives the updates that show or hide them, and ``apply(options, family, *values)``
turns the controls' values into the SynthesisOptions fields (nothing for a 1.x base).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from indextts.families import Family
from indextts.v2.emotion import EMOTIONS, MAX_EMOTION_VALUE

CLIP_INDEX = len(EMOTIONS)
"""Where the emotion clip's path sits among ``EmotionControls.inputs`` (after the eight weights)."""
EMOTION_HELP = ("Weights of eight emotions (all 0: the voice's own emotion), an emotion clip, or a description "
                "of the emotion: use one of them. Strength blends the clip or weights with the voice's own "
                "emotion (0: the voice's own).")


@dataclass
class EmotionControls:
    """The components, once built: ``box`` (the folded section), ``weights`` (8 sliders in EMOTIONS order),
    ``clip``, ``alpha``, ``text`` and ``duration``."""

    box: object = None
    weights: list = field(default_factory=list)
    clip: object = None
    alpha: object = None
    text: object = None
    duration: object = None

    def build(self) -> EmotionControls:
        """Lay the controls out (inside an open gr.Blocks); hidden until an IndexTTS-2/2.5 base is loaded."""
        import gradio as gr

        from indextts.inference.synthesis import MAX_DURATION_FACTOR, MIN_DURATION_FACTOR

        with gr.Accordion("Emotion (IndexTTS-2/2.5)", open=False, visible=False, elem_id="speak-emotion") as box:
            gr.Markdown(EMOTION_HELP)
            half = len(EMOTIONS) // 2
            for names in (EMOTIONS[:half], EMOTIONS[half:]):  # two rows of four sliders
                with gr.Row():
                    self.weights += [gr.Slider(0.0, MAX_EMOTION_VALUE, 0.0, step=0.05, label=name.capitalize(),
                                               elem_id=f"speak-emotion-{name}") for name in names]
            with gr.Row():
                self.clip = gr.Audio(sources=["upload"], type="filepath", label="Emotion clip",
                                     elem_id="speak-emotion-clip")
                self.text = gr.Textbox(label="Emotion description (needs the Qwen emotion model in the base folder)",
                                       elem_id="speak-emotion-text")
            with gr.Row():
                self.alpha = gr.Slider(0.0, 1.0, 1.0, step=0.05, label="Strength", elem_id="speak-emotion-alpha")
                self.duration = gr.Slider(MIN_DURATION_FACTOR, MAX_DURATION_FACTOR, 1.0, step=0.05, visible=False,
                                          label="Duration factor (IndexTTS-2.5)", elem_id="speak-duration")
        self.box = box
        return self

    @property
    def inputs(self) -> list:
        """The components whose values ``apply`` takes, in its order."""
        return [*self.weights, self.clip, self.alpha, self.text, self.duration]

    @staticmethod
    def visibility(family: Family | None) -> tuple:
        """Updates for (box, duration): the box for IndexTTS-2/2.5, the duration factor for 2.5 only."""
        import gradio as gr

        emotional = family is not None and family.generation == 2
        return gr.update(visible=emotional), gr.update(visible=emotional and family.multilingual)


def apply(options, family: Family | None, *values):
    """``options`` with the emotion controls' values (``EmotionControls.inputs`` order) for an IndexTTS-2/2.5
    base; unchanged for any other. All weights 0, no clip and no text keep the voice's own emotion."""
    if family is None or family.generation != 2:
        return options
    weights, (clip, alpha, text, duration) = values[:CLIP_INDEX], values[CLIP_INDEX:]
    vector = tuple(float(w) for w in weights) if any(float(w) > 0 for w in weights) else None
    return replace(options, emotion_vector=vector, emotion_audio=clip or None, emotion_alpha=float(alpha),
                   emotion_text=(text or "").strip() or None,
                   duration_factor=float(duration) if family.multilingual else 1.0)
