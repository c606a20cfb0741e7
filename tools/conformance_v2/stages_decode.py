"""GPT latents, training loss, greedy codes, S2Mel and BigVGAN goldens (README "GPT", "S2Mel", "Vocoder").

Each result is checked here against a second way of computing it where the README promises an
identity (latents = the training layout's hidden states, teacher-forced argmax = greedy codes,
the stored noise = the CFM's own draw), so a wrong definition fails the generator itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import tiny_configs as tiny
from stages import CFG_RATE, CFM_STEPS, LENGTH_FACTOR, teacher_forced

NOISE_SEED = 1234


def latents(models, expected: dict, index: int) -> dict:
    """``latent_i`` from the reference ``UnifiedVoice.forward`` (2 only)."""
    i = index
    feat, text, codes = expected[f"feat_{i}"], expected[f"text_{i}"], expected[f"codes_{i}"]
    lengths = torch.tensor([feat.shape[0]])
    latent = models.gpt(expected[f"cond_{i}"][None], text[None], torch.tensor([text.numel()]), codes[None].clone(),
                        torch.tensor([codes.numel()]), feat[None], cond_mel_lengths=lengths,
                        emo_cond_mel_lengths=lengths, emo_vec=expected[f"emo_vec_{i}"][None],
                        use_speed=torch.zeros(1).long())[0]
    _, _, layout_latent = teacher_forced(models, expected, index, codes)
    torch.testing.assert_close(layout_latent, latent, atol=1e-5, rtol=1e-5)
    return {f"latent_{i}": latent}


def training_loss(models, expected: dict) -> dict:
    """Teacher-forced text and code cross-entropy over both examples (README "Training loss")."""
    gpt = models.gpt
    logits = [teacher_forced(models, expected, i, expected[f"codes_{i}"]) for i in (0, 1)]
    text_targets = [F.pad(expected[f"text_{i}"], (0, 1), value=gpt.stop_text_token) for i in (0, 1)]
    mel_targets = [F.pad(expected[f"codes_{i}"], (0, 1), value=gpt.stop_mel_token) for i in (0, 1)]
    text_loss = sum(F.cross_entropy(lg[0].T, t, reduction="sum") for lg, t in zip(logits, text_targets))
    mel_loss = sum(F.cross_entropy(lg[1].T, t, reduction="sum") for lg, t in zip(logits, mel_targets))
    return {"train_loss_text": (text_loss / sum(t.numel() for t in text_targets)).reshape(1),
            "train_loss_mel": (mel_loss / sum(t.numel() for t in mel_targets)).reshape(1),
            "train_text_logits": padded([lg[0] for lg in logits]),
            "train_mel_logits": padded([lg[1] for lg in logits])}


def padded(columns: list[torch.Tensor]) -> torch.Tensor:
    """Stack (V, n_i) tensors into (B, V, max n_i), zero beyond each n_i."""
    width = max(c.shape[1] for c in columns)
    return torch.stack([F.pad(c, (0, width - c.shape[1])) for c in columns])


def greedy_codes(models, expected: dict, index: int) -> dict:
    """``inference_speech`` greedy, at most 30 codes; checked against the teacher-forced argmax."""
    i, gpt = index, models.gpt
    feat, text = expected[f"feat_{i}"], expected[f"text_{i}"]
    lengths = torch.tensor([feat.shape[0]])
    speaker = {"langs": expected[f"lang_{i}"], "campplus_embedding": expected[f"style_{i}"][None]} \
        if models.version == "2.5" else {}
    codes, _ = gpt.inference_speech(feat[None], text[None], emo_speech_condition=feat[None], cond_lengths=lengths,
                                    emo_cond_lengths=lengths, emo_vec=expected[f"emo_vec_{i}"][None],
                                    do_sample=False, num_beams=1, max_generate_length=tiny.GREEDY_MAX, **speaker)
    codes = codes[0].long()
    stopped = bool(codes.numel()) and int(codes[-1]) == gpt.stop_mel_token
    given = codes[:-1] if stopped else codes
    _, mel_logits, _ = teacher_forced(models, expected, index, given, generation=True)
    assert torch.equal(mel_logits.argmax(0)[: codes.numel()], codes), "teacher-forced argmax != greedy codes"
    return {f"greedy_codes_{i}": codes}


def s2mel_semantics(models, expected: dict) -> tuple:
    """Prompt and target semantic features (1, T, W) that enter the length regulator for example 0."""
    codes = expected["codes_0"]
    if models.version == "2.0":
        latent = models.s2mel.models["gpt_layer"](expected["s2mel_latent"][None])
        target = models.codec.quantizer.vq2emb(codes[None].unsqueeze(1)).transpose(1, 2) + latent
        target_frames = (torch.LongTensor([codes.numel()]) * LENGTH_FACTOR).long()
        return expected["sem_quant_0"][None], target, target_frames
    target = models.codec.decode(codes[None])
    return expected["sem_feat_0"][None], target, torch.LongTensor([int(target.shape[1] * LENGTH_FACTOR * 1.0)])


def s2mel(models, expected: dict) -> dict:
    """Length regulator, then CFM (25 Euler steps, CFG 0.7) with the stored noise (README "S2Mel")."""
    regulator, cfm = models.s2mel.models["length_regulator"], models.s2mel.models["cfm"]
    prompt_semantics, target_semantics, target_frames = s2mel_semantics(models, expected)
    ref_mel, style = expected["mel22k_0"][None], expected["style_0"][None]
    prompt = regulator(prompt_semantics, ylens=torch.LongTensor([ref_mel.size(2)]), n_quantizers=3, f0=None)[0]
    cond = regulator(target_semantics, ylens=target_frames, n_quantizers=3, f0=None)[0]
    mu = torch.cat([prompt, cond], dim=1)
    total = torch.LongTensor([mu.size(1)])
    torch.manual_seed(NOISE_SEED)
    noise = torch.randn([1, cfm.in_channels, mu.size(1)])
    torch.manual_seed(NOISE_SEED)
    mel = cfm.inference(mu, total, ref_mel, style, None, CFM_STEPS, inference_cfg_rate=CFG_RATE)
    t_span = torch.linspace(0, 1, CFM_STEPS + 1)
    again = cfm.solve_euler(noise.clone(), total, ref_mel, mu.clone(), style, None, t_span, CFG_RATE)
    torch.testing.assert_close(again, mel, atol=0, rtol=0)
    return {"s2mel_prompt_cond": prompt[0], "s2mel_cond": cond[0], "s2mel_noise": noise[0],
            "s2mel_mel": mel[0, :, ref_mel.size(-1):]}


def vocoder(models, expected: dict) -> dict:
    """BigVGAN v2 waveform of a short log-mel input."""
    mel = expected["mel22k_1"][:, : tiny.VOCODER_FRAMES].clone()
    return {"vocoder_mel": mel, "vocoder_wav": models.bigvgan(mel[None].float())[0, 0]}
