"""The "Listen" tab: load trained voices on one base, hear text streamed, compare two voices (A/B); emotion
and duration controls while the base is IndexTTS-2/2.5 (:mod:`indextts.webui.emotion_controls`)."""

from __future__ import annotations

import shutil

import gradio as gr
import numpy as np

from indextts.errors import IndexTTSError, WebUIError
from indextts.webui import backend, emotion_controls
from indextts.webui.emotion_controls import CLIP_INDEX, EmotionControls
from indextts.webui.workspace import Workspace, error_text, reporting_errors

STREAMING = shutil.which("ffmpeg") is not None
"""Gradio encodes streamed audio with ffmpeg; without it, finished sentences grow the whole recording."""
SPEECH_QUEUE = "speech"
"""Loading voices, speaking and A/B share one queue: one IndexTTS serves them, one call at a time."""
PLAIN_PLAYER = gr.WaveformOptions(show_recording_waveform=False)
"""The browser's own audio player (with its src on the <audio> element) instead of a waveform view."""


def _advanced_options() -> list:
    """The generation options, folded away (defaults: the reference implementation's settings)."""
    defaults = backend.default_synthesis_options()
    generation, info = defaults.generation, backend.synthesis_option_help()
    with gr.Accordion("Advanced", open=False, elem_id="speak-advanced"):
        with gr.Row():
            temperature = gr.Slider(0.1, 2.0, generation.temperature, step=0.05, label="Temperature",
                                    info=info["temperature"])
            top_p = gr.Slider(0.05, 1.0, generation.top_p, step=0.05, label="Top-p", info=info["top_p"])
            top_k = gr.Number(generation.top_k, label="Top-k (0: off)", precision=0, minimum=0, info=info["top_k"])
        with gr.Row():
            beams = gr.Number(generation.num_beams, label="Beams", precision=0, minimum=1, info=info["num_beams"])
            seed = gr.Number(-1, label="Seed (-1: random)", precision=0, info=info["seed"])
            sentence_tokens = gr.Number(defaults.max_text_tokens_per_sentence, label="Text tokens per sentence",
                                        precision=0, minimum=1, info=info["max_text_tokens_per_sentence"])
    return [temperature, top_p, top_k, beams, seed, sentence_tokens]


ADVANCED_COUNT = 6
"""How many values ``_advanced_options`` gives (backend.synthesis_options's arguments)."""


def _voice_loader(workspace: Workspace) -> list:
    """Base folder, run folders and the Load button; returns the voice dropdowns to fill."""
    settings = workspace.settings
    with gr.Row():
        model_dir = gr.Textbox(str(settings.model_dir), label="Base checkpoint folder", elem_id="speak-model-dir")
        runs = gr.Textbox(str(settings.runs_dir / "voice"), lines=2, elem_id="speak-runs",
                          label="Runs or checkpoints, one folder per line (all trained on this base)")
    load = gr.Button("Load voices", elem_id="speak-load")
    message = gr.Markdown(elem_id="speak-load-message")
    with gr.Row():
        voice = gr.Dropdown([backend.ZERO_SHOT], value=backend.ZERO_SHOT, label="Voice", elem_id="speak-voice")
        reference = gr.Audio(sources=["upload"], type="filepath", label="Reference recording (zero-shot)",
                             elem_id="speak-reference")

    @reporting_errors(outputs=6)
    def load_voices(folder: str, run_folders: str):
        paths = workspace.paths
        workspace.voices = backend.load_voices(paths.check(folder, "The base checkpoint folder"),
                                               paths.check_lines(run_folders, "The run folder"), settings.device)
        trained = workspace.voices.voices
        choices = trained + [backend.ZERO_SHOT]
        second = trained[1] if len(trained) > 1 else choices[0]
        family = workspace.voices.family
        return (gr.Dropdown(choices=choices, value=choices[0]), gr.Dropdown(choices=choices, value=choices[0]),
                gr.Dropdown(choices=choices, value=second), *EmotionControls.visibility(family),
                f"Loaded {len(trained)} trained voices on an {family} base: "
                f"{', '.join(trained) or 'none (zero-shot only)'}.")

    return [load, model_dir, runs, voice, reference, message, load_voices]


def _bank(workspace: Workspace) -> backend.VoiceBank:
    if workspace.voices is None:
        raise WebUIError("No voices are loaded yet. Enter the base checkpoint folder and the run folders above "
                         "and press 'Load voices' (with no run folder, only zero-shot speech is offered).")
    return workspace.voices


def _whole(sample_rate: int, pieces: list[np.ndarray]) -> tuple[int, np.ndarray]:
    return sample_rate, backend.pcm16(np.concatenate(pieces) if pieces else np.zeros(0, np.float32))


