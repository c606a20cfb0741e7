"""Feature extraction for fine-tuning: audio lists -> DVAE codes, speaker conditions, JSONL manifests.

Modules: ``audio_list`` (parsing and skip reasons), ``features`` (decoding, batching, models),
``outputs`` (crash-safe files, speaker_info.json), ``speaker_stats`` (split, medoid),
``pipeline`` (the run, single process or torchrun).
"""

from indextts.extraction.audio_list import (
    SkippedLine, SkipReason, SpeakerList, Utterance, parse_audio_list, parse_audio_lists,
)
from indextts.extraction.outputs import SpeakerInfo, read_metadata, read_speaker_info
from indextts.extraction.pipeline import ExtractionOptions, ExtractionSummary, SpeakerSummary, run_extraction
from indextts.extraction.speaker_stats import find_medoid, split_train_valid

__all__ = [
    "ExtractionOptions", "ExtractionSummary", "SkipReason", "SkippedLine", "SpeakerInfo", "SpeakerList",
    "SpeakerSummary", "Utterance", "find_medoid", "parse_audio_list", "parse_audio_lists", "read_metadata",
    "read_speaker_info", "run_extraction", "split_train_valid",
]
