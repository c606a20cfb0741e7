"""Shared test helpers (import as ``from helpers import ...``; tests/ is on sys.path under pytest)."""

from __future__ import annotations

from pathlib import Path

WHISPER_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
)


def write_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random multilingual Whisper (en, zh) with its processor under ``folder``, offline.

    The tokenizer is byte-level BPE with the 256 byte symbols and no merges plus Whisper's special
    tokens, so it encodes any text without a downloaded vocabulary. Load it with
    ``load_asr(f"whisper:{folder}")`` or ``WhisperForConditionalGeneration.from_pretrained(folder)``.
    """
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    vocab = {symbol: index for index, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    for token in WHISPER_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(WHISPER_SPECIAL_TOKENS[1:])})
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    end, start = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=start,
        eos_token_id=end, pad_token_id=end, bos_token_id=end,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=end, pad_token_id=end, bos_token_id=end,
        lang_to_id={"<|en|>": vocab["<|en|>"], "<|zh|>": vocab["<|zh|>"]},
        task_to_id={"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"], is_multilingual=True,
        suppress_tokens=[], begin_suppress_tokens=[],
    )
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_wavlm(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random ``WavLMForXVector`` with its feature extractor under ``folder``, offline.

    Load it with ``load_speaker_encoder(f"wavlm:{folder}")``; its embeddings carry no speaker
    information (random weights), so only the plumbing can be tested with it.
    """
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16, 16), conv_kernel=(10, 8), conv_stride=(5, 64), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16, 32), tdnn_kernel=(3, 1, 1), tdnn_dilation=(1, 1, 1),
        xvector_output_dim=8, num_buckets=16, max_bucket_distance=32,
    )
    torch.manual_seed(seed)
    WavLMForXVector(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return Path(folder)


def english_demo_list(demo_list: Path, out_path: Path) -> Path:
    """Write the English lines of a demo audio list to ``out_path`` (paths made absolute)."""
    lines = []
    for line in demo_list.read_text(encoding="utf-8").splitlines():
        audio, text = line.split("\t")
        if audio.endswith("_en.wav"):
            lines.append(f"{(demo_list.parent / audio).resolve()}\t{text}\n")
    out_path.write_text("".join(lines), encoding="utf-8")
    return out_path
