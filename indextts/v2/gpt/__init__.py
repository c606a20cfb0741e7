"""The IndexTTS-2 / 2.5 GPT (``UnifiedVoice`` v2): dims in ``dims``, the model in ``model``."""
