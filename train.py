"""LoRA fine-tuning of the IndexTTS GPT on data from tools/extract_codec.py (same as ``indextts-train``).

One GPU (or CPU):
    python train.py [key=value ...]                 e.g. run_dir=runs/my_voice train.epochs=3 train.lora.r=8
Several GPUs on one machine (DDP, NCCL; gloo on CPU):
    torchrun --standalone --nproc_per_node=4 train.py [key=value ...]
Several machines (run on each, with its own --node_rank):
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 train.py
Resume a killed or finished run from its latest complete checkpoint:
    python train.py --resume run_dir=runs/my_voice  (same as train.resume=auto)

Defaults and their meaning: indextts/configs/train.yaml; the manual: docs/training.md. The run
folder's layout is ``indextts.run_folder``'s; ``IndexTTS.from_run(run_dir)`` (``indextts.inference``)
speaks with it, and tools/export_merged.py writes a merged official gpt.pth.
"""

import sys

from indextts.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
