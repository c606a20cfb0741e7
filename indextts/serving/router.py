"""Several base models behind one synthesiser: each voice speaks on the base its run was trained on.

A server may hold one base per model family (an IndexTTS-1.5 base and an IndexTTS-2 base, say),
each an :class:`~indextts.inference.IndexTTS` with its own runs. :class:`VoiceRouter` offers the
inference API the worker calls (``voices``, ``synthesize_many``, ``stream``) over all of them: a
request goes to the base that holds its voice, and ``synthesize_many`` sends each base its own
requests in one call, so batching within a base is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from indextts.errors import ConfigError, VoiceNotFoundError
from indextts.families import Family
from indextts.inference.voices import VOICE_SEPARATOR


@dataclass(frozen=True)
class ServedVoice:
    """A voice of the server: ``id`` "run:speaker", the ``name`` to pass (the speaker alone when unique
    among all bases), and the ``family`` of its base (None when the synthesiser does not say)."""

    id: str
    run: str
    speaker: str
    name: str
    family: Family | None


def family_of_base(synthesizer) -> Family | None:
    """The model family of one base synthesiser (an IndexTTS has ``family``; test doubles may not)."""
    return getattr(synthesizer, "family", None)


class VoiceRouter:
    """The voices of several bases (each with the IndexTTS inference API) as one synthesiser.

    Voice ids must be unique over all bases (ConfigError otherwise). With one base every request
    goes to it untouched, so its own messages (zero-shot, unknown voice) reach the client.
    """

    def __init__(self, bases: Sequence):
        if not bases:
            raise ConfigError("The server needs at least one base model folder (--model_dir).")
        self.bases = list(bases)
        owners: dict[str, int] = {}
        for number, base in enumerate(self.bases):
            for voice in base.voices:
                if voice.id in owners:
                    raise ConfigError(f"The voice '{voice.id}' is offered by two base folders. Give one of the "
                                      f"runs another name (--adapter NAME=RUN_DIR).")
                owners[voice.id] = number
        self._owners = owners

    @property
    def voices(self) -> list[ServedVoice]:
        """Every voice of every base, by id; ``name`` is the speaker alone where that is unique."""
        pairs = sorted(((voice, base) for base in self.bases for voice in base.voices), key=lambda p: p[0].id)
        counts: dict[str, int] = {}
        for voice, _ in pairs:
            counts[voice.speaker] = counts.get(voice.speaker, 0) + 1
        return [ServedVoice(voice.id, voice.run, voice.speaker,
                            voice.speaker if counts[voice.speaker] == 1 else voice.id, family_of_base(base))
                for voice, base in pairs]

    def _base_number(self, voice: str | None) -> int:
        """The base that speaks ``voice``; VoiceNotFoundError (listing every voice) when none or several fit."""
        if len(self.bases) == 1:
            return 0
        if voice in self._owners:
            return self._owners[voice]
        matches = tuple(served.id for served in self.voices if served.speaker == voice)
        if len(matches) == 1:
            return self._owners[matches[0]]
        names = ", ".join(served.name for served in self.voices)
        if matches:
            raise VoiceNotFoundError(f"Voice '{voice}' is ambiguous: {', '.join(matches)}. Name it as "
                                     f"run{VOICE_SEPARATOR}speaker.", voice, matches)
        raise VoiceNotFoundError(f"Unknown voice '{voice}'. The loaded voices are: {names}.", voice)

    def family_of(self, voice: str | None) -> Family | None:
        """The family of the base that speaks ``voice``: None when one base does not know it (its synthesis
        answers), VoiceNotFoundError when several bases do not."""
        if len(self.bases) == 1 and all(voice not in (v.id, v.speaker) for v in self.bases[0].voices):
            return None
        return family_of_base(self.bases[self._base_number(voice)])

    def synthesize_many(self, requests: list, return_exceptions: bool = False) -> list:
        """Each base's requests in one ``synthesize_many`` call; results in request order."""
        results: list = [None] * len(requests)
        by_base: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            try:
                by_base.setdefault(self._base_number(request.voice), []).append(index)
            except VoiceNotFoundError as error:
                if not return_exceptions:
                    raise
                results[index] = error
        for number, indices in by_base.items():
            answers = self.bases[number].synthesize_many([requests[i] for i in indices],
                                                         return_exceptions=return_exceptions)
            for index, answer in zip(indices, answers):
                results[index] = answer
        return results

    def stream(self, text: str, voice: str | None = None, options=None) -> Iterator:
        """The chunks of ``text`` from the base that speaks ``voice``."""
        return self.bases[self._base_number(voice)].stream(text, voice=voice, options=options)
