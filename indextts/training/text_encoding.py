"""Manifest rows -> text token ids (and IndexTTS-2.5's language id), exactly as extraction counted them.

IndexTTS 1.x and IndexTTS-2 encode the transcript with the (possibly grown) SentencePiece tokenizer,
whose normaliser is the family's. IndexTTS-2.5 encodes ``<|lang|> `` + the transcript prepared for
its language (``indextts.v2.text25``), the language being the manifest's (as extraction detected it)
or, for rows that lack it, detected again from the script; its id feeds the language embedding.
"""

from __future__ import annotations

from typing import Sequence

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.contracts.manifests import ManifestRow
from indextts.training.data import RowEncoder


class Text25RowEncoder:
    """IndexTTS-2.5: row -> (ids of ``<|lang|> `` + prepared text, language id); empty ids when nothing is left."""

    def __init__(self, tokenizer, model_dir):
        from indextts.v2.text import TextNormalizerV2

        self.tokenizer = tokenizer
        self.normalizer = TextNormalizerV2.for_model_dir(model_dir)

    def __call__(self, row: ManifestRow) -> tuple[Sequence[int], int]:
        from indextts.v2.text25 import detect_language, encode_prepared, language_id, prepare_text

        language = row.language or detect_language(row.text)
        prepared = prepare_text(row.text, language, self.normalizer)
        ids = encode_prepared(self.tokenizer, prepared, language) if prepared.strip() else []
        return ids, language_id(language)


class BpeRowEncoder:
    """IndexTTS 1.x / IndexTTS-2: row -> (SentencePiece ids of the normalised transcript, language 0)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, row: ManifestRow) -> tuple[Sequence[int], int]:
        return self.tokenizer.encode(row.text), 0


def row_encoder(base: CheckpointFolder, tokenizer) -> RowEncoder:
    """The encoder of ``base``'s family over ``tokenizer`` (the base's, or the run's grown one)."""
    if base.family.multilingual:
        return Text25RowEncoder(tokenizer, base.root)
    return BpeRowEncoder(tokenizer)
