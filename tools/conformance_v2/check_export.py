"""Load the gpt.pth of exported IndexTTS-2 / 2.5 folders into the reference's own GPT class, strictly.

Runs in the reference venv (see tools/conformance_v2/README.md):

    /work/ref/venv2/bin/python tools/conformance_v2/check_export.py EXPORTED_DIR... \
        --ref2 /work/ref/v2.0.0 --ref25 /work/ref/v2.5.0

For each folder (``indextts-export`` output), a child process with the checkout of the folder's
version on ``sys.path`` builds ``indextts.gpt.model_v2.UnifiedVoice(**cfg.gpt)`` from the folder's
config.yaml (2.5 with ``spk_cond_mode="campplus"``, as ``infer_v2_5.py`` builds it) and calls
``load_state_dict(torch.load(gpt.pth, weights_only=True)["model"], strict=True)``. Prints one OK
line per folder with the missing and unexpected keys (none); exits 1 when any folder fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CAMPPLUS_VERSION = 2.5
"""Configs with ``version`` 2.5 hold a GPT conditioned on the CAMPPlus embedding."""


def load_in_reference(folder: Path, checkout: Path) -> str:
    """In this process: build the reference GPT for ``folder`` and load its gpt.pth strictly; the report line."""
    sys.path.insert(0, str(checkout))
    import torch
    import transformers
    from omegaconf import OmegaConf

    from indextts.gpt.model_v2 import UnifiedVoice

    cfg = OmegaConf.load(folder / "config.yaml")
    campplus = float(cfg.get("version", 2.0)) == CAMPPLUS_VERSION
    model = UnifiedVoice(**cfg.gpt, **({"spk_cond_mode": "campplus"} if campplus else {}))
    state_dict = torch.load(folder / cfg.gpt_checkpoint, map_location="cpu", weights_only=True)["model"]
    result = model.load_state_dict(state_dict, strict=True)
    return (f"OK {folder}: reference UnifiedVoice ({checkout}, spk_cond_mode="
            f"{'campplus' if campplus else 'default'}) loaded {len(state_dict)} tensors strictly; "
            f"missing keys: {list(result.missing_keys)}; unexpected keys: {list(result.unexpected_keys)} "
            f"(torch {torch.__version__}, transformers {transformers.__version__})")


def checkout_for(folder: Path, ref2: Path, ref25: Path) -> Path:
    """The reference checkout of the folder's version (config.yaml ``version``: 2.0 or 2.5)."""
    for line in (folder / "config.yaml").read_text(encoding="utf-8").splitlines():
        if line.startswith("version:"):
            return ref25 if float(line.split(":", 1)[1]) == CAMPPLUS_VERSION else ref2
    return ref2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="exported IndexTTS-2 / 2.5 folders")
    parser.add_argument("--ref2", type=Path, default=Path("/work/ref/v2.0.0"))
    parser.add_argument("--ref25", type=Path, default=Path("/work/ref/v2.5.0"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the checkout, in the child process
    args = parser.parse_args(argv)
    if args.child is not None:
        print(load_in_reference(args.folders[0].resolve(), args.child.resolve()))
        return 0
    failed = 0
    for folder in args.folders:
        checkout = checkout_for(folder, args.ref2, args.ref25)
        child = subprocess.run([sys.executable, __file__, str(folder), "--child", str(checkout)], check=False)
        failed += child.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
