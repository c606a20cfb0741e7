"""Loudness normalisation (ITU-R BS.1770 via pyloudnorm) with peak protection, and level checks.

Each clip gets the gain that brings its integrated loudness to the target, unless that gain would
push the sample peak above the ceiling: then the gain stops at the ceiling and the clip is flagged
``peak_limited`` (it stays quieter than the target rather than being distorted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indextts.errors import PrepareError
from indextts.prepare.slicing import frame_levels_db

CLIPPING_LEVEL = 0.999
"""Samples at or above this magnitude count as full scale."""
CLIPPING_RUN = 3
"""So many consecutive full-scale samples mean the recording clipped (a single one may be a peak)."""
SNR_FRAME_SECONDS = 0.02
MAX_SNR_DB = 100.0
"""Digital silence has no noise floor; its SNR estimate is capped here."""


@dataclass(frozen=True)
class LoudnessOptions:
    target_lufs: float = -23.0
    """EBU R128's programme loudness; leaves headroom below the peak ceiling for speech."""
    peak_dbfs: float = -1.0
    min_snr_db: float = 15.0


@dataclass(frozen=True)
class ClipLevels:
    """Levels of one clip: loudness after normalisation, SNR estimate, and what went wrong."""

    lufs: float
    snr_db: float
    peak_limited: bool
    clipping: bool
    low_snr: bool


def has_clipping(audio: np.ndarray) -> bool:
    """True when ``CLIPPING_RUN`` consecutive samples of (S,) sit at full scale."""
    at_full_scale = np.abs(audio) >= CLIPPING_LEVEL
    if at_full_scale.sum() < CLIPPING_RUN:
        return False
    window = np.convolve(at_full_scale.astype(np.int32), np.ones(CLIPPING_RUN, np.int32), mode="valid")
    return bool((window == CLIPPING_RUN).any())


def estimate_snr_db(audio: np.ndarray, sample_rate: int) -> float:
    """Crude SNR of a speech clip (S,): loudest half of 20 ms frames against the quietest tenth.

    A clip cut at pauses holds some near-silence, so its quietest frames show the noise floor.
    """
    levels = np.sort(frame_levels_db(audio, sample_rate, SNR_FRAME_SECONDS))
    if levels.size < 10:
        return MAX_SNR_DB
    power = 10.0 ** (levels / 10.0)
    speech = power[levels.size // 2:].mean()
    noise = power[: max(1, levels.size // 10)].mean()
    return float(min(MAX_SNR_DB, 10.0 * np.log10(speech / max(noise, 1e-12))))


def normalise_loudness(audio: np.ndarray, sample_rate: int, options: LoudnessOptions
                       ) -> tuple[np.ndarray, ClipLevels]:
    """Mono clip (S,) -> (clip at ``target_lufs`` or below the peak ceiling (S,), its levels)."""
    import pyloudnorm

    try:
        loudness = pyloudnorm.Meter(sample_rate).integrated_loudness(audio.astype(np.float64))
    except ValueError as error:
        raise PrepareError(f"Cannot measure the loudness of a {len(audio) / sample_rate:.2f} s clip: {error}. "
                           "Clips must be at least 0.4 s long.") from error
    gain_db = options.target_lufs - loudness if np.isfinite(loudness) else 0.0
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    ceiling_gain_db = options.peak_dbfs - 20.0 * np.log10(max(peak, 1e-12))
    peak_limited = gain_db > ceiling_gain_db
    gain_db = min(gain_db, ceiling_gain_db)
    normalised = (audio * 10.0 ** (gain_db / 20.0)).astype(np.float32)
    snr_db = estimate_snr_db(audio, sample_rate)
    return normalised, ClipLevels(
        lufs=float(loudness + gain_db) if np.isfinite(loudness) else float("-inf"),
        snr_db=snr_db,
        peak_limited=bool(peak_limited),
        clipping=has_clipping(audio),
        low_snr=snr_db < options.min_snr_db,
    )
