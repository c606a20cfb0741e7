"""Training inputs, checked before any weights load: the base folder, the speakers and every file
their manifests name.

``check_inputs`` reads ``speaker_info.json`` and each speaker's manifests, refuses data of another
model family than the base's, opens every codes, condition and (IndexTTS-2/2.5) emotion file header,
compares the base fingerprint the data was extracted with against the base being trained, checks
that every ``<...>`` special token of the transcripts is listed in ``train.special_tokens``, and
loads each speaker's medoid condition and reference: the medoid utterance's log-mel for IndexTTS 1.x,
its S2Mel prompt and the speaker's medoid emotion vector for IndexTTS-2/2.5. All problems are
collected and raised together as one TrainingError, so a user fixes them in one go.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.contracts.manifests import ManifestRow, read_manifest
from indextts.contracts.paths import resolve_path
from indextts.contracts.speaker_info import entry_family_name
from indextts.errors import IndexTTSError, TrainingError
from indextts.extraction.generations import extraction_family
from indextts.text import SPECIAL_TOKEN

if TYPE_CHECKING:
    from indextts.v2.prompt import SpeakerPrompt

logger = logging.getLogger(__name__)

MEDOID_INFO = "medoid_info.json"
MAX_LISTED = 20
"""File problems listed one by one in the error; the rest are counted."""


@dataclass
class SpeakerData:
    """One speaker's training inputs, checked and loaded."""

    name: str
    index: int
    medoid_condition: torch.Tensor  # (32, D) float32; IndexTTS-2.5: (1, D)
    reference_mel: torch.Tensor | None  # (n_mels, F) log-mel of the medoid utterance (the vocoder's speaker
    # reference); IndexTTS-2/2.5: the S2Mel prompt mel (80, F), ``prompt.mel``
    medoid_uid: str
    medoid_audio: Path
    train_rows: list[ManifestRow]
    valid_rows: list[ManifestRow]
    emotion: torch.Tensor | None = None  # IndexTTS-2/2.5: the speaker's medoid emotion vector (D,)
    emotion_file: Path | None = None  # where that vector is (``train.emotion=speaker`` feeds it to every row)
    prompt: SpeakerPrompt | None = None  # IndexTTS-2/2.5: the S2Mel prompt of the medoid utterance


@dataclass
class TrainingInputs:
    """The opened base folder, its tokenizer and the checked speakers, in speaker_info.json order."""

    base: CheckpointFolder
    tokenizer: object  # indextts.text.TextTokenizer of the base bpe.model; IndexTTS-2.5: v2.text25.Tokenizer25
    speakers: list[SpeakerData]


def check_inputs(model_dir: str, speaker_info: str, special_tokens: list[str],
                 run_speakers: list[str] | None = None) -> TrainingInputs:
    """Collect every problem with the base checkpoint and the extracted data; raise once.

    ``run_speakers`` (a resumed run's speakers, in index order) selects the speakers to check and train.
    """
    problems: list[str] = []
    base = _open_base(model_dir, problems)
    info_path = Path(speaker_info).expanduser().resolve()
    infos, entries = _read_speaker_info(info_path, problems)
    if run_speakers is not None:
        infos, entries = _select_run_speakers(infos, entries, run_speakers, info_path, problems)
    speakers: list[SpeakerData] = []
    tokenizer = None
    family_problems = check_family(entries, base, info_path) if base is not None else []
    problems += family_problems
    if base is not None and not family_problems:  # another family's data: that one problem says it all
        speakers = _check_speakers(infos, base, info_path, problems)
        if not problems:
            tokenizer = base.v2.tokenizer() if base.v2 is not None else base.tokenizer()
            problems += check_base_identity(entries, base, info_path)
            problems += check_special_tokens(speakers, entries, base, tokenizer, special_tokens)
        if not problems and base.v2 is not None:
            add_prompts(speakers, base, problems)
    if problems:
        raise TrainingError(f"Training cannot start ({len(problems)} problem(s)): " + " | ".join(problems))
    return TrainingInputs(base, tokenizer, speakers)


