"""Tiny configurations of the IndexTTS-2 / 2.5 golden folders (conformance/indextts2/README.md).

Small everywhere the reference reads a size from a config; the release value wherever the
reference hard-codes one (1024-wide w2v-BERT features into the GPT, the 1280-wide gpt_layer,
192-wide CAMPPlus embeddings, hidden state 17). Plain Python data: no reference import.
"""

from __future__ import annotations

import copy

CODEBOOK_SIZE = 64
EMO_NUM = [2, 3, 1, 2, 2, 1, 3, 2]
CAMPPLUS = {"feat_dim": 80, "embedding_size": 192, "growth_rate": 4, "bn_size": 2, "init_channels": 8}

GPT = {
    "model_dim": 32, "max_mel_tokens": 64, "max_text_tokens": 48, "heads": 2,
    "use_mel_codes_as_input": True, "mel_length_compression": 1024, "layers": 2,
    "number_text_tokens": None,  # set from the tokenizer
    "number_mel_codes": CODEBOOK_SIZE + 2, "start_mel_token": CODEBOOK_SIZE, "stop_mel_token": CODEBOOK_SIZE + 1,
    "start_text_token": 0, "stop_text_token": 1, "train_solo_embeddings": False,
    "condition_type": "conformer_perceiver",
    "condition_module": {"output_size": 16, "linear_units": 32, "attention_heads": 2, "num_blocks": 1,
                         "input_layer": "conv2d2", "perceiver_mult": 1},
    "emo_condition_module": {"output_size": 8, "linear_units": 16, "attention_heads": 1, "num_blocks": 1,
                             "input_layer": "conv2d2", "perceiver_mult": 0.01},
}

SEMANTIC_CODEC_2 = {"codebook_size": CODEBOOK_SIZE, "hidden_size": 1024, "codebook_dim": 8,
                    "vocos_dim": 8, "vocos_intermediate_dim": 16, "vocos_num_layers": 1}
SEMANTIC_CODEC_25 = {"codebook_size": CODEBOOK_SIZE, "hidden_size": 24, "codebook_dim": 8,
                     "vocos_dim": 16, "vocos_intermediate_dim": 32, "vocos_num_layers": 1,
                     "num_quantizers": 1, "downsample_scale": 2}


def s2mel_section(regulator_in: int) -> dict:
    """The S2Mel section at tiny widths; ``regulator_in`` = the semantic feature width."""
    return {
        "preprocess_params": {"sr": 22050, "spect_params": {
            "n_fft": 1024, "win_length": 1024, "hop_length": 256, "n_mels": 80, "fmin": 0, "fmax": "None"}},
        "dit_type": "DiT", "reg_loss_type": "l1",
        "style_encoder": {"dim": 192},
        "length_regulator": {"channels": 16, "is_discrete": False, "in_channels": regulator_in,
                             "content_codebook_size": 8, "sampling_ratios": [1, 1], "vector_quantize": False,
                             "n_codebooks": 1, "quantizer_dropout": 0.0, "f0_condition": False, "n_f0_bins": 8},
        "DiT": {"hidden_dim": 16, "num_heads": 2, "depth": 2, "class_dropout_prob": 0.1, "block_size": 8192,
                "in_channels": 80, "style_condition": True, "final_layer_type": "wavenet", "target": "mel",
                "content_dim": 16, "content_codebook_size": 8, "content_type": "discrete", "f0_condition": False,
                "n_f0_bins": 8, "content_codebooks": 1, "is_causal": False, "long_skip_connection": True,
                "zero_prompt_speech_token": False, "time_as_token": False, "style_as_token": False,
                "uvit_skip_connection": True, "add_resblock_in_transformer": False},
        "wavenet": {"hidden_dim": 16, "num_layers": 2, "kernel_size": 3, "dilation_rate": 1, "p_dropout": 0.2,
                    "style_condition": True},
    }


def folder_config(version: str, number_text_tokens: int) -> dict:
    """The whole config.yaml of a tiny folder of ``version`` ("2.0" or "2.5")."""
    gpt = copy.deepcopy(GPT)
    gpt["number_text_tokens"] = number_text_tokens
    codec = SEMANTIC_CODEC_2 if version == "2.0" else SEMANTIC_CODEC_25
    dataset = {"bpe_model": "bpe.model"} if version == "2.0" else {}  # 2.5 tokenizes with its tiktoken file
    config = {
        "dataset": {**dataset, "sample_rate": 24000, "squeeze": False, "mel": {
            "sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "win_length": 1024, "n_mels": 100,
            "mel_fmin": 0, "normalize": False}},
        "gpt": gpt,
        "semantic_codec": dict(codec),
        "s2mel": s2mel_section(codec["hidden_size"]),
        "gpt_checkpoint": "gpt.pth", "w2v_stat": "wav2vec2bert_stats.pt", "s2mel_checkpoint": "s2mel.pth",
        "emo_matrix": "feat2.pt", "spk_matrix": "feat1.pt", "emo_num": list(EMO_NUM),
        "qwen_emo_path": "qwen0.6bemo4-merge/",
        "vocoder": {"type": "bigvgan", "name": "nvidia/bigvgan_v2_22khz_80band_256x"},
        "campplus": dict(CAMPPLUS),
        "version": float(version),
    }
    return config


W2V_BERT = {
    "hidden_size": 16, "num_hidden_layers": 18, "num_attention_heads": 2, "intermediate_size": 32,
    "feature_projection_input_dim": 160, "conv_depthwise_kernel_size": 5, "left_max_position_embeddings": 8,
    "right_max_position_embeddings": 4, "position_embeddings_type": "relative_key", "mask_time_prob": 0.05,
    "add_adapter": False, "architectures": ["Wav2Vec2BertModel"],
}
W2V_FEATURE_EXTRACTOR = {"feature_size": 80, "num_mel_bins": 80, "sampling_rate": 16000, "stride": 2,
                         "padding_value": 1.0, "return_attention_mask": True}
W2V_HIDDEN_STATE = 17

BIGVGAN_CHANGES = {"upsample_initial_channel": 64, "resblock_kernel_sizes": [3],
                   "resblock_dilation_sizes": [[1, 3]]}

TEXTS_V2 = ["今天天气很好，我们去公园散步。", "The quick brown fox jumps over the lazy dog."]
TEXTS_V25 = [("今天天气很好，我们去公园散步。", "zh"), ("The quick brown fox jumps over the lazy dog.", "en")]
EMO_WEIGHTS = [0.3, 0.0, 0.2, 0.0, 0.0, 0.1, 0.0, 0.15]
EMO_ALPHA = 0.6

# Example sizes (frames): GPT conditioning features, codec features, codes, audio seconds.
FEAT_FRAMES = [24, 17]
SEM_FEAT_FRAMES = [20, 15]
CODE_COUNTS = [12, 9]
AUDIO_SECONDS = [0.6, 0.45]
VOCODER_FRAMES = 12
GREEDY_MAX = 30
