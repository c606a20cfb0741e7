"""The reference side of bench_v2_reference.py: IndexTTS-2 (index-tts v2.0.0) stages, timed on request.

Runs in the reference's own environment (tools/conformance_v2/README.md), with the reference
checkout on ``PYTHONPATH``; it never imports this project (both packages are named ``indextts``).
It loads the random folder that bench_v2_reference.py wrote with the reference's own loaders, as
``infer_v2.py`` does (only the hub downloads are replaced by the folder's ``hf_cache/``), then reads
one stage name per line on stdin, runs that stage on the shared inputs and answers one JSON line:
``{"stage", "seconds", "units"}``. ``quit`` saves each stage's last output and ends.

The stage bodies are the calls ``infer_v2.py`` makes between its models (tools/conformance_v2/
stages_decode.py repeats the same glue for the goldens).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import load_file, save_file

LENGTH_FACTOR = 1.72
CFM_STEPS = 25
CFG_RATE = 0.7
NOISE_SEED = 1234


def load_models(folder: Path) -> SimpleNamespace:
    """Every benchmarked model, loaded from ``folder`` as ``IndexTTS2.__init__`` loads it."""
    import safetensors.torch
    from omegaconf import OmegaConf
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

    from indextts.gpt.model_v2 import UnifiedVoice
    from indextts.s2mel.modules.bigvgan import bigvgan
    from indextts.s2mel.modules.commons import MyModel, load_checkpoint2
    from indextts.utils.checkpoint import load_checkpoint
    from indextts.utils.maskgct_utils import build_semantic_codec

    cfg = OmegaConf.load(folder / "config.yaml")
    gpt = UnifiedVoice(**cfg.gpt)
    load_checkpoint(gpt, str(folder / cfg.gpt_checkpoint))
    gpt.eval()
    gpt.post_init_gpt2_config(use_deepspeed=False, kv_cache=True, half=False)
    w2v = folder / "hf_cache" / "w2v-bert-2.0"
    stats = torch.load(folder / cfg.w2v_stat)
    codec = build_semantic_codec(cfg.semantic_codec)
    safetensors.torch.load_model(codec, str(folder / "hf_cache" / "semantic_codec_model.safetensors"))
    s2mel, _, _, _ = load_checkpoint2(MyModel(cfg.s2mel, use_gpt_latent=True), None, str(folder / cfg.s2mel_checkpoint),
                                      load_only_params=True, ignore_modules=[], is_distributed=False)
    s2mel.models["cfm"].estimator.setup_caches(max_batch_size=1, max_seq_length=8192)
    vocoder = bigvgan.BigVGAN.from_pretrained(str(folder / "hf_cache" / "bigvgan"), use_cuda_kernel=False)
    vocoder.remove_weight_norm()
    return SimpleNamespace(
        gpt=gpt, codec=codec.eval(), s2mel=s2mel.eval(), bigvgan=vocoder.eval(),
        extract_features=SeamlessM4TFeatureExtractor.from_pretrained(str(w2v), local_files_only=True),
        semantic_model=Wav2Vec2BertModel.from_pretrained(str(w2v), local_files_only=True).eval(),
        semantic_mean=stats["mean"], semantic_std=torch.sqrt(stats["var"]))


def semantic(models, inputs: dict) -> tuple[int, torch.Tensor]:
    """16 kHz audio -> w2v-BERT hidden state 17, normalised -> semantic codec codes."""
    from indextts.infer_v2 import IndexTTS2

    features = models.extract_features(inputs["audio16k"][None], sampling_rate=16000, return_tensors="pt")
    embedding = IndexTTS2.get_emb(models, features["input_features"], features["attention_mask"])
    codes, _ = models.codec.quantize(embedding)
    return codes.shape[-1], codes.reshape(-1)


def gpt_greedy(models, inputs: dict) -> tuple[int, torch.Tensor]:
    """Emotion vector, then ``inference_speech`` greedy for exactly ``gpt_codes`` codes."""
    feat, text = inputs["gpt_features"][None], inputs["text_ids"][None]
    lengths = torch.tensor([feat.shape[1]])
    count = int(inputs["gpt_codes"])
    emo_vec = models.gpt.get_emovec(feat, lengths)
    codes, _ = models.gpt.inference_speech(feat, text, emo_speech_condition=feat, cond_lengths=lengths,
                                           emo_cond_lengths=lengths, emo_vec=emo_vec, do_sample=False, num_beams=1,
                                           max_generate_length=count, min_new_tokens=count)
    return codes.shape[-1], codes[0].long()


def s2mel(models, inputs: dict) -> tuple[float, torch.Tensor]:
    """Codes + GPT latents -> target features; length regulator; CFM, 25 Euler steps, CFG 0.7."""
    regulator, cfm = models.s2mel.models["length_regulator"], models.s2mel.models["cfm"]
    codes, ref_mel, style = inputs["s2mel_codes"][None], inputs["prompt_mel"][None], inputs["style"][None]
    latent = models.s2mel.models["gpt_layer"](inputs["s2mel_latents"][None])
    target = models.codec.quantizer.vq2emb(codes.unsqueeze(1)).transpose(1, 2) + latent
    target_frames = (torch.LongTensor([codes.shape[1]]) * LENGTH_FACTOR).long()
    prompt = regulator(inputs["prompt_features"][None], ylens=torch.LongTensor([ref_mel.size(2)]), n_quantizers=3,
                       f0=None)[0]
    cond = regulator(target, ylens=target_frames, n_quantizers=3, f0=None)[0]
    mu = torch.cat([prompt, cond], dim=1)
    torch.manual_seed(NOISE_SEED)
    mel = cfm.inference(mu, torch.LongTensor([mu.size(1)]), ref_mel, style, None, CFM_STEPS,
                        inference_cfg_rate=CFG_RATE)
    return int(target_frames) * 256 / 22050, mel[0, :, ref_mel.size(-1):]


def vocoder(models, inputs: dict) -> tuple[float, torch.Tensor]:
    """BigVGAN v2: log-mel (80, F) -> waveform."""
    mel = inputs["vocoder_mel"]
    return mel.shape[-1] * 256 / 22050, models.bigvgan(mel[None].float())[0, 0]


STAGES = {"semantic": semantic, "gpt": gpt_greedy, "s2mel": s2mel, "vocoder": vocoder}


def serve(models, inputs: dict, outputs: Path, answer) -> None:
    """Run the stages named on stdin until ``quit``; then save each stage's last output to ``outputs``."""
    last = {}
    for line in sys.stdin:
        stage = line.strip()
        if stage == "quit":
            break
        start = time.perf_counter()
        with torch.inference_mode():
            units, last[stage] = STAGES[stage](models, inputs)
        answer({"stage": stage, "seconds": time.perf_counter() - start, "units": units})
    save_file({name: tensor.contiguous() for name, tensor in last.items()}, str(outputs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="the random IndexTTS-2 folder")
    parser.add_argument("--inputs", type=Path, required=True, help="inputs.safetensors written by the driver")
    parser.add_argument("--outputs", type=Path, required=True, help="where the last outputs are saved")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the reference prints to stdout; only the JSON answers go to the driver

    def answer(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    models = load_models(args.folder)
    answer({"ready": time.perf_counter() - start, "torch": torch.__version__})
    serve(models, load_file(str(args.inputs)), args.outputs, answer)


if __name__ == "__main__":
    main()
