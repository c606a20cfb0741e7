"""Speech recognition shared by preparation (transcripts) and evaluation (WER/CER).

``backends``: Whisper, PocketSphinx and Paraformer behind one interface; ``choice``: which one
transcribes a recording (``auto`` picks one that knows its language).
"""
