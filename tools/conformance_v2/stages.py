"""Compute the golden tensors of conformance/indextts2/README.md with the reference models.

Runs in the reference venv with the reference checkout on ``sys.path``. The model computations are
the reference's own methods; the few glue lines of ``infer_v2.py`` / ``infer_v2_5.py`` between them
(normalising features, adding the GPT latent, the 1.72 length factor, the emotion mix) are
repeated here exactly, because those files only offer them inside one long generator method.
"""

from __future__ import annotations

import importlib

import torch
import torch.nn.functional as F
import torchaudio

import tiny_configs as tiny

SOURCE_RATE = 24000
CFM_STEPS = 25
CFG_RATE = 0.7
LENGTH_FACTOR = 1.72


def infer_module(version: str):
    return importlib.import_module("indextts.infer_v2" if version == "2.0" else "indextts.infer_v2_5")


def synthetic_audio(seconds: float, generator: torch.Generator) -> torch.Tensor:
    """A 24 kHz test signal (1, S): a few harmonics with a pitch glide, plus a little noise."""
    time = torch.arange(int(seconds * SOURCE_RATE)) / SOURCE_RATE
    pitch = 140.0 + 60.0 * time / max(seconds, 1e-3)
    phase = 2 * torch.pi * torch.cumsum(pitch / SOURCE_RATE, 0)
    wave = sum(torch.sin(k * phase) / k for k in (1, 2, 3, 5))
    return (0.3 * wave + 0.01 * torch.randn(time.shape, generator=generator)).unsqueeze(0)


def mel_fn(cfg):
    """The S2Mel mel function exactly as ``infer_v2.py`` configures it."""
    from indextts.s2mel.modules.audio import mel_spectrogram
    spect = cfg.s2mel["preprocess_params"]["spect_params"]
    args = {"n_fft": spect["n_fft"], "win_size": spect["win_length"], "hop_size": spect["hop_length"],
            "num_mels": spect["n_mels"], "sampling_rate": cfg.s2mel["preprocess_params"]["sr"],
            "fmin": spect.get("fmin", 0), "fmax": None if spect.get("fmax", "None") == "None" else 8000,
            "center": False}
    return lambda x: mel_spectrogram(x, **args)


def front_end(models, index: int, generator: torch.Generator) -> dict:
    """Audio -> w2v-BERT features, S2Mel mel, kaldi fbank and the CAMPPlus style (README "Front end")."""
    audio = synthetic_audio(tiny.AUDIO_SECONDS[index], generator)
    audio_22k = torchaudio.transforms.Resample(SOURCE_RATE, 22050)(audio)
    audio_16k = torchaudio.transforms.Resample(SOURCE_RATE, 16000)(audio)
    inputs = models.w2v.extract_features(audio_16k, sampling_rate=16000, return_tensors="pt")
    features = infer_module(models.version).IndexTTS2.get_emb(
        models.w2v, inputs["input_features"], inputs["attention_mask"])
    fbank = torchaudio.compliance.kaldi.fbank(audio_16k, num_mel_bins=80, dither=0, sample_frequency=16000)
    fbank = fbank - fbank.mean(dim=0, keepdim=True)
    i = index
    return {f"audio16k_{i}": audio_16k[0], f"audio22k_{i}": audio_22k[0],
            f"w2v_input_{i}": inputs["input_features"][0], f"w2v_mask_{i}": inputs["attention_mask"][0],
            f"w2v_feat_{i}": features[0], f"mel22k_{i}": mel_fn(models.cfg)(audio_22k.float())[0],
            f"fbank_{i}": fbank, f"style_{i}": models.campplus(fbank.unsqueeze(0))[0]}


def semantic_codec(models, index: int, sem_feat: torch.Tensor) -> dict:
    """Codec codes of ``sem_feat`` (T, W) and the features S2Mel builds from them (README "Semantic codec")."""
    codes, quantized = models.codec.quantize(sem_feat[None])
    i = index
    out = {f"sem_feat_{i}": sem_feat, f"sem_codes_{i}": codes[0]}
    if models.version == "2.0":
        out[f"sem_quant_{i}"] = quantized[0]
        out[f"sem_embed_{i}"] = models.codec.quantizer.vq2emb(codes[0][None, None]).transpose(1, 2)[0]
    else:
        out[f"sem_decode_{i}"] = models.codec.decode(codes[0][None])[0]
    return out


def speaker_and_emotion(models, index: int, feat: torch.Tensor, style: torch.Tensor) -> dict:
    """GPT speaker conditioning and emotion vector of one example (README "GPT conditioning")."""
    gpt, i = models.gpt, index
    lengths = torch.tensor([feat.shape[0]])
    out = {f"feat_{i}": feat, f"emo_vec_{i}": gpt.get_emovec(feat[None], lengths)[0]}
    if models.version == "2.0":
        out[f"cond_{i}"] = gpt.get_conditioning(feat[None].transpose(1, 2), lengths)[0]
    else:
        out[f"campplus_cond_{i}"] = gpt.spk_emb_proj(style[None])
    return out


