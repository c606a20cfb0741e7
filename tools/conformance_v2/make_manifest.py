"""Write conformance/indextts2/state_dict_manifest.json from the UNMODIFIED IndexTTS-2 / 2.5 reference.

Runs in the reference venv (torch 2.9, transformers 4.52), not in this project's venv:

    /work/ref/venv2/bin/python tools/conformance_v2/make_manifest.py \
        --ref2 /work/ref/v2.0.0 --ref25 /work/ref/v2.5.0

Both reference checkouts hold a package named ``indextts``, so each section is built in a child
process with that checkout on ``sys.path``. Every model is built on the ``meta`` device (no memory,
no weights) from the release config (IndexTTS-2) or from the config derived from the 2.5 code.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from make_goldens import reference_commit

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / "conformance" / "indextts2" / "state_dict_manifest.json"

ABOUT = (
    "Parameter/buffer names and shapes of the IndexTTS-2 release checkpoints (release config of index-tts "
    "tag v2.0.0) and of IndexTTS-2.5 (config derived from the code of tag v2.5.0, see 'derived'), built by the "
    "unmodified reference classes on the meta device. gpt.pth = {'model': state_dict}; s2mel.pth = {'net': "
    "{module: state_dict}} for the modules listed; semantic_codec = amphion/MaskGCT "
    "semantic_codec/model.safetensors (plain safetensors state dict); codec.pth (2.5) = {'model': state_dict}; "
    "campplus = funasr/campplus campplus_cn_common.bin (plain state dict); bigvgan = "
    "nvidia/bigvgan_v2_22khz_80band_256x bigvgan_generator.pt {'generator': state_dict} with weight norm "
    "(weight_g/weight_v); w2v_bert = facebook/w2v-bert-2.0 model.safetensors keys as transformers' "
    "Wav2Vec2BertModel (reference environment: transformers 4.52.1) builds them from w2v_bert_config, which is "
    "transformers' Wav2Vec2BertConfig defaults (documented as facebook/w2v-bert-2.0; masked_spec_embed exists "
    "because mask_time_prob > 0; the reference loads it with from_pretrained, which is not strict). The "
    "reference loads s2mel.pth non-strictly (load_checkpoint2 keeps the keys whose shapes match), so a "
    "release s2mel.pth may hold more keys than listed; every listed key must be present."
)

# The IndexTTS-2.5 release config is not public. These are the values the 2.5 code fixes or implies;
# everything not listed here is assumed equal to the IndexTTS-2 release config.
DERIVED_25 = {
    "gpt": "UnifiedVoice(**cfg.gpt, spk_cond_mode='campplus') in indextts/infer_v2_5.py (class in "
           "indextts/gpt/model_v2.py): no conformer speaker encoder/perceiver and no speed_emb; adds "
           "spk_emb_proj Linear(192, model_dim) and lang_embedding Embedding(len(LANGUAGE_DICT) + 1 = 107, "
           "model_dim) (LANGUAGE_DICT from indextts/utils/tokenizer.py). Widths assumed equal to IndexTTS-2.",
    "gpt.number_text_tokens": "assumed: the 2.5 text tokenizer is a Whisper-style tiktoken file "
           "(multilingual_zh_ja_yue_char_del.tiktoken, not public) plus 1673 special tokens "
           "(get_encoding in indextts/utils/tokenizer.py); its rank count is unknown, so the value here "
           "assumes Whisper's 50257 ranks: 50257 + 1673 = 51930. Shapes of text_embedding/text_head follow "
           "it; a module must read it from the release config.",
    "semantic_codec": "EnhancedCodec(**cfg.semantic_codec, cfg=cfg.semantic_codec) in indextts/infer_v2_5.py "
           "(indextts/codec/models.py): file codec.pth = {'model': state_dict} in the release folder; "
           "values assumed equal to IndexTTS-2's semantic_codec section with the class defaults "
           "num_quantizers 1 and downsample_scale 2 (adds down/up convolutions).",
    "s2mel": "MyModel(cfg.s2mel) without use_gpt_latent in indextts/infer_v2_5.py: no gpt_layer; the length "
           "regulator takes codec.decode(codes) and raw w2v-BERT features (1024). Values assumed equal to "
           "IndexTTS-2's s2mel section.",
    "auxiliary": "w2v-BERT 2.0, CAMPPlus(80, 192) and BigVGAN v2 are the same files as IndexTTS-2 "
           "(ensure_models_available in indextts/utils/model_download.py): see the IndexTTS-2 section.",
}


def shapes(module) -> dict[str, list[int]]:
    """name -> shape of every persistent parameter and buffer of ``module``."""
    return {name: list(tensor.shape) for name, tensor in module.state_dict().items()}


def release2_config(ref: Path):
    from omegaconf import OmegaConf
    return OmegaConf.load(ref / "checkpoints" / "config.yaml")


def derived25_config(ref2: Path):
    """The IndexTTS-2 release config with the 2.5 changes of DERIVED_25."""
    cfg = release2_config(ref2)
    cfg.gpt.number_text_tokens = 51930
    cfg.semantic_codec.num_quantizers = 1
    cfg.semantic_codec.downsample_scale = 2
    cfg.version = 2.5
    return cfg


def bigvgan_config(ref: Path) -> dict:
    return json.loads((ref / "indextts" / "s2mel" / "modules" / "bigvgan" / "config.json").read_text())


def section2(ref: Path) -> dict:
    """IndexTTS-2: gpt.pth, s2mel.pth and the auxiliary models, from the v2.0.0 reference."""
    import torch
    from omegaconf import OmegaConf
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel
    from indextts.gpt.model_v2 import UnifiedVoice
    from indextts.s2mel.modules.bigvgan.bigvgan import BigVGAN
    from indextts.s2mel.modules.bigvgan.env import AttrDict
    from indextts.s2mel.modules.campplus.DTDNN import CAMPPlus
    from indextts.s2mel.modules.commons import MyModel
    from indextts.utils.maskgct.models.codec.kmeans.repcodec_model import RepCodec

    cfg = release2_config(ref)
    with torch.device("meta"):
        gpt = UnifiedVoice(**cfg.gpt)
        s2mel = MyModel(cfg.s2mel, use_gpt_latent=True)
        codec = RepCodec(cfg=cfg.semantic_codec)
        campplus = CAMPPlus(feat_dim=80, embedding_size=192)
        bigvgan = BigVGAN(AttrDict(bigvgan_config(ref)))
        w2v = Wav2Vec2BertModel(Wav2Vec2BertConfig())
    return {
        "config": OmegaConf.to_container(cfg),
        "gpt.pth": shapes(gpt),
        "s2mel.pth": {name: shapes(module) for name, module in s2mel.models.items()},
        "semantic_codec": shapes(codec),
        "campplus": shapes(campplus),
        "bigvgan": shapes(bigvgan),
        "bigvgan_config": bigvgan_config(ref),
        "w2v_bert": shapes(w2v),
        "w2v_bert_config": {k: v for k, v in Wav2Vec2BertConfig().to_diff_dict().items()
                            if k not in ("transformers_version",)},
    }


def section25(ref25: Path, ref2: Path) -> dict:
    """IndexTTS-2.5: gpt.pth, s2mel.pth and codec.pth from the v2.5.0 reference and the derived config."""
    import torch
    from omegaconf import OmegaConf
    from indextts.codec.models import EnhancedCodec
    from indextts.gpt.model_v2 import UnifiedVoice
    from indextts.s2mel.modules.commons import MyModel

    cfg = derived25_config(ref2)
    with torch.device("meta"):
        gpt = UnifiedVoice(**cfg.gpt, spk_cond_mode="campplus")
        s2mel = MyModel(cfg.s2mel)
        codec = EnhancedCodec(**cfg.semantic_codec, cfg=cfg.semantic_codec)
    return {
        "config": OmegaConf.to_container(cfg),
        "derived": DERIVED_25,
        "gpt.pth": shapes(gpt),
        "s2mel.pth": {name: shapes(module) for name, module in s2mel.models.items()},
        "codec.pth": shapes(codec),
    }


def run_section(name: str, ref: Path, args: argparse.Namespace) -> dict:
    """Build one section in a child process whose ``indextts`` package is the ``ref`` checkout."""
    command = [sys.executable, __file__, "--section", name, "--ref2", str(args.ref2), "--ref25", str(args.ref25)]
    result = subprocess.run(command, capture_output=True, text=True, check=False,
                            env={"PYTHONPATH": str(ref), "PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        sys.exit(f"building the {name} section failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref2", type=Path, required=True, help="index-tts checkout at tag v2.0.0")
    parser.add_argument("--ref25", type=Path, required=True, help="index-tts checkout at tag v2.5.0")
    parser.add_argument("--section", choices=["2", "2.5"], help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.section == "2":
        print(json.dumps(section2(args.ref2)))
        return
    if args.section == "2.5":
        print(json.dumps(section25(args.ref25, args.ref2)))
        return
    manifest = {
        "about": ABOUT,
        "reference": {"repository": "https://github.com/index-tts/index-tts",
                      "v2.0.0": reference_commit(args.ref2), "v2.5.0": reference_commit(args.ref25)},
        "IndexTTS-2": run_section("2", args.ref2, args),
        "IndexTTS-2.5": run_section("2.5", args.ref25, args),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
