"""Feature extraction for fine-tuning: audio lists -> DVAE codes, speaker conditions, JSONL manifests.

Modules: ``audio_list`` (parsing, uids and skip reasons), ``features`` (decoding, batching, models),
``outputs`` (crash-safe files, speaker_info.json), ``speaker_stats`` (split, medoid),
``speaker_files`` (one speaker's manifests and info entry), ``pipeline`` (the run, single process
or torchrun). Manifests are read back with ``indextts.data.read_manifest``.
"""

from indextts.extraction.audio_list import (
    SkippedLine, SkipReason, SpeakerList, Utterance, parse_audio_list, parse_audio_lists,
)
from indextts.extraction.outputs import SpeakerInfo, read_speaker_info
from indextts.extraction.pipeline import ExtractionOptions, ExtractionSummary, run_extraction
from indextts.extraction.speaker_files import SpeakerSummary
from indextts.extraction.speaker_stats import find_medoid, split_train_valid

__all__ = [
    "ExtractionOptions", "ExtractionSummary", "SkipReason", "SkippedLine", "SpeakerInfo", "SpeakerList",
    "SpeakerSummary", "Utterance", "find_medoid", "parse_audio_list", "parse_audio_lists",
    "read_speaker_info", "run_extraction", "split_train_valid",
]
