"""One-line descriptions of the golden tensors for expected_index.json (full text: the README)."""

from __future__ import annotations

import re

DESCRIPTIONS = {
    "audio16k": "input audio, mono 16 kHz",
    "audio22k": "input audio, mono 22.05 kHz (same signal)",
    "w2v_input": "SeamlessM4TFeatureExtractor input_features of audio16k",
    "w2v_mask": "SeamlessM4TFeatureExtractor attention_mask",
    "w2v_feat": "w2v-BERT hidden_states[17], normalised by wav2vec2bert_stats.pt",
    "mel22k": "S2Mel log-mel of audio22k (80 bands, center=False)",
    "fbank": "kaldi fbank of audio16k (80 bins, dither 0), mean over frames removed",
    "style": "CAMPPlus embedding of fbank",
    "sem_feat": "input: random features for the semantic codec (semantic_codec.hidden_size wide)",
    "sem_codes": "semantic codec quantize(sem_feat) codes",
    "sem_quant": "semantic codec quantize(sem_feat) quantized features (S_ref)",
    "sem_embed": "semantic codec quantizer.vq2emb(sem_codes)",
    "sem_decode": "EnhancedCodec.decode(sem_codes)",
    "feat": "input: random 1024-wide w2v-BERT features for the GPT conditioning",
    "cond": "UnifiedVoice.get_conditioning(feat): 32 speaker latents",
    "campplus_cond": "spk_emb_proj(style)",
    "emo_vec": "UnifiedVoice.get_emovec(feat)",
    "emo_merge": "merge_emovec(feat_0, feat_1, alpha=0.6)",
    "emo_weights": "input: 8-value emotion vector",
    "emo_rows": "per emotion group, the feat1 row most cosine-similar to style_0",
    "emo_vec_weighted": "emotion vector from emo_weights, feat2 rows and emo_vec_0",
    "text": "text token ids (no start/stop)",
    "lang": "input language id",
    "lang_emb": "lang_embedding(lang)",
    "codes": "input semantic codes (prefix of sem_codes)",
    "latent": "UnifiedVoice.forward GPT latents for text and codes",
    "train_loss_text": "teacher-forced text cross-entropy over both examples",
    "train_loss_mel": "teacher-forced code cross-entropy over both examples",
    "train_text_logits": "text_head logits at text input positions, zero beyond L_i+1",
    "train_mel_logits": "mel_head logits at mel input positions, zero beyond N_i+1",
    "greedy_codes": "inference_speech greedy codes (<= 30, stop code included when produced)",
    "s2mel_latent": "input: random 1280-wide GPT latents for gpt_layer",
    "s2mel_prompt_cond": "length regulator output for the prompt (example 0)",
    "s2mel_cond": "length regulator output for codes_0",
    "s2mel_noise": "CFM start noise",
    "s2mel_mel": "CFM mel (25 Euler steps, CFG 0.7) after the prompt frames",
    "vocoder_mel": "input log-mel for BigVGAN",
    "vocoder_wav": "BigVGAN v2 waveform of vocoder_mel",
}


def describe(name: str) -> str:
    """The description of ``name``; ``_0``/``_1`` suffixes name the example."""
    match = re.fullmatch(r"(.+)_([01])", name)
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    if match and match.group(1) in DESCRIPTIONS:
        return f"{DESCRIPTIONS[match.group(1)]} (example {match.group(2)})"
    raise KeyError(f"no description for golden tensor {name!r}")
