"""IndexTTS-2's S2Mel stage: length regulator, DiT flow estimator, CFM sampling, and its mel features."""

from indextts.v2.s2mel.checkpoint import expected_shapes, load_s2mel, stored_state_dict
from indextts.v2.s2mel.dims import S2MelDims
from indextts.v2.s2mel.model import CFG_RATE, DIFFUSION_STEPS, S2Mel, frames_for_codes

__all__ = ["CFG_RATE", "DIFFUSION_STEPS", "S2Mel", "S2MelDims", "expected_shapes", "frames_for_codes",
           "load_s2mel", "stored_state_dict"]
