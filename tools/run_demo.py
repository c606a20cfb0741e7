"""Run the whole pipeline on the embedded demo: the same three commands a user runs.

    python tools/run_demo.py --workdir demo_out        (what `make demo` runs)

1. tools/make_demo_data.py       two eSpeak NG speakers, Chinese / English / mixed sentences
2. tools/make_tiny_checkpoints.py a tiny random IndexTTS checkpoint folder in the official formats
3. tools/extract_codec.py        codes, speaker conditions, splits, speaker_info.json
4. train.py                      a few LoRA steps on both speakers
5. indextts/infer.py             one wav per speaker

The tiny model has random weights, so the wavs are not speech: the demo proves the pipeline runs
end to end. With the release weights in checkpoints/ the same commands produce a real voice.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = ".indextts-demo"
SPEAKERS = ("demo_speaker_a", "demo_speaker_b")
TEXTS = {
    "demo_speaker_a": "Hello! 这是一个演示，the pipeline runs end to end.",
    "demo_speaker_b": "今天天气很好，we trained two voices in a few minutes.",
}


def run(step: str, command: list[str]) -> None:
    """Run one pipeline command from the repository root, echoing it shell-quoted (so it can be
    pasted); stop the demo on failure."""
    print(f"\n=== {step}\n$ {shlex.join(command)}", flush=True)
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=REPO_ROOT)
    if completed.returncode != 0:
        sys.exit(f"demo: step '{step}' failed with exit status {completed.returncode}; see its output above.")
    print(f"--- {step}: {time.perf_counter() - started:.1f} s", flush=True)


def prepare_workdir(workdir: Path) -> None:
    """Start from an empty demo folder; refuse to wipe a folder the demo did not create."""
    if workdir.exists():
        if not (workdir / MARKER).is_file():
            sys.exit(f"demo: {workdir} exists and was not made by the demo; choose another --workdir or remove it.")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / MARKER).write_text("made by tools/run_demo.py; deleted and rebuilt by each demo run\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("demo_out"),
                        help="folder for everything the demo writes, rebuilt on each run (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=40, help="LoRA optimizer steps (default: %(default)s)")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    prepare_workdir(workdir)
    python = sys.executable
    data, model_dir = workdir / "data", workdir / "checkpoints"
    processed, run_dir, wavs = workdir / "processed_data", workdir / "runs" / "demo", workdir / "wavs"
    started = time.perf_counter()

    run("demo speech set", [python, "tools/make_demo_data.py", str(data)])
    run("tiny checkpoints", [python, "tools/make_tiny_checkpoints.py", str(model_dir), "--seed", "0"])
    extract = [python, "tools/extract_codec.py", "--extract_condition", "--model_dir", str(model_dir),
               "--output_dir", str(processed)]
    for speaker in SPEAKERS:
        extract += ["--audio_list", str(data / f"{speaker}.lst")]
    run("extraction", extract)
    run("LoRA training", [
        python, "train.py", f"model_dir={model_dir}", f"speaker_info={processed / 'speaker_info.json'}",
        f"run_dir={run_dir}", f"train.max_steps={args.steps}", "train.grad_accum=1", "train.save_every_steps=0",
        "train.log_every_steps=5", "data.num_workers=0",
    ])
    for speaker in SPEAKERS:
        run(f"synthesis ({speaker})", [
            python, "indextts/infer.py", "--model_dir", str(model_dir), "--adapter", str(run_dir),
            "--speaker", speaker, "--text", TEXTS[speaker], "--output", str(wavs / f"{speaker}.wav"),
            "--seed", "0", "--max_mel_tokens", "200", "--verbose",
        ])

    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
    for speaker in SPEAKERS:
        print(f"  {speaker}: {wavs / f'{speaker}.wav'}")
    print("The tiny model is random, so these wavs are noise-like, not speech. See README.md to run the "
          "same commands with the IndexTTS-1.5 release weights.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