def _options(workspace: Workspace, values: tuple):
    """SynthesisOptions from the advanced fields then the emotion controls (the emotion clip checked like
    every path a request names)."""
    advanced, emotion = values[:ADVANCED_COUNT], list(values[ADVANCED_COUNT:])
    emotion[CLIP_INDEX] = workspace.paths.check(emotion[CLIP_INDEX], "The emotion clip") or None
    return emotion_controls.apply(backend.synthesis_options(*advanced), _bank(workspace).family, *emotion)


def _speak_section(workspace: Workspace, voice, reference, controls: list) -> None:
    text = gr.Textbox(label="Text", lines=3, elem_id="speak-text", value="Hello, this is my new voice.")
    button = gr.Button("Speak", variant="primary", elem_id="speak-button")
    streamed = gr.Audio(label="Streaming", streaming=True, autoplay=True, elem_id="speak-stream", visible=STREAMING)
    if not STREAMING:
        gr.Markdown("Streamed playback needs ffmpeg on PATH (Gradio encodes the stream with it); without it "
                    "each finished sentence is added to the whole recording below.")
    whole = gr.Audio(label="Whole recording", type="numpy", format="wav", elem_id="speak-output",
                     interactive=False, waveform_options=PLAIN_PLAYER)
    status = gr.Markdown(elem_id="speak-status")

    def speak(words: str, chosen: str, reference_path, *options):
        try:
            settings = _options(workspace, options)
            reference_path = workspace.paths.check(reference_path, "The reference recording") or None
            pieces, sample_rate = [], None
            for sample_rate, piece in _bank(workspace).stream(words, chosen, reference_path, settings):
                pieces.append(piece)
                if STREAMING:
                    yield (sample_rate, backend.pcm16(piece)), gr.skip(), f"Speaking sentence {len(pieces)}..."
                else:
                    yield gr.skip(), _whole(sample_rate, pieces), f"Speaking sentence {len(pieces)}..."
            seconds = sum(len(p) for p in pieces) / sample_rate
            yield gr.skip(), _whole(sample_rate, pieces), f"Done: {seconds:.2f} s of audio in the voice {chosen}."
        except IndexTTSError as error:
            yield gr.skip(), gr.skip(), error_text(error)

    # A click while the last request is still finishing (its "Done" is shown a moment before the event ends)
    # runs once that one ends, instead of being dropped as Gradio's default trigger mode would.
    button.click(speak, [text, voice, reference, *controls], [streamed, whole, status], concurrency_id=SPEECH_QUEUE,
                 trigger_mode="always_last")


def _compare_section(workspace: Workspace, reference, controls: list) -> list:
    """A/B: the same text in two voices (or two checkpoints of one run), one player each."""
    with gr.Accordion("A/B comparison", open=False, elem_id="speak-ab"):
        text = gr.Textbox(label="Text for both", lines=2, value="The same sentence in two voices.")
        with gr.Row():
            voice_a = gr.Dropdown([backend.ZERO_SHOT], value=backend.ZERO_SHOT, label="Voice A")
            voice_b = gr.Dropdown([backend.ZERO_SHOT], value=backend.ZERO_SHOT, label="Voice B")
        button = gr.Button("Play A and B")
        with gr.Row():
            audio_a = gr.Audio(label="A", type="numpy", format="wav", interactive=False, waveform_options=PLAIN_PLAYER)
            audio_b = gr.Audio(label="B", type="numpy", format="wav", interactive=False, waveform_options=PLAIN_PLAYER)
        status = gr.Markdown()

    @reporting_errors(outputs=3)
    def compare(words: str, first: str, second: str, reference_path, *options):
        bank, settings = _bank(workspace), _options(workspace, options)
        reference_path = workspace.paths.check(reference_path, "The reference recording") or None
        takes = []
        for chosen in (first, second):
            pieces = list(bank.stream(words, chosen, reference_path, settings))
            takes.append(_whole(pieces[0][0], [p for _, p in pieces]))
        return takes[0], takes[1], f"A: {first} · B: {second}"

    button.click(compare, [text, voice_a, voice_b, reference, *controls], [audio_a, audio_b, status],
                 concurrency_id=SPEECH_QUEUE)
    return [voice_a, voice_b]


def build(workspace: Workspace) -> None:
    """Lay out the tab's components and wire their events (inside an open gr.Blocks)."""
    load, model_dir, runs, voice, reference, message, load_voices = _voice_loader(workspace)
    emotion = EmotionControls().build()
    controls = _advanced_options() + emotion.inputs
    _speak_section(workspace, voice, reference, controls)
    voice_a, voice_b = _compare_section(workspace, reference, controls)
    load.click(load_voices, [model_dir, runs], [voice, voice_a, voice_b, emotion.box, emotion.duration, message],
               concurrency_id=SPEECH_QUEUE)
