"""Helpers shared by the test modules: where the conformance data lives, tiny extracted data sets and
tiny offline ASR / speaker-verification models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CONFORMANCE = REPO_ROOT.parent / "shared" / "conformance"
MANIFEST_FILE = SHARED_CONFORMANCE / "state_dict_manifest.json"
RELEASES = ("IndexTTS-1.5", "IndexTTS-1.0")


V2_CONFORMANCE = REPO_ROOT / "conformance" / "indextts2"


def golden_family(folder: Path):
    """The model family (``indextts.families.Family``) a golden folder's config.yaml describes."""
    from indextts.families import family_of

    config = folder / "config.yaml"
    return family_of(yaml.safe_load(config.read_text()), str(config))


def _golden_folders(marker_file: str, root: Path, generation: int) -> list[Path]:
    """The folders under ``root`` holding ``marker_file``, plus those INDEXTTS_CONFORMANCE_DIRS lists
    (os.pathsep-separated; a golden folder or a folder of them) that are of model ``generation``: by
    their config.yaml; a folder without one (a text golden) is told apart by its marker alone."""
    found = sorted(p.parent for p in root.glob(f"*/{marker_file}"))
    for folder in (Path(p) for p in os.environ.get("INDEXTTS_CONFORMANCE_DIRS", "").split(os.pathsep) if p):
        listed = [folder] if (folder / marker_file).is_file() else sorted(
            p.parent for p in folder.glob(f"*/{marker_file}"))
        found += [f for f in listed if not (f / "config.yaml").is_file() or golden_family(f).generation == generation]
    return list(dict.fromkeys(p.resolve() for p in found))


def conformance_folders(marker_file: str) -> list[Path]:
    """Every IndexTTS 1.0/1.5 golden folder holding ``marker_file``: those in ../shared/conformance plus
    the ones listed in INDEXTTS_CONFORMANCE_DIRS (IndexTTS-2 folders listed there are left out)."""
    found = _golden_folders(marker_file, SHARED_CONFORMANCE, 1)
    if not found and conformance_required():
        conformance_missing(f"no golden folder holds {marker_file}")
    return found


def v2_golden_folders(marker_file: str = "expected.safetensors") -> list[Path]:
    """IndexTTS-2 / 2.5 golden folders holding ``marker_file``: those under conformance/indextts2/ plus
    those in INDEXTTS_CONFORMANCE_DIRS (a folder or its subfolders) that are IndexTTS-2 goldens."""
    return _golden_folders(marker_file, V2_CONFORMANCE, 2)


CONFORMANCE_HINT = (f"place the conformance set at {SHARED_CONFORMANCE} (beside the repository) or list golden "
                    "folders in INDEXTTS_CONFORMANCE_DIRS")
EMPTY_PARAMETER_SET = "got empty parameter set"


