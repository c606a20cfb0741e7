"""BigVGAN vocoder with the ECAPA-TDNN speaker encoder (IndexTTS 1.0 / 1.5)."""

from indextts.bigvgan.models import BigVGAN, fold_weight_norm, unfold_weight_norm

__all__ = ["BigVGAN", "fold_weight_norm", "unfold_weight_norm"]