def emotion_mixes(models, expected: dict) -> dict:
    """``merge_emovec`` with a second emotion reference, and the 8-value emotion vector path."""
    infer = infer_module(models.version)
    feats = [expected["feat_0"], expected["feat_1"]]
    merged = models.gpt.merge_emovec(feats[0][None], feats[1][None], torch.tensor([feats[0].shape[0]]),
                                     torch.tensor([feats[1].shape[0]]), alpha=tiny.EMO_ALPHA)
    weights = torch.tensor(tiny.EMO_WEIGHTS)
    style = expected["style_0"][None]
    rows = [infer.find_most_similar_cosine(style, group) for group in models.spk_matrix]
    chosen = torch.cat([group[row].unsqueeze(0) for row, group in zip(rows, models.emo_matrix)], 0)
    mix = torch.sum(weights.unsqueeze(1) * chosen, 0).unsqueeze(0)
    weighted = mix + (1 - torch.sum(weights)) * expected["emo_vec_0"][None]
    return {"emo_merge": merged[0], "emo_weights": weights, "emo_rows": torch.stack(rows).long(),
            "emo_vec_weighted": weighted[0]}


def conditioning_rows(models, expected: dict, index: int) -> torch.Tensor:
    """The rows before the text that ``inference_speech`` builds: (1, 34, D) for 2, (1, 3, D) for 2.5."""
    gpt, i = models.gpt, index
    emo = expected[f"emo_vec_{i}"][None]
    if models.version == "2.0":
        speaker = expected[f"cond_{i}"][None]
        speed = torch.zeros(1).long()
        return torch.cat((speaker + emo.unsqueeze(1), gpt.speed_emb(torch.ones_like(speed)).unsqueeze(1),
                          gpt.speed_emb(speed).unsqueeze(1)), 1)
    speaker = expected[f"campplus_cond_{i}"][None]
    return torch.cat((speaker + emo.unsqueeze(1), torch.zeros(1, 2, speaker.size(2))), 1)


def mel_positions(num_codes: int, generation: bool) -> torch.Tensor:
    """Mel positions of ``start_mel, codes..., stop_mel``: 0..N+1 (training, ``forward``), or the
    positions greedy decoding gives ``start_mel, codes...``: 0, 2, 3, ..., N+1 (the reference derives
    a generated code's position from the attention-mask length, so position 1 is never used)."""
    if generation:
        return torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(2, num_codes + 2)])
    return torch.arange(num_codes + 2)


def teacher_forced(models, expected: dict, index: int, codes: torch.Tensor, generation: bool = False) -> tuple:
    """Text logits (V_text, L+1), mel logits (V_mel, N+1) and mel latents (N, D) of the training layout
    (``generation``: with the greedy-decoding mel positions and no trailing stop row)."""
    gpt, i = models.gpt, index
    text = expected[f"text_{i}"]
    text_in = F.pad(F.pad(text, (1, 0), value=gpt.start_text_token), (0, 1), value=gpt.stop_text_token)[None]
    text_emb = gpt.text_embedding(text_in) + gpt.text_pos_embedding(text_in)
    if models.version == "2.5":
        text_emb = text_emb + expected[f"lang_emb_{i}"]
    mel_in = F.pad(codes, (1, 0), value=gpt.start_mel_token)
    mel_in = (mel_in if generation else F.pad(mel_in, (0, 1), value=gpt.stop_mel_token))[None]
    positions = mel_positions(codes.numel(), generation)[: mel_in.shape[1]]
    mel_emb = gpt.mel_embedding(mel_in) + gpt.mel_pos_embedding.emb(positions)[None]
    conds = conditioning_rows(models, expected, index)
    text_logits, mel_logits = gpt.get_logits(conds, text_emb, gpt.text_head, mel_emb, gpt.mel_head)
    _, mel_latent = gpt.get_logits(conds, text_emb, gpt.text_head, mel_emb, gpt.mel_head, return_latent=True)
    return text_logits[0, :, : text.numel() + 1], mel_logits[0, :, : codes.numel() + 1], mel_latent[0, :-2]


def text_inputs(models, index: int) -> dict:
    """``text_i`` (and ``lang_i``, ``lang_emb_i`` for 2.5) as the reference tokenizes the golden texts."""
    if models.version == "2.0":
        from indextts.utils.front import TextTokenizer
        tokenizer = TextTokenizer(str(models.folder / models.cfg.dataset["bpe_model"]), None)
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(tiny.TEXTS_V2[index]))
        return {f"text_{index}": torch.tensor(ids)}
    from indextts.utils.tokenizer import get_tokenizer, lang_to_token
    from tiny_weights import TIKTOKEN_FILE
    get_tokenizer.cache_clear()
    tokenizer = get_tokenizer(multilingual=True, model_dir=str(models.folder))
    assert tokenizer.encoding.name == TIKTOKEN_FILE
    text, lang = tiny.TEXTS_V25[index]
    ids = torch.tensor(tokenizer.encode(f"<|{lang}|> " + text.lower(), allowed_special="all"))
    assert not ((ids == 0) | (ids == 1)).any(), "golden texts must not hold the start/stop text ids"
    lang_id = torch.LongTensor([lang_to_token(lang)])
    return {f"text_{index}": ids, f"lang_{index}": lang_id, f"lang_emb_{index}": models.gpt.lang_embedding(lang_id)[0]}