def conformance_required() -> bool:
    """CI (CI=true) or INDEXTTS_REQUIRE_CONFORMANCE=1: missing conformance data fails instead of skipping."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("INDEXTTS_REQUIRE_CONFORMANCE") == "1"


def conformance_skip_reason(what: str) -> str:
    return f"conformance data absent ({what}): {CONFORMANCE_HINT}"


def conformance_missing(what: str) -> None:
    """Skip with one clear reason on a standalone clone; fail where the data is required."""
    reason = conformance_skip_reason(what)
    if conformance_required():
        pytest.fail(f"{reason}. It is required here (CI=true or INDEXTTS_REQUIRE_CONFORMANCE=1).", pytrace=False)
    pytest.skip(reason)


TEXTS = ["Hello there, how are you today?", "The quick brown fox jumps over the lazy dog.",
         "We are testing the training loop.", "Small models learn simple patterns quickly.",
         "今天天气很好。", "Please read this sentence slowly."]


def write_extracted_data(root: Path, model_dim: int, speakers=("alice", "bob"), train_rows: int = 6,
                         valid_rows: int = 2, num_mel_codes: int = 256, seed: int = 0) -> Path:
    """Write extraction output in the documented layout; returns speaker_info.json.

    Each speaker's codes follow a simple speaker-specific pattern, so a few steps can learn them.
    """
    rng = np.random.default_rng(seed)
    entries = []
    for s, speaker in enumerate(speakers):
        folder = root / speaker
        (folder / "codes").mkdir(parents=True)
        (folder / "conditions").mkdir()
        (folder / "wavs").mkdir()
        rows = []
        for i in range(train_rows + valid_rows):
            uid = f"{speaker}_{i:03d}"
            num_codes = int(rng.integers(8, 30))
            codes = ((np.arange(num_codes) * (s + 2) + s) % min(num_mel_codes, 13)).astype(np.int32)
            np.save(folder / "codes" / f"{uid}.npy", codes)
            np.save(folder / "conditions" / f"{uid}.npy", rng.standard_normal((32, model_dim)).astype(np.float32))
            soundfile.write(folder / "wavs" / f"{uid}.wav", rng.uniform(-0.3, 0.3, 24000 // 2).astype(np.float32), 24000)
            rows.append({"uid": uid, "speaker": speaker, "audio": f"wavs/{uid}.wav", "text": TEXTS[i % len(TEXTS)],
                         "codes": f"codes/{uid}.npy", "condition": f"conditions/{uid}.npy",
                         "duration": num_codes * 1024 / 24000, "num_codes": num_codes, "num_text_tokens": 0})
        for name, subset in (("metadata.jsonl", rows), ("metadata_train.jsonl", rows[:train_rows]),
                             ("metadata_valid.jsonl", rows[train_rows:])):
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in subset), encoding="utf-8")
        np.save(folder / "medoid_condition.npy", np.load(folder / "conditions" / f"{speaker}_000.npy"))
        (folder / "medoid_info.json").write_text(json.dumps(
            {"uid": f"{speaker}_000", "audio": f"wavs/{speaker}_000.wav", "condition": f"conditions/{speaker}_000.npy",
             "metric": "cosine"}), encoding="utf-8")
        entries.append({"speaker": speaker, "avg_duration": 1.0, "sample_num": len(rows),
                        "total_duration_in_seconds": 1.0, "total_duration_in_minutes": 0.1,
                        "total_duration_in_hours": 0.01, "train_jsonl": f"{speaker}/metadata_train.jsonl",
                        "valid_jsonl": f"{speaker}/metadata_valid.jsonl",
                        "medoid_condition": f"{speaker}/medoid_condition.npy"})
    info = root / "speaker_info.json"
    info.write_text(json.dumps(entries, indent=2), encoding="utf-8")
    return info


def tiny_overrides(model_dir: Path, speaker_info: Path, run_dir: Path, *extra: str) -> list[str]:
    """Fast CPU settings for the tiny model."""
    return [f"model_dir={model_dir}", f"speaker_info={speaker_info}", f"run_dir={run_dir}",
            "data.num_workers=0", "data.max_tokens=400", "data.max_batch_size=4", "data.min_duration=0.1",
            "train.device=cpu", "train.precision=fp32", "train.grad_accum=1", "train.epochs=2",
            "train.optimizer.lr=3e-3", "train.speaker_conditions.lr=3e-3", "train.lora.dropout=0.1",
            "train.scheduler.warmup_ratio=0.0", "train.save_every_steps=0", "train.deterministic=true", *extra]


WHISPER_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|zh|>", "<|translate|>", "<|transcribe|>",
    "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>",
)


def _tiny_whisper_processor():
    """A Whisper processor whose byte-level tokenizer needs no downloaded vocabulary; also its vocab."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    vocab = {symbol: index for index, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    for token in WHISPER_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": list(WHISPER_SPECIAL_TOKENS[1:])})
    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer), vocab


def write_tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random multilingual Whisper (en, zh) with its processor under ``folder``, offline.

    The tokenizer is byte-level BPE with the 256 byte symbols and no merges plus Whisper's special
    tokens, so it encodes any text without a downloaded vocabulary. Load it with
    ``load_asr(f"whisper:{folder}")`` or ``WhisperForConditionalGeneration.from_pretrained(folder)``.
    """
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    processor, vocab = _tiny_whisper_processor()
    end, start = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=start,
        eos_token_id=end, pad_token_id=end, bos_token_id=end,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start, eos_token_id=end, pad_token_id=end, bos_token_id=end,
        lang_to_id={"<|en|>": vocab["<|en|>"], "<|zh|>": vocab["<|zh|>"]},
        task_to_id={"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"], is_multilingual=True,
        suppress_tokens=[], begin_suppress_tokens=[],
    )
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_wavlm(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random ``WavLMForXVector`` with its feature extractor under ``folder``, offline.

    Load it with ``load_speaker_encoder(f"wavlm:{folder}")``; its embeddings carry no speaker
    information (random weights), so only the plumbing can be tested with it.
    """
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    config = WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        conv_dim=(16, 16), conv_kernel=(10, 8), conv_stride=(5, 64), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16, 32), tdnn_kernel=(3, 1, 1), tdnn_dilation=(1, 1, 1),
        xvector_output_dim=8, num_buckets=16, max_bucket_distance=32,
    )
    torch.manual_seed(seed)
    WavLMForXVector(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return Path(folder)


def demo_list_in(demo_list: Path, out_path: Path, language: str = "en") -> Path:
    """Write the lines of a demo audio list in ``language`` (en, zh or mixed) to ``out_path`` (paths
    made absolute)."""
    lines = []
    for line in demo_list.read_text(encoding="utf-8").splitlines():
        audio, text = line.split("\t")
        if audio.endswith(f"_{language}.wav"):
            lines.append(f"{(demo_list.parent / audio).resolve()}\t{text}\n")
    out_path.write_text("".join(lines), encoding="utf-8")
    return out_path


# ----------------------------------------------------------------------------- extraction (helper B)

EXTRACT_CLI = REPO_ROOT / "tools" / "extract_codec.py"


def run_extract_cli(*args, check_rc: int | None = 0):
    """Run tools/extract_codec.py in a subprocess (as a user does); assert its exit status when given."""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, str(EXTRACT_CLI), *map(str, args)], capture_output=True, text=True,
                            env=env, cwd=REPO_ROOT, timeout=600)
    if check_rc is not None:
        assert result.returncode == check_rc, result.stderr
    return result


