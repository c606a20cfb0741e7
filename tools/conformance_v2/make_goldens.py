"""Make the IndexTTS-2 / 2.5 golden folders by running the UNMODIFIED reference on tiny random weights.

Runs in the reference venv (see tools/conformance_v2/README.md):

    /work/ref/venv2/bin/python tools/conformance_v2/make_goldens.py \
        --ref2 /work/ref/v2.0.0 --ref25 /work/ref/v2.5.0

Writes conformance/indextts2/tiny2 (IndexTTS-2), tiny25 (IndexTTS-2.5) and text/. Both reference
checkouts hold a package named ``indextts``, so each folder is made in a child process with its
checkout on ``sys.path``. Only the hub downloads are replaced (by the folder's ``hf_cache/``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO_ROOT = TOOLS.parents[1]
OUTPUT = REPO_ROOT / "conformance" / "indextts2"
FOLDERS = {"tiny2": "2.0", "tiny25": "2.5"}
MIRROR = Path("/work/.mirror/index-tts+index-tts/repo")
SEED = 2026


def compute_expected(models) -> dict:
    """Every golden tensor of the README for one folder, in dependency order."""
    import torch
    import stages
    import stages_decode as decode
    import tiny_configs as tiny

    generator = torch.Generator().manual_seed(SEED + 1)
    expected: dict = {}
    width = models.cfg.semantic_codec.hidden_size
    for i in (0, 1):
        expected.update(stages.front_end(models, i, generator))
        sem_feat = torch.randn(tiny.SEM_FEAT_FRAMES[i], width, generator=generator)
        expected.update(stages.semantic_codec(models, i, sem_feat))
        expected[f"codes_{i}"] = expected[f"sem_codes_{i}"][: tiny.CODE_COUNTS[i]].clone()
        expected.update(stages.text_inputs(models, i))
        feat = torch.randn(tiny.FEAT_FRAMES[i], 1024, generator=generator)
        expected.update(stages.speaker_and_emotion(models, i, feat, expected[f"style_{i}"]))
    expected.update(stages.emotion_mixes(models, expected))
    if models.version == "2.0":
        expected["s2mel_latent"] = torch.randn(tiny.CODE_COUNTS[0], 1280, generator=generator)
        for i in (0, 1):
            expected.update(decode.latents(models, expected, i))
    expected.update(decode.training_loss(models, expected))
    for i in (0, 1):
        expected.update(decode.greedy_codes(models, expected, i))
    expected.update(decode.s2mel(models, expected))
    expected.update(decode.vocoder(models, expected))
    return expected


def write_expected(folder: Path, expected: dict) -> None:
    """expected.safetensors (float32 / int64), expected_index.json (name -> description)."""
    import torch
    from safetensors.torch import save_file
    from descriptions import describe

    tensors = {name: (t.long() if not t.is_floating_point() else t.float()).detach().clone().contiguous()
               for name, t in expected.items()}
    save_file(tensors, str(folder / "expected.safetensors"))
    index = {name: f"{describe(name)} {list(t.shape)}" for name, t in sorted(tensors.items())}
    (folder / "expected_index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False) + "\n")
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())


def reference_commit(reference: Path) -> str:
    """The commit of a reference checkout named after its tag (from its .git or the local mirror)."""
    for git_dir in (reference / ".git", MIRROR):
        result = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", f"{reference.name}^{{commit}}"],
                                capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return result.stdout.strip()
    return "unknown"


def write_reference(folder: Path, reference: Path, version: str) -> None:
    import torch
    import transformers
    info = {"repository": "https://github.com/index-tts/index-tts", "tag": reference.name,
            "commit": reference_commit(reference),
            "version": version, "generator": "tools/conformance_v2/make_goldens.py",
            "torch": torch.__version__, "transformers": transformers.__version__}
    (folder / "reference.json").write_text(json.dumps(info, indent=1) + "\n")


def make_folder(name: str, reference: Path, output: Path) -> None:
    """Child process: build, compute and write one golden folder (replacing an older one)."""
    import torch
    from build_folder import build_folder

    version = FOLDERS[name]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / name
        models = build_folder(folder, version, reference, SEED)
        with torch.no_grad():
            expected = compute_expected(models)
        write_expected(folder, expected)
        write_reference(folder, reference, version)
        shutil.rmtree(output / name, ignore_errors=True)
        shutil.copytree(folder, output / name)
    print(f"wrote {output / name}")


def run_child(task: str, reference: Path, args: argparse.Namespace) -> str:
    """Run ``task`` in a child process with ``reference`` on its path; return its last output line."""
    command = [sys.executable, __file__, "--task", task, "--ref2", str(args.ref2), "--ref25", str(args.ref25),
               "--output", str(args.output)]
    env = {"PYTHONPATH": f"{reference}:{TOOLS}", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"making {task} failed:\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


def make_text(args: argparse.Namespace) -> None:
    """text/: both tokenizer files and expected_text_v2.json, one section per reference."""
    folder = args.output / "text"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    expected = {"reference": {"repository": "https://github.com/index-tts/index-tts",
                              "v2.0.0": reference_commit(args.ref2), "v2.5.0": reference_commit(args.ref25)},
                "v2": json.loads(run_child("text2", args.ref2, args)),
                "v2_5": json.loads(run_child("text25", args.ref25, args))}
    (folder / "expected_text_v2.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref2", type=Path, required=True, help="index-tts checkout at tag v2.0.0")
    parser.add_argument("--ref25", type=Path, required=True, help="index-tts checkout at tag v2.5.0")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--only", choices=[*FOLDERS, "text"], help="make only this folder")
    parser.add_argument("--task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task in ("text2", "text25"):
        import make_text_goldens as text
        section = text.section_v2 if args.task == "text2" else text.section_v25
        print(json.dumps(section(args.output / "text"), ensure_ascii=False))
        return
    if args.task:
        make_folder(args.task, args.ref2 if FOLDERS[args.task] == "2.0" else args.ref25, args.output)
        return
    for name, version in FOLDERS.items():
        if args.only in (None, name):
            print(run_child(name, args.ref2 if version == "2.0" else args.ref25, args))
    if args.only in (None, "text"):
        make_text(args)


if __name__ == "__main__":
    main()
