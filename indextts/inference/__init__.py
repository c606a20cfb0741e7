"""Speech synthesis: the ``IndexTTS`` API (``api``), the model passes (``speech``), model-free steps and
options (``synthesis``), sentence streaming (``streaming``), many voices on one base (``voices``) and
trained runs as weight patches on the base GPT, their checks and merged export (``adapters``; the
LoRA wrapping itself is ``indextts.lora``).
"""

from indextts.inference.api import AudioChunk, IndexTTS, SynthesisResult
from indextts.inference.synthesis import SpeechRequest, SynthesisOptions
from indextts.inference.voices import Voice, VoiceInfo

__all__ = ["AudioChunk", "IndexTTS", "SpeechRequest", "SynthesisOptions", "SynthesisResult", "Voice", "VoiceInfo"]
