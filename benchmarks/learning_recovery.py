"""Teacher-student recovery: evidence that LoRA fine-tuning learns a voice, measured through the public API.

A *teacher* is the base GPT plus a random LoRA (merged) and a random speaker condition per voice. Its
greedy codes for N + M texts are the "recordings", written with extraction's own writers: codes,
per-utterance conditions (the teacher's plus small noise; the medoid is one of them), manifests split
by extraction's seeded rule (the M valid rows are the held-out texts, never trained on) and
speaker_info.json. ``run_training`` trains a *student*; ``IndexTTS.from_run`` speaks each voice by name
and its greedy codes are compared position by position with the teacher's: on held-out and training
texts, for the base without the adapter (the chance level) and after ``export_merged``. The
teacher-forced held-out accuracy is the trainer's own validation ``mel_top1`` at the kept step.

The learning base is the random checkpoint made easier, each change for a reason given in
docs/training.md ("Learning test"): smooth mel positions (inference embeds the k-th code one position
later than training does, as the reference implementation does), a sharper mel head, smaller block
weights and a weak previous-code embedding, a rank-2 teacher, and (tiny) a smaller vocoder.
Used by tests/test_learning.py (tiny, CPU) and benchmarks/bench_learning.py (any size and device).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from indextts.inference.adapters import load_speakers
from indextts.inference.export import export_merged
from indextts.audio import MelSpectrogramFeatures
from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.checkpoints import build_model
from indextts.contracts.manifests import read_manifest
from indextts.dims import BigVGANDims
from indextts.contracts.speaker_info import read_speaker_info
from indextts.gpt.generation import GenerationConfig
from indextts.inference import IndexTTS, SpeechRequest, SynthesisOptions
from indextts.lora import TrainedSpeaker, add_lora, make_lora_config
from indextts.run_folder import SPEAKERS_FILE
from indextts.tiny import STOP_RAMP, STOP_RAMP_CODES, shape_random_gpt_init, synthetic_speechlike_audio, \
    write_tiny_checkpoints
from indextts.training import Trainer, load_train_config, run_training
from learning_recordings import TeacherVoice, write_extracted_data  # noqa: E402  (a sibling benchmark module)

logger = logging.getLogger(__name__)

MEL_POSITION_WIDTH = 24.0  # Gaussian smoothing width of the mel positions, in positions
MEL_HEAD_SHARPNESS = 3.0
BLOCK_WEIGHT_SCALE = 0.5  # halves the tiny init's block weights: a smoother, less chaotic function of the input
MEL_EMBEDDING_SCALE = 0.1  # weak feedback of the previous code: one wrong code does not derail the rest
TEACHER_RANK = 2  # lower than the default 16: a rank-16 random teacher is not recovered in CPU test time
TEACHER_LORA_STD = 0.3  # B @ A's scale (relative to 1/sqrt(fan_in)); still changes most greedy codes
SMALL_VOCODER = {"upsample_rates": [16, 16, 4], "upsample_kernel_sizes": [32, 32, 8], "upsample_initial_channel": 16,
                 "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1]]}
WORDS = ("the quick brown fox jumps over lazy dog hello world this is a tiny text to speech model for testing "
         "please leave your name and phone number after tone it beautiful day let us go walk in park learning "
         "new language takes time patience music helps people relax forget their worries she sells sea shells "
         "by shore we will meet at train station tomorrow morning eight how are you i am fine thank asking").split()


@dataclass(frozen=True)
class RecoveryConfig:
    """One recovery experiment: sizes of the data, the training length and where it runs."""

    size: str = "tiny"  # tiny | 1.5 (random weights of that size)
    device: str = "cpu"
    voices: int = 1
    texts_per_voice: int = 60  # training + held-out texts of each voice
    heldout_per_voice: int = 12  # the valid rows extraction's split holds out
    codes_per_text: int = 40  # every recording is exactly this long (generation length forced)
    epochs: int = 12
    seed: int = 0
    train_overrides: tuple[str, ...] = ()
    budget_s: float | None = None  # stop training when this much wall time of the whole run is spent


SHORT_TRAINING = ("data.max_batch_size=8", "train.grad_accum=1", "train.optimizer.lr=3e-3",
                  "train.speaker_conditions.lr=3e-3", "train.save_every_steps=0", "train.log_every_steps=50")
"""Overrides of the packaged config for a CPU-sized run: small batches, one per step, and learning rates that
move in ~150 steps what the defaults (tuned for hours of real data) move in thousands; the schedule (warm-up,
cosine), LoRA settings, LoRA+ ratio, weight decay, clipping and losses stay the packaged ones."""

PRESETS = {
    "tiny": RecoveryConfig(size="tiny", voices=2, epochs=12, train_overrides=SHORT_TRAINING),
    "1.5": RecoveryConfig(size="1.5", voices=2, epochs=12, train_overrides=SHORT_TRAINING),
}
"""The test's run (tiny) and the GPU check's (1.5): two voices trained in one run."""


def smooth_noise(length: int, dim: int, width: float, generator: torch.Generator) -> torch.Tensor:
    """(length, dim) Gaussian noise smoothed along the rows by a Gaussian of ``width`` rows, std 1."""
    reach = int(4 * width)
    noise = torch.randn(dim, 1, length + 2 * reach, generator=generator)
    offsets = torch.arange(-reach, reach + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets ** 2 / (2 * width ** 2))
    smoothed = torch.nn.functional.conv1d(noise, (kernel / kernel.sum())[None, None]).squeeze(1).T
    return smoothed / smoothed.std()


@torch.no_grad()
def reshape_base_gpt(gpt, generator: torch.Generator) -> None:
    """Smooth mel positions (the stop ramp kept), a sharper mel head, a weak code embedding, smaller blocks."""
    stop_direction = gpt.mel_head.weight[gpt.stop_mel_token].clone()
    stop_direction /= stop_direction.norm()
    length = gpt.mel_pos_embedding.length
    positions = smooth_noise(length, gpt.model_dim, MEL_POSITION_WIDTH, generator)
    positions -= (positions @ stop_direction)[:, None] * stop_direction  # the ramp alone decides where codes stop
    ramp = STOP_RAMP * (torch.arange(length, dtype=torch.float32) / STOP_RAMP_CODES)[:, None] * stop_direction
    gpt.mel_pos_embedding.emb.weight.copy_(positions + ramp)
    gpt.mel_head.weight.mul_(MEL_HEAD_SHARPNESS)
    gpt.mel_embedding.weight.mul_(MEL_EMBEDDING_SCALE)
    for weight in gpt.gpt.h.parameters():
        if weight.dim() == 2:
            weight.mul_(BLOCK_WEIGHT_SCALE)


def write_learning_base(out_dir: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random checkpoint folder of ``size`` reshaped for the recovery check (module docstring)."""
    write_tiny_checkpoints(out_dir, seed=seed, release=size)
    folder = CheckpointFolder(out_dir)
    generator = torch.Generator().manual_seed(seed + 1)
    gpt = folder.load_gpt("cpu")
    if size != "tiny":  # the release-size writer leaves the default init, whose generation is degenerate
        shape_random_gpt_init(gpt, generator)
    reshape_base_gpt(gpt, generator)
    torch.save({"model": gpt.state_dict()}, folder.paths.gpt)
    if size == "tiny":
        cfg = folder.cfg
        cfg.bigvgan.update(SMALL_VOCODER)
        torch.manual_seed(seed)
        torch.save({"generator": build_model(BigVGANDims.from_config(cfg)).stored_state_dict()}, folder.paths.bigvgan)
        OmegaConf.save(cfg, folder.config_file)
    return Path(out_dir)


