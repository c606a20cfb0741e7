"""The IndexTTS-2 / 2.5 model family."""