def kill_extraction_after(args: list, records: Path, count: int = 2, timeout: float = 300) -> None:
    """Start tools/extract_codec.py with ``args`` and SIGKILL it once ``records`` holds ``count`` progress
    records (a kill -9 in the middle of a run); assert that it had not finished."""
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, str(EXTRACT_CLI), *map(str, args)], env=env, cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline and len(list(records.glob("*.json"))) < count:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def tone(seconds: float, sample_rate: int, frequency: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A voiced-ish test signal: a harmonic tone plus a little noise, (S,) or (S, channels)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    mono = sum(0.2 / k * np.sin(2 * np.pi * k * frequency * t) for k in range(1, 5))
    mono = (mono + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    return mono if channels == 1 else np.stack([mono * (0.5 + 0.5 * c) for c in range(channels)], axis=1)


def jsonl(path: Path) -> list[dict]:
    """The rows of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative POSIX path -> bytes), to prove nothing changed."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_lora_run(run_dir: Path, gpt, reference_mel, speakers=("alice", "bob"), seed: int = 0,
                   identity: dict | None = None, model_dir: Path | None = None) -> Path:
    """A training run folder in train.py's layout without training: a perturbed LoRA adapter on
    ``gpt`` (r=4) and random conditions for ``speakers`` (same seed -> same adapter and same first
    speakers). ``identity`` becomes ``model.base`` (the base fingerprint) when given."""
    import torch
    from omegaconf import OmegaConf

    from indextts.lora import (
        TrainedSpeaker,
        add_lora,
        describe_base,
        make_lora_config,
        save_speakers,
    )

    base = {**describe_base(gpt), "base_text_vocab_size": int(gpt.text_vocab_size)}
    if identity is not None:
        base["base"] = dict(identity)
    peft_model = add_lora(gpt, make_lora_config(r=4, alpha=8, dropout=0.0))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:  # lora_B starts at zero: perturb so the adapter changes the output
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    peft_model.save_pretrained(str(run_dir / "adapter"))
    conditions = {name: TrainedSpeaker(torch.randn(32, gpt.model_dim, generator=generator), reference_mel)
                  for name in speakers}
    save_speakers(run_dir, conditions, {"speakers": list(speakers)})
    config = {"model": base, **({"model_dir": str(model_dir)} if model_dir else {})}
    OmegaConf.save(OmegaConf.create(config), run_dir / "config.yaml")
    return run_dir


def file_digests(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (to prove a refused command changed nothing)."""
    import hashlib

    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


LOSSY_SLACK_SECONDS = 0.1
"""Lossy encoders pad to whole frames (mp3 1152, aac 1024 samples) and a stream has no header to trim them."""


def decoded_audio(data: bytes) -> tuple[int, int, str]:
    """Decode an encoded file or stream with FFmpeg (PyAV): (samples, sample rate, container name).

    Opus always decodes at 48 kHz, whatever rate was encoded.
    """
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].sample_rate
        samples = sum(frame.samples for frame in container.decode(audio=0))
        return samples, rate, container.format.name


def train_tiny_eval_run(root: Path, tiny_model_dir: Path, steps: int = 4) -> Path:
    """A finished tiny run on eSpeak demo speech (two speakers, one validation row each) with
    checkpoints at every epoch's end (2 steps an epoch): what indextts-eval reads."""
    from demo_data import make_demo_dataset

    from indextts.extraction import ExtractionOptions, run_extraction
    from indextts.training import DEFAULT_CONFIG, load_train_config, run_training

    lists = make_demo_dataset(root / "demo", sentences_per_speaker=4, seed=0)
    run_extraction(ExtractionOptions(audio_lists=lists, model_dir=tiny_model_dir, output_dir=root / "extracted",
                                     extract_condition=True, device="cpu", batch_size=4, num_workers=0,
                                     valid_ratio=0.25, progress=False))
    run_dir = root / "run"
    run_training(load_train_config(DEFAULT_CONFIG, [
        f"model_dir={tiny_model_dir}", f"speaker_info={root / 'extracted' / 'speaker_info.json'}", f"run_dir={run_dir}",
        # 3 training rows per speaker in batches of 3: an epoch is 2 steps, saved and validated at its end
        "data.num_workers=0", "data.max_tokens=4000", "data.max_batch_size=3", "data.min_duration=0.1",
        "train.device=cpu", "train.precision=fp32", "train.grad_accum=1", f"train.max_steps={steps}",
        "train.save_every_steps=0", "train.val_every_steps=0", "train.keep_checkpoints=5", "train.optimizer.lr=3e-3",
        "train.scheduler.warmup_ratio=0.0"]))
    return run_dir


def run_process_group(command: list, timeout: float, **popen_kwargs):
    """``subprocess.run(command, capture_output=True, text=True, timeout=timeout)`` for commands that start
    children of their own (torchrun and its ranks): the command leads a new session, and its whole process
    group is killed on timeout and after it ends, so no rank outlives the test (issue 25 item 7: a killed
    launcher left a gloo rank running for 25 minutes). Raises subprocess.TimeoutExpired on timeout."""
    import subprocess

    with subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, **popen_kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        finally:
            kill_process_group(process.pid)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def kill_process_group(leader: int) -> None:
    """SIGKILL what is left of the process group led by ``leader`` (nothing when it is gone)."""
    import signal

    try:
        os.killpg(leader, signal.SIGKILL)
    except ProcessLookupError:
        pass


SUITE_MARKER = "INDEXTTS_TEST_SUITE_RUN"
"""Environment variable set once per test session; every process the suite starts inherits it."""

PYTHON_LIFETIME_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
"""Processes the standard library keeps until the interpreter exits (they end with the suite itself)."""


def processes_of_suite(marker: str) -> dict[int, str]:
    """{pid: command line} of live processes other than this one whose environment holds ``SUITE_MARKER=marker``,
    including orphans that a killed launcher left behind (read from /proc; only our own processes are readable)."""
    needle = f"{SUITE_MARKER}={marker}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours
            continue
        if state != "Z" and not any(helper in command for helper in PYTHON_LIFETIME_HELPERS):
            found[int(entry.name)] = command
    return found


# ----------------------------------------------------------------------------- voice build

VOICE_BUILD_SETTINGS = [
    "--language", "en", "--asr", "pocketsphinx", "--sim", "resemblyzer", "--device", "cpu",
    "--max_eval_per_speaker", "1", "--train", "train.max_steps=8", "--train", "train.save_every_steps=1",
    "--train", "train.keep_checkpoints=2", "--train", "data.num_workers=0", "--train", "data.min_duration=0.1",
    "--train", "train.deterministic=true"]
"""Offline and fast: PocketSphinx transcripts (English demo speech), resemblyzer SIM, 8 CPU steps."""


def voice_build_args(recordings: Path, base: Path, project: Path) -> list[str]:
    """``indextts voice`` arguments that build ``project`` from ``recordings`` on the tiny base."""
    return ["build", str(recordings), "--base", str(base), "--project", str(project), *VOICE_BUILD_SETTINGS]


def write_voice_recordings(root: Path) -> Path:
    """root/raw/<speaker>/long.wav for the two demo speakers: their English sentences joined with pauses."""
    from demo_data import SAMPLE_RATE, make_demo_dataset

    from indextts.prepare.demo_recording import build_long_recording

    for index, demo_list in enumerate(make_demo_dataset(root / "demo", sentences_per_speaker=8, seed=0)):
        english = demo_list_in(demo_list, root / f"{demo_list.stem}_en.lst")
        count = len(english.read_text(encoding="utf-8").splitlines())
        pauses = list(np.random.default_rng(index).uniform(0.6, 1.4, count - 1))
        build_long_recording(english, root / "raw" / demo_list.stem / "long.wav", pauses, SAMPLE_RATE)
    return root / "raw"


V2_MANIFEST_FILE = V2_CONFORMANCE / "state_dict_manifest.json"


def v2_manifest() -> dict:
    """The IndexTTS-2 / 2.5 state-dict manifest (conformance/indextts2); skips, or fails where required, when absent."""
    if not V2_MANIFEST_FILE.is_file():
        conformance_missing(f"{V2_MANIFEST_FILE.relative_to(REPO_ROOT)} not found")
    return json.loads(V2_MANIFEST_FILE.read_text())


def v2_golden_version(folder: Path) -> str:
    """"2" or "2.5": the family a v2 golden folder's config.yaml names."""
    return golden_family(folder).version
