"""Feature extraction for fine-tuning: audio lists -> DVAE codes, speaker conditions, JSONL manifests.

Modules: ``features`` (decoding, batching, models), ``outputs`` (crash-safe per-utterance files),
``speaker_stats`` (split, medoid), ``speaker_files`` (one speaker's manifests and info entry),
``pipeline`` (the run, single process or torchrun). What it reads and writes for the other stages
(the audio lists, the manifests, speaker_info.json) is defined in ``indextts.contracts``.
"""

from indextts.extraction.pipeline import ExtractionOptions, ExtractionSummary, run_extraction
from indextts.extraction.speaker_files import SpeakerSummary
from indextts.extraction.speaker_stats import find_medoid, split_train_valid

__all__ = [
    "ExtractionOptions", "ExtractionSummary", "SpeakerSummary", "find_medoid", "run_extraction", "split_train_valid",
]