def _check_speakers(infos: list, base: CheckpointFolder, info_path: Path, problems: list[str]) -> list[SpeakerData]:
    """Each speaker's manifests, medoid condition (and emotion) and reference; every data file the rows name."""
    names = [info.speaker for info in infos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"speaker names occur twice in {info_path}: {duplicates}")
    speakers: list[SpeakerData] = []
    for info in infos:
        speaker = _check_speaker(info, base, len(speakers), problems)
        if speaker is not None:
            speakers.append(speaker)
    layout = extraction_family(base)
    problems += check_data_files([row for s in speakers for row in s.train_rows + s.valid_rows],
                                 layout.condition_shape(), layout.emotion_dim)
    return speakers


def _select_run_speakers(infos: list, entries: list[dict], run_speakers: list[str], info_path: Path,
                         problems: list[str]) -> tuple[list, list[dict]]:
    """The entries of a resumed run's speakers, in its order; a trained speaker that has gone is a problem."""
    listed = {info.speaker: (info, entry) for info, entry in zip(infos, entries)}
    gone = [name for name in run_speakers if name not in listed]
    if gone:
        problems.append(f"this run was trained on speaker(s) {gone}, which {info_path} no longer lists; restore "
                        "their data (re-run indextts-extract for them) or start a new run_dir=... without --resume")
    added = [name for name in listed if name not in run_speakers]
    if added:
        logger.info("Resuming with the run's %d speaker(s); ignoring %s, added to %s since (train them in a new "
                    "run)", len(run_speakers), added, info_path)
    kept = [listed[name] for name in run_speakers if name in listed]
    return [info for info, _ in kept], [entry for _, entry in kept]


def _open_base(model_dir: str, problems: list[str]) -> CheckpointFolder | None:
    try:
        base = CheckpointFolder(model_dir)
    except IndexTTSError as error:
        problems.append(f"base model config: {error}")
        return None
    missing = [str(p) for p in (base.paths.gpt, base.paths.bpe) if not p.is_file()]
    if missing:
        problems.append(f"base checkpoint file(s) missing: {missing} (model_dir={base.root}; download the "
                        f"{base.family} release into it or set model_dir=...)")
        return None
    return base


def check_family(entries: list[dict], base: CheckpointFolder, info_path: Path) -> list[str]:
    """One problem naming the speakers whose data comes from another model family than the base's
    (speaker_info.json entries of IndexTTS-2/2.5 name their ``family`` and ``code_kind``; 1.x ones neither)."""
    layout = extraction_family(base)
    others: dict[str, list[str]] = {}
    for entry in entries:
        if (entry.get("family"), entry.get("code_kind", "mel")) != (layout.family_version, layout.code_kind):
            others.setdefault(entry_family_name(entry), []).append(entry["speaker"])
    if not others:
        return []
    listed = "; ".join(f"{names} extracted with {family}" for family, names in others.items())
    return [f"{info_path} holds data of another model family than the base: speakers {listed}, but "
            f"model_dir={base.root} is {base.family}, which trains on its own {base.family.code_kind} and "
            f"conditions. Extract their audio with this base into another folder (indextts-extract --model_dir "
            f"{base.root} --output_dir <new folder>) and pass its speaker_info.json, or set model_dir to a base "
            "of their family"]


def _read_speaker_info(path: Path, problems: list[str]) -> tuple[list, list[dict]]:
    """The typed entries (extraction's reader) and the raw ones (for ``base`` and ``special_tokens``)."""
    from indextts.contracts.speaker_info import read_speaker_info

    try:
        infos = read_speaker_info(path)
    except IndexTTSError as error:
        problems.append(f"speaker_info: {error}")
        return [], []
    if not infos:
        problems.append(f"{path} lists no speakers (run indextts-extract for at least one)")
    return infos, json.loads(path.read_text(encoding="utf-8"))


