"""The upstream entry path: ``from indextts.infer import IndexTTS`` and ``python indextts/infer.py ...``.

A thin wrapper: the API is :mod:`indextts.inference`, the command line :mod:`indextts.cli.infer`
(``indextts-infer``; ``python -m indextts.infer`` is the same).
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # `python indextts/infer.py` put indextts/ itself first on sys.path, where its modules (config,
    # text, audio, ...) would shadow top-level names: the folder holding the package goes there instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from indextts.inference import (  # noqa: E402  (after the path fix above)
    AudioChunk, IndexTTS, SpeechRequest, SynthesisOptions, SynthesisResult, Voice, VoiceInfo,
)

__all__ = ["AudioChunk", "IndexTTS", "SpeechRequest", "SynthesisOptions", "SynthesisResult", "Voice", "VoiceInfo"]

if __name__ == "__main__":
    from indextts.cli.infer import main

    sys.exit(main())
