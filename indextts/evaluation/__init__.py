"""Held-out evaluation: ASR and speaker-verification backends, metrics, checkpoint scoring."""