def _check_speaker(info, base: CheckpointFolder, index: int, problems: list[str]) -> SpeakerData | None:
    """Read one speaker's manifests, medoid condition and reference; note problems instead of raising."""
    where = f"speaker '{info.speaker}'"
    try:
        train_rows = read_manifest(info.train_jsonl)
        valid_rows = read_manifest(info.valid_jsonl) if info.valid_jsonl and info.valid_jsonl.is_file() else []
    except IndexTTSError as error:
        problems.append(f"{where}: {error}")
        return None
    if not train_rows:
        problems.append(f"{where} has no rows in {info.train_jsonl}; re-run extraction for it or remove it "
                        "from speaker_info.json")
        return None
    layout = extraction_family(base)
    condition = _medoid_array(info.medoid_condition, layout.condition_shape(), where, "medoid condition", problems)
    emotion = None
    if layout.emotion_dim is not None:
        emotion = _medoid_array(info.medoid_emotion, (layout.emotion_dim,), where, "medoid emotion vector", problems)
    medoid = _medoid_reference(info, where, base, problems) if condition is not None else None
    if medoid is None or (layout.emotion_dim is not None and emotion is None):
        return None
    uid, audio, reference_mel = medoid
    return SpeakerData(info.speaker, index, condition, reference_mel, uid, audio, train_rows, valid_rows, emotion,
                       info.medoid_emotion)


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ")[0] or type(error).__name__


def _medoid_array(path: Path | None, shape: tuple[int, ...], where: str, what: str,
                  problems: list[str]) -> torch.Tensor | None:
    """The speaker's medoid condition or emotion vector at ``path``, float32, or None (a problem noted)."""
    if path is None or not path.is_file():
        problems.append(f"{where}: {what} {path} does not exist; re-run extraction (with conditions)")
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:  # truncated, not .npy, or pickled objects (never loaded)
        problems.append(f"{where}: {what} {path} cannot be read as a plain array "
                        f"({_first_sentence(error)}); re-run indextts-extract for this speaker")
        return None
    if array.shape != tuple(shape):
        problems.append(f"{where}: {path} has shape {array.shape} but the base GPT needs {tuple(shape)}; the data "
                        "was extracted with another IndexTTS release. Re-run indextts-extract with this model_dir")
        return None
    return torch.from_numpy(array.astype(np.float32))


def _medoid_reference(info, where: str, base: CheckpointFolder, problems: list[str]):
    """(uid, audio path, reference mel (n_mels, F)) of the speaker's medoid utterance, or None.

    IndexTTS-2/2.5's reference is the S2Mel prompt, encoded later by ``add_prompts`` (mel None here).
    """
    from indextts.audio import MelSpectrogramFeatures, load_audio

    medoid_info = info.medoid_condition.parent / MEDOID_INFO
    try:
        medoid = json.loads(medoid_info.read_text(encoding="utf-8"))
        audio = resolve_path(medoid["audio"], medoid_info.parent)
    except (OSError, ValueError, KeyError, TypeError) as error:
        problems.append(f"{where}: cannot read the medoid audio from {medoid_info} ({error}); re-run extraction")
        return None
    if not audio.is_file():
        problems.append(f"{where}: the medoid utterance audio {audio} (from {medoid_info}) is missing; it gives the "
                        "vocoder's speaker reference. Restore the file or re-run extraction")
        return None
    if base.v2 is not None:
        return str(medoid.get("uid", "")), audio, None
    try:
        mel = MelSpectrogramFeatures.from_config(base.cfg.dataset.mel)(load_audio(audio, base.sample_rate))[0]
    except IndexTTSError as error:
        problems.append(f"{where}: {error}")
        return None
    return str(medoid.get("uid", "")), audio, mel


def _file_problem(path: Path | None, shape: tuple[int, ...], what: str) -> str | None:
    if path is None:
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return f"{what} {path} is missing"
    except (OSError, ValueError) as error:
        return f"{what} {path} is unreadable ({str(error).splitlines()[0]})"
    if array.shape != shape:
        return f"{what} {path} holds shape {array.shape}, not {shape}"
    return None


def check_data_files(rows: list[ManifestRow], condition_shape: tuple[int, int],
                     emotion_dim: int | None = None) -> list[str]:
    """One problem line listing every missing, unreadable or mis-shaped codes/condition file of ``rows``
    and, when ``emotion_dim`` is set (IndexTTS-2/2.5), emotion vector file (D,), a row naming none included."""
    found = []
    for row in rows:
        files = [(row.codes, (row.num_codes,), "codes"), (row.condition, tuple(condition_shape), "condition")]
        if emotion_dim is not None:
            if row.emotion is None:
                found.append(f"the row names no emotion vector file ({row.source})")
            files.append((row.emotion, (emotion_dim,), "emotion vector"))
        for path, shape, what in files:
            problem = _file_problem(path, shape, what)
            if problem:
                found.append(f"{problem} ({row.source})")
    if not found:
        return []
    listed = "; ".join(found[:MAX_LISTED]) + (f"; and {len(found) - MAX_LISTED} more" if len(found) > MAX_LISTED
                                               else "")
    return [f"{len(found)} data file(s) named by the manifests cannot be used: {listed}. Re-run "
            "indextts-extract for those speakers (it redoes only what is missing)"]


