"""index-tts-lora: LoRA fine-tuning and fast synthesis for Bilibili's IndexTTS 1.0 / 1.5."""

__version__ = "0.1.0"
