"""Many voices on one base: voice ids, the runs that provide them, and switching adapters in place.

A *voice* is a trained speaker of a run, named ``run:speaker`` or just ``speaker`` where that name
is unique among the loaded runs. Every run shares the one base GPT in memory: a run costs only its
LoRA factors (a :class:`~indextts.inference.adapters.WeightPatch`) and its speakers. Before a batch of
sentences runs, :class:`PatchedWeights` puts that run's patch on the base weights in place; the
base values it overwrites are kept, so switching back restores them bit for bit (no accumulated
rounding, no reload). ``benchmarks/bench_voices.py`` measures this against unmerged per-row LoRA
(see docs/inference.md for why merging in place was picked).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from indextts.inference.adapters import WeightPatch
from indextts.errors import InferenceError, VoiceNotFoundError
from indextts.lora import TrainedSpeaker

logger = logging.getLogger(__name__)

VOICE_SEPARATOR = ":"


@dataclass(frozen=True)
class VoiceInfo:
    """A loaded voice: ``id`` = "run:speaker"; ``name`` is what to pass (the speaker alone when unique)."""

    id: str
    run: str
    speaker: str
    name: str = ""


@dataclass
class Voice:
    """What a speaker contributes: GPT conditioning latents (32, D) and the vocoder's reference mel (F, 100).

    ``speaker_embedding`` is BigVGAN's embedding (1, E, 1) of ``reference_mel``; ``run`` names the
    run whose adapter must be on the base while this voice speaks (None: the plain base).
    """

    condition: torch.Tensor
    reference_mel: torch.Tensor
    speaker_embedding: torch.Tensor | None = None
    run: str | None = None


@dataclass
class VoiceSource:
    """One loaded run (or exported folder): its speakers, its tokenizer and its patch (None: nothing to apply)."""

    name: str
    root: Path
    speakers: dict[str, TrainedSpeaker]
    tokenizer: object
    patch: WeightPatch | None = None


@dataclass
class VoiceLibrary:
    """The runs loaded on one base and the voices they provide."""

    sources: dict[str, VoiceSource] = field(default_factory=dict)

    def check_name(self, name: str, root: Path) -> None:
        """Refuse a run name that is empty, holds the separator, or is taken."""
        if VOICE_SEPARATOR in name or not name:
            raise InferenceError(f"Run name '{name}' must be non-empty and contain no '{VOICE_SEPARATOR}'. "
                                 f"Choose another name for {root}.")
        if name in self.sources:
            raise InferenceError(f"A run named '{name}' is already loaded ({self.sources[name].root}). "
                                 "Give the new one another name.")

    def add(self, source: VoiceSource) -> None:
        self.check_name(source.name, source.root)
        self.sources[source.name] = source

    @property
    def voices(self) -> list[VoiceInfo]:
        """Every loaded voice, by run then speaker."""
        counts: dict[str, int] = {}
        for source in self.sources.values():
            for speaker in source.speakers:
                counts[speaker] = counts.get(speaker, 0) + 1
        return [VoiceInfo(f"{run}{VOICE_SEPARATOR}{speaker}", run, speaker,
                          speaker if counts[speaker] == 1 else f"{run}{VOICE_SEPARATOR}{speaker}")
                for run, source in sorted(self.sources.items()) for speaker in sorted(source.speakers)]

    def names(self) -> str:
        return ", ".join(info.name for info in self.voices)

    def resolve(self, voice: str | None, has_reference: bool) -> tuple[VoiceSource, str] | None:
        """The run and speaker of ``voice``; None means zero-shot from the reference audio.

        Without ``voice`` and without a reference, the only loaded voice is used.
        """
        voices = self.voices
        if voice is None:
            if has_reference:
                return None
            if len(voices) == 1:
                return self.sources[voices[0].run], voices[0].speaker
            if voices:
                raise InferenceError(f"Choose a speaker: {len(voices)} voices are loaded ({self.names()}). "
                                     "Pass --speaker NAME (voice=...), or --reference_audio for zero-shot.")
            raise InferenceError("No voice given. Pass --reference_audio WAV for zero-shot synthesis, or "
                                 "--adapter runs/<name> --speaker NAME for a fine-tuned voice.")
        matches = [info for info in voices if voice in (info.id, info.speaker)]
        if len(matches) == 1:
            return self.sources[matches[0].run], matches[0].speaker
        if not voices:
            raise VoiceNotFoundError(f"Voice '{voice}' needs a fine-tuned run: pass --adapter runs/<name> (the "
                                     "training output folder), or use --reference_audio alone for zero-shot "
                                     "synthesis.", voice)
        if matches:
            ids = tuple(m.id for m in matches)
            raise VoiceNotFoundError(f"Voice '{voice}' is ambiguous: {', '.join(ids)}. Name it as run:speaker.",
                                     voice, ids)
        raise VoiceNotFoundError(f"Unknown voice '{voice}'. The loaded voices are: {self.names()}. Pass one of "
                                 "them with --speaker (voice=...).", voice)


class PatchedWeights:
    """Puts one run's :class:`WeightPatch` at a time on a model's parameters, in place and reversibly.

    The first time a parameter is patched its base value is copied (same device and dtype); taking
    a patch off copies the base values back, so the base is restored exactly. ``switches`` counts
    patch changes (tests and benchmarks read it).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.active: str | None = None
        self.switches = 0
        self._originals: dict[str, torch.Tensor] = {}
        self._touched: set[str] = set()

    @property
    def kept_bytes(self) -> int:
        """Memory held by the kept base values (paid once, shared by every run)."""
        return sum(t.numel() * t.element_size() for t in self._originals.values())

    @torch.no_grad()
    def activate(self, name: str | None, patch: WeightPatch | None) -> None:
        """Make the model the base plus ``patch`` (the plain base when ``patch`` is None)."""
        if name == self.active:
            return
        parameters = dict(self.model.named_parameters())
        wanted = patch.parameter_names if patch is not None else set()
        for key in self._touched - wanted:
            parameters[key].copy_(self._originals[key])
        for key in sorted(wanted):
            if key not in self._originals:
                self._originals[key] = parameters[key].detach().clone()
            patch.write_into(key, self._originals[key], parameters[key])
        self._touched = set(wanted)
        self.active = name
        self.switches += 1

    @torch.no_grad()
    def restore(self) -> None:
        """Put the kept base values back on every patched parameter."""
        parameters = dict(self.model.named_parameters())
        for key in self._touched:
            parameters[key].copy_(self._originals[key])
        self._touched.clear()
        self.active = None

    def forget_originals(self) -> None:
        """Drop the kept copies after the model changed (moved, cast or resized): they must be taken again."""
        self.restore()
        self._originals.clear()