def check_base_identity(entries: list[dict], base: CheckpointFolder, info_path: Path) -> list[str]:
    """Data extracted with another base (same shapes, other weights) is refused; old data only warned about."""
    recorded = {e["speaker"]: e["base"] for e in entries if isinstance(e.get("base"), dict)}
    unknown = [e["speaker"] for e in entries if not isinstance(e.get("base"), dict)]
    if unknown:
        logger.warning("speaker_info.json records no base fingerprint for %s (extracted by an older version); "
                       "cannot check that it was extracted with %s.", unknown, base.root)
    if not recorded:
        return []
    identity = base.identity()
    differ = sorted(name for name, fingerprint in recorded.items()
                    if {k: fingerprint.get(k) for k in identity} != identity)
    if not differ:
        return []
    theirs = recorded[differ[0]]
    return [f"speakers {differ} in {info_path} were extracted with another base model (gpt_sha256 "
            f"{theirs.get('gpt_sha256')}, bpe_sha256 {theirs.get('bpe_sha256')}) than the one in {base.root} "
            f"(gpt_sha256 {identity['gpt_sha256']}, bpe_sha256 {identity['bpe_sha256']}). Re-run "
            "indextts-extract with this model_dir, or set model_dir to the base used for extraction"]


def check_special_tokens(speakers: list[SpeakerData], entries: list[dict], base: CheckpointFolder, tokenizer,
                         listed: list[str]) -> list[str]:
    """Every ``<...>`` token of the transcripts that the base tokenizer lacks must be in ``train.special_tokens``.

    IndexTTS-2.5's tiktoken vocabulary cannot grow: ``train.special_tokens`` is refused there, and a
    ``<...>`` in its transcripts is read as plain text, as its extraction counted it.
    """
    if base.family.multilingual:
        return [] if not listed else [
            f"train.special_tokens={listed} cannot be used with {base.family} ({base.root}): its tiktoken vocabulary "
            "has a fixed set of special tokens, and added ones would be new rows the base never saw. Remove "
            "train.special_tokens (set train.special_tokens=[]); such tags in the transcripts are read as text"]
    known = set(tokenizer.special_tokens)
    found: dict[str, str] = {}
    for entry in entries:
        for token in entry.get("special_tokens") or ():
            found.setdefault(token, f"speaker_info.json ('{entry['speaker']}')")
    for row in (row for s in speakers for row in s.train_rows + s.valid_rows):
        for token in (*row.special_tokens, *SPECIAL_TOKEN.findall(row.text)):
            found.setdefault(token, row.source)
    unlisted = sorted(set(found) - known - set(listed))
    if not unlisted:
        return []
    where = ", ".join(f"{token} (first in {found[token]})" for token in unlisted)
    tokens = ",".join(sorted(set(listed) | set(unlisted)))
    return [f"the transcripts use special tokens the base tokenizer lacks and train.special_tokens does not "
            f"list: {where}. Add them, e.g. train.special_tokens=[{tokens}], or remove them from the transcripts"]


def add_prompts(speakers: list[SpeakerData], base: CheckpointFolder, problems: list[str]) -> None:
    """IndexTTS-2/2.5: each speaker's S2Mel prompt of its medoid utterance (the clip encoder loaded once),
    which is also its reference mel."""
    from indextts.v2.prompt import ClipEncoder

    encoder = ClipEncoder.from_models(base.v2)
    for speaker in speakers:
        try:
            speaker.prompt = encoder.encode(speaker.medoid_audio).prompt
        except IndexTTSError as error:
            problems.append(f"speaker '{speaker.name}': the medoid utterance {speaker.medoid_audio} cannot be "
                            f"encoded as the S2Mel prompt ({error})")
            continue
        speaker.reference_mel = speaker.prompt.mel
