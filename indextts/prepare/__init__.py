"""From raw recordings to a clean audio list: VAD slicing, loudness, ASR transcripts, review."""
