"""Run the whole pipeline on the embedded demo: the same three commands a user runs.

    python tools/run_demo.py --workdir demo_out             (what `make demo` runs)
    python tools/run_demo.py --family 2 --workdir demo_out  (`make demo FAMILY=2`: IndexTTS-2; or 2.5)

1. tools/make_demo_data.py       two eSpeak NG speakers, Chinese / English / mixed sentences
2. tools/make_tiny_checkpoints.py a tiny random checkpoint folder of the family, in the official formats
3. tools/extract_codec.py        codes, speaker conditions, splits, speaker_info.json
4. train.py                      a few LoRA steps on both speakers
5. indextts/infer.py             one wav per speaker (IndexTTS-2 / 2.5: with an emotion vector)

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
FAMILIES = ("1.5", "2", "2.5")
# IndexTTS-2 / 2.5 synthesis: a little "happy" and "surprised" (the order of indextts.v2.emotion.EMOTIONS).
DEMO_EMOTION = "0.4,0,0,0,0,0,0.2,0"


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


def tiny_checkpoints_command(python: str, family: str, model_dir: Path) -> list[str]:
    """The command writing the family's tiny random checkpoint folder (1.5: the tiny layout)."""
    release = ["--release", family] if family != "1.5" else []
    return [python, "tools/make_tiny_checkpoints.py", str(model_dir), "--seed", "0", *release]


def synthesis_command(python: str, family: str, model_dir: Path, run_dir: Path, speaker: str, output: Path) -> list[str]:
    """indextts/infer.py for one trained speaker; IndexTTS-2 / 2.5 speak with DEMO_EMOTION."""
    command = [python, "indextts/infer.py", "--model_dir", str(model_dir), "--adapter", str(run_dir),
               "--speaker", speaker, "--text", TEXTS[speaker], "--output", str(output),
               "--seed", "0", "--max_mel_tokens", "200", "--verbose"]
    return command + (["--emotion_vector", DEMO_EMOTION] if family != "1.5" else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("demo_out"),
                        help="folder for everything the demo writes, rebuilt on each run (default: %(default)s)")
    parser.add_argument("--family", choices=FAMILIES, default="1.5",
                        help="model family of the tiny checkpoint: 1.5, 2 (IndexTTS-2) or 2.5 (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=40, help="LoRA optimizer steps (default: %(default)s)")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    prepare_workdir(workdir)
    python = sys.executable
    data, model_dir = workdir / "data", workdir / "checkpoints"
    processed, run_dir, wavs = workdir / "processed_data", workdir / "runs" / "demo", workdir / "wavs"
    started = time.perf_counter()

    run("demo speech set", [python, "tools/make_demo_data.py", str(data)])
    run("tiny checkpoints", tiny_checkpoints_command(python, args.family, model_dir))
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
        run(f"synthesis ({speaker})",
            synthesis_command(python, args.family, model_dir, run_dir, speaker, wavs / f"{speaker}.wav"))

    print(f"\nDemo finished in {time.perf_counter() - started:.0f} s.")
    for speaker in SPEAKERS:
        print(f"  {speaker}: {wavs / f'{speaker}.wav'}")
    print("The tiny model is random, so these wavs are noise-like, not speech. See README.md to run the "
          f"same commands with the IndexTTS-{args.family} release weights.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