@torch.no_grad()
def make_teacher_gpt(gpt, rank: int, alpha: float, seed: int):
    """The base ``gpt`` plus a random LoRA of ``rank`` on the default targets, merged (same class as ``gpt``)."""
    generator = torch.Generator().manual_seed(seed)
    model = add_lora(gpt, make_lora_config(rank, alpha, 0.0))
    for name, parameter in model.named_parameters():
        if "lora_A" in name:  # (r, in): unit-variance projections of the input
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[1] ** 0.5)
        elif "lora_B" in name:  # (out, r); scaled by alpha / r in the merge
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * TEACHER_LORA_STD / rank ** 0.5)
    return model.merge_and_unload().eval()


def make_texts(count: int, seed: int) -> list[str]:
    """``count`` distinct one-sentence English texts of 4-9 words from the tiny tokenizer's vocabulary."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    while len(texts) < count:
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 10)))).capitalize() + "."
        if text not in texts:
            texts.append(text)
    return texts


def greedy_options(codes_per_text: int) -> SynthesisOptions:
    """Greedy decoding of exactly ``codes_per_text`` codes, without silence trimming, all in one batch."""
    generation = GenerationConfig(do_sample=False, num_beams=1, repetition_penalty=1.0,
                                  min_new_tokens=codes_per_text, max_new_tokens=codes_per_text)
    return SynthesisOptions(generation=generation, silence_trimming="off", sentence_batch_size=64)


def speak(tts: IndexTTS, voice: str, texts: list[str], options: SynthesisOptions) -> list[np.ndarray]:
    """Greedy codes (N,) of each text in ``voice`` through ``IndexTTS.synthesize_many``."""
    results = tts.synthesize_many([SpeechRequest(text, voice, options) for text in texts])
    return [torch.cat(result.codes).numpy() for result in results]


def agreement(reference: list[np.ndarray], codes: list[np.ndarray]) -> float:
    """Share of reference code positions where ``codes`` holds the same code (missing positions miss)."""
    hits = sum(int((r[:len(c)] == c[:len(r)]).sum()) for r, c in zip(reference, codes))
    return hits / max(1, sum(max(len(r), len(c)) for r, c in zip(reference, codes)))


class BudgetedTrainer(Trainer):
    """The trainer, stopped like early stopping once ``deadline`` (``time.perf_counter()``) has passed."""

    def __init__(self, cfg, deadline: float):
        super().__init__(cfg)
        self.deadline = deadline

    def _after_step(self, epoch_done: bool) -> None:
        super()._after_step(epoch_done)
        if time.perf_counter() > self.deadline and not self.stopped_early:
            logger.info("Time budget spent at step %d: training stops (the best validated model is kept).", self.step)
            self.stopped_early = True


def _train_within(cfg, deadline: float) -> bool:
    """``run_training`` with a deadline; True when the budget stopped it."""
    trainer = BudgetedTrainer(cfg, deadline)
    try:
        trainer.setup()
        trainer.train()
    finally:
        trainer.close()
    return trainer.stopped_early


def train_student(model_dir: Path, speaker_info: Path, run_dir: Path, config: RecoveryConfig,
                  deadline: float | None = None) -> dict:
    """``run_training`` with the packaged config (+ ``config.train_overrides``); the run's figures."""
    overrides = [f"model_dir={model_dir}", f"speaker_info={speaker_info}", f"run_dir={run_dir}",
                 f"train.epochs={config.epochs}", f"train.device={config.device}", f"train.seed={config.seed}",
                 "data.num_workers=0", *config.train_overrides]
    cfg = load_train_config(overrides=overrides)
    stopped = False
    if deadline is None:
        run_training(cfg)
    else:
        stopped = _train_within(cfg, deadline)
    return {"stopped_by_budget": stopped, **_run_figures(run_dir)}


