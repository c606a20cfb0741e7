"""The options that ``indextts-infer`` and ``indextts-serve`` share, defined once.

The synthesis flags are made from the fields of ``GenerationConfig`` and ``SynthesisOptions`` that
carry option metadata (``indextts.gpt.generation.option``: help and type, beside the default) and
are read back into those dataclasses, so both commands, and the web UI's Listen tab, offer the same
options with the same defaults and help. The runtime flags (device, precisions, vocoder, CPU
quantization) are the keyword arguments of ``IndexTTS.from_pretrained``.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, fields

from indextts.bigvgan.activations import ACTIVATION_MODES
from indextts.errors import IndexTTSError
from indextts.gpt.generation import GenerationConfig
from indextts.gpt.quantize import MODES as QUANTIZATION_MODES
from indextts.inference.synthesis import SILENCE_TRIMMING, SynthesisOptions
from indextts.runtime import PRECISIONS

FLAG_NAMES = {"max_new_tokens": "max_mel_tokens", "pause_seconds": "pause"}
"""Fields whose flag keeps the name users know from the reference (``--max_mel_tokens``) or is shorter."""
CHOICES = {"silence_trimming": SILENCE_TRIMMING}


def option_fields(config: type) -> list[Field]:
    """The fields of a dataclass that are user-facing options (they carry help metadata)."""
    return [field for field in fields(config) if "help" in field.metadata]


def _add_field(group, field: Field) -> None:
    default = field.default if field.default is not MISSING else field.default_factory()
    name = FLAG_NAMES.get(field.name, field.name)
    common = {"dest": field.name, "default": default, "help": field.metadata["help"]}
    if isinstance(default, bool):
        group.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, **common)
    elif field.name in CHOICES:
        group.add_argument(f"--{name}", choices=CHOICES[field.name], **common)
    else:
        kind = field.metadata["type"] or type(default)
        group.add_argument(f"--{name}", type=_argument_type(kind), metavar=name.upper(), **common)


def _argument_type(kind):
    """``kind`` for argparse: our own parsers' IndexTTSError becomes argparse's usage error (exit 2, no traceback)."""
    def parse(text: str):
        try:
            return kind(text)
        except IndexTTSError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in its "invalid ..." message
    return parse


def add_synthesis_options(parser: argparse.ArgumentParser) -> None:
    """The "generation" and "sentences and audio" flag groups."""
    generation = parser.add_argument_group("generation")
    for field in option_fields(GenerationConfig):
        _add_field(generation, field)
    generation.add_argument("--no_cuda_graph", dest="cuda_graph", action="store_false", default=argparse.SUPPRESS,
                            help="run the decode step eagerly on CUDA instead of replaying a captured CUDA graph")
    sentences = parser.add_argument_group("sentences and audio")
    for field in option_fields(SynthesisOptions):
        _add_field(sentences, field)


def synthesis_options_from_args(args: argparse.Namespace) -> SynthesisOptions:
    """The ``SynthesisOptions`` the flags of ``add_synthesis_options`` describe (others keep their defaults)."""
    chosen = {f.name: getattr(args, f.name) for f in option_fields(GenerationConfig)}
    generation = GenerationConfig(**chosen, cuda_graph=getattr(args, "cuda_graph", True))
    return SynthesisOptions(generation=generation, **{f.name: getattr(args, f.name) for f in option_fields(SynthesisOptions)})


def add_runtime_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The "runtime" group: device, GPT and vocoder precision, vocoder activations, CPU quantization."""
    runtime = parser.add_argument_group("runtime")
    runtime.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    runtime.add_argument("--precision", choices=PRECISIONS, default="auto",
                         help="GPT precision; auto: fp16 on CUDA (as the reference), fp32 on the CPU")
    runtime.add_argument("--vocoder_precision", choices=PRECISIONS, default="fp32",
                         help="BigVGAN precision; half keeps its output layer in fp32; auto: fp32")
    runtime.add_argument("--vocoder_mode", choices=("auto", *ACTIVATION_MODES), default="auto",
                         help="BigVGAN activations: exact (equal to the reference bit for bit) or fused "
                              "(compiled, faster on the CPU, ~140 dB SNR); auto: fused on the CPU, exact on CUDA")
    runtime.add_argument("--cpu_quantization", choices=QUANTIZATION_MODES,
                         help="opt-in, CPU only: int8 or bf16 GPT weights for code generation (faster, codes "
                              "close to but not always equal to fp32)")
    return runtime


def runtime_kwargs(args: argparse.Namespace) -> dict:
    """The ``IndexTTS.from_pretrained`` keyword arguments of the runtime flags."""
    return {"device": args.device, "precision": args.precision, "vocoder_precision": args.vocoder_precision,
            "vocoder_mode": args.vocoder_mode, "cpu_quantization": args.cpu_quantization}
