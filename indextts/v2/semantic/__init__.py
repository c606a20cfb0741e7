"""IndexTTS-2 / 2.5 semantic front: w2v-BERT 2.0 features and the MaskGCT semantic codec."""

from indextts.v2.semantic.codec import SemanticCodec, SemanticCodecDims
from indextts.v2.semantic.files import load_semantic_codec, load_w2v_stats
from indextts.v2.semantic.w2v_bert import W2VBertDims, W2VBertFront, save_tiny_w2v_bert

__all__ = ["SemanticCodec", "SemanticCodecDims", "W2VBertDims", "W2VBertFront", "load_semantic_codec",
           "load_w2v_stats", "save_tiny_w2v_bert"]