def _run_figures(run_dir: Path) -> dict:
    """The kept model's validation (None when the budget stopped training before one) and tokens/s."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    valid = [r for r in records if r["kind"] == "valid"]
    best = min(valid, key=lambda r: r["mel_loss"]) if valid else {}
    speeds = [r["tokens_per_s"] for r in records if r["kind"] == "train"]
    return {"steps": max((r["step"] for r in records), default=0), "best_step": best.get("step"),
            "valid_mel_loss": best.get("mel_loss"), "teacher_forced_heldout": best.get("mel_top1"),
            "train_tokens_per_s": float(np.median(speeds)) if speeds else None}


def record_teacher(base: CheckpointFolder, teacher_gpt, voices: list[TeacherVoice], options: SynthesisOptions,
                   device: str) -> None:
    """Fill each voice's ``codes`` with the teacher's greedy codes of its texts, through the public API."""
    tts = IndexTTS(base.cfg, teacher_gpt, base.load_bigvgan(), base.tokenizer(), base=base, device=device)
    audio = synthetic_speechlike_audio(3.0, torch.Generator().manual_seed(0))
    reference_mel = MelSpectrogramFeatures.from_config(base.cfg.dataset.mel)(audio)[0]  # vocoder only
    tts.add_speakers("teacher", {v.name: TrainedSpeaker(v.condition, reference_mel) for v in voices})
    for voice in voices:
        voice.codes = speak(tts, f"teacher:{voice.name}", voice.texts, options)


@dataclass
class Split:
    """One voice's rows of one manifest: texts, the teacher's codes, and the medoid condition (32, D)."""

    texts: list[str]
    codes: list[np.ndarray]
    medoid: torch.Tensor


def read_splits(speaker_info: Path, limit: int) -> dict[str, dict[str, Split]]:
    """{voice: {"heldout": valid rows, "train": first ``limit`` training rows}}, read back from the manifests."""
    splits = {}
    for info in read_speaker_info(speaker_info):
        medoid = torch.from_numpy(np.load(info.medoid_condition))
        splits[info.speaker] = {}
        for name, manifest in (("heldout", info.valid_jsonl), ("train", info.train_jsonl)):
            rows = read_manifest(manifest)[:limit]
            splits[info.speaker][name] = Split([r.text for r in rows], [np.load(r.codes) for r in rows], medoid)
    return splits


def _voice_figures(name: str, splits: dict[str, dict[str, Split]], student: dict, base: list, exported: list) -> dict:
    """Agreements of one voice with its teacher (and, on the same held-out texts, with the other teachers)."""
    heldout, train = splits[name]["heldout"], splits[name]["train"]
    others = {other: agreement(parts["heldout"].codes, student["heldout"])
              for other, parts in splits.items() if other != name and parts["heldout"].texts == heldout.texts}
    return {"student_heldout": agreement(heldout.codes, student["heldout"]),
            "student_train": agreement(train.codes, student["train"]),
            "base_heldout": agreement(heldout.codes, base),
            "export_heldout": agreement(heldout.codes, exported),
            "export_equals_adapter": all(np.array_equal(a, b) for a, b in zip(student["heldout"], exported)),
            "other_teachers_heldout": others}


def measure(run_dir: Path, base_dir: Path, export_dir: Path, splits: dict[str, dict[str, Split]],
            options: SynthesisOptions, device: str) -> dict[str, dict]:
    """Per voice: the student (``from_run``, by speaker name), the base with the medoid condition, the export."""
    tts = IndexTTS.from_run(run_dir, device=device)
    student = {name: {split: speak(tts, name, part.texts, options) for split, part in parts.items()}
               for name, parts in splits.items()}
    trained = load_speakers(run_dir / SPEAKERS_FILE)
    tts.add_speakers("base", {name: replace(trained[name], condition=parts["heldout"].medoid)
                              for name, parts in splits.items()})
    base = {name: speak(tts, f"base:{name}", parts["heldout"].texts, options) for name, parts in splits.items()}
    del tts
    export_merged(run_dir, base_dir, export_dir)
    exported_tts = IndexTTS.from_pretrained(export_dir, device=device)
    exported = {name: speak(exported_tts, name, parts["heldout"].texts, options) for name, parts in splits.items()}
    figures = {name: _voice_figures(name, splits, student[name], base[name], exported[name]) for name in splits}
    for name, parts in splits.items():  # how far training moved the condition from its medoid start
        medoid = parts["heldout"].medoid
        figures[name]["condition_shift"] = float((trained[name].condition - medoid).norm() / medoid.norm())
    return figures


def summarize(voices: dict[str, dict]) -> dict:
    """Means over the voices of the per-voice agreements; the export check over all of them."""
    keys = ("student_heldout", "student_train", "base_heldout", "export_heldout")
    summary = {key: float(np.mean([figures[key] for figures in voices.values()])) for key in keys}
    summary["export_equals_adapter"] = all(figures["export_equals_adapter"] for figures in voices.values())
    return summary


def recovery_report(config: RecoveryConfig, voices: dict[str, dict], training: dict,
                    times: tuple[float, float, float]) -> dict:
    """The report of one run: its sizes, the summary, per voice figures, training figures and wall times.

    ``times`` are the ``time.perf_counter()`` values at the start, after recording and after training.
    """
    started, recorded, trained = times
    return {"size": config.size, "device": config.device, "voices": config.voices,
            "texts_per_voice": config.texts_per_voice, "heldout_per_voice": config.heldout_per_voice,
            "codes_per_text": config.codes_per_text, "epochs": config.epochs, **summarize(voices),
            "per_voice": voices, "training": training, "train_wall_s": round(trained - recorded, 2),
            "wall_s": round(time.perf_counter() - started, 2)}


def make_voices(config: RecoveryConfig, model_dim: int) -> list[TeacherVoice]:
    """``config.voices`` teacher voices with random conditions (std 1), all reading the same texts."""
    generator = torch.Generator().manual_seed(config.seed + 2)
    texts = make_texts(config.texts_per_voice, config.seed)
    return [TeacherVoice(f"voice_{chr(ord('a') + index)}", torch.randn(32, model_dim, generator=generator), texts)
            for index in range(config.voices)]


def training_deadline(config: RecoveryConfig, started: float, recorded: float) -> float | None:
    """When training must stop to keep ``config.budget_s``: time to measure is about twice the recording's."""
    if config.budget_s is None:
        return None
    return started + config.budget_s - max(0.25 * config.budget_s, 2 * (recorded - started))


def run_recovery(config: RecoveryConfig, work: Path) -> dict:
    """The whole check in ``work``: base, teacher, recordings, training, measurement; returns the report."""
    started = time.perf_counter()
    base_dir = write_learning_base(work / "base", config.size, config.seed)
    base = CheckpointFolder(base_dir)
    teacher = make_teacher_gpt(base.load_gpt("cpu"), TEACHER_RANK, 2.0 * TEACHER_RANK, config.seed + 3)  # default alpha / r
    voices, options = make_voices(config, int(base.cfg.gpt.model_dim)), greedy_options(config.codes_per_text)
    record_teacher(base, teacher, voices, options, config.device)
    recorded = time.perf_counter()
    seconds_per_code = base.cfg.gpt.mel_length_compression / base.sample_rate
    info = write_extracted_data(work / "data", work / "audio", base, voices, config.heldout_per_voice, config.seed,
                                seconds_per_code)
    training = train_student(base_dir, info, work / "run", config, training_deadline(config, started, recorded))
    trained = time.perf_counter()
    splits = read_splits(info, config.heldout_per_voice)
    voices_report = measure(work / "run", base_dir, work / "export", splits, options, config.device)
    return recovery_report(config, voices_report, training, (started, recorded, trained))
