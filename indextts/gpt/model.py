"""UnifiedVoice: the IndexTTS GPT that maps (speaker conditioning, text) to DVAE mel codes.

One decoder-only GPT-2 stack reads the sequence

    [32 conditioning latents | start_text, text..., stop_text | start_mel, codes..., stop_mel]

Text and mel segments have their own token embeddings and their own learned position embeddings
(each segment counts positions from 0); GPT-2's own embeddings are removed. ``final_norm`` then
``text_head``/``mel_head`` give the logits; the normalised mel states are the "latents" BigVGAN voices.

In padded batches each row's tokens are packed to the front under plain causal attention (SDPA), so
every row computes exactly what it would compute alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2Model

from indextts.dims import ConditionDims, GPTDims
from indextts.errors import ConfigError, DataError, TextError
from indextts.gpt.conformer import ConformerEncoder, length_mask
from indextts.gpt.perceiver import PerceiverResampler

MEL_CHANNELS = 100
IGNORE_INDEX = -100
"""Target value that cross-entropy skips (padding)."""
MAX_CONDITIONING_INPUTS = 1
"""Mel positions reserved for conditioning inputs, as in the release models (not a config key)."""


@dataclass
class TrainOutput:
    """Losses and logits of one training forward pass (see ``UnifiedVoice.forward_train``).

    text_logits (B, V_text, L+1) and mel_logits (B, V_mel, N+1) are defined where the matching
    target mask is True; targets hold ``IGNORE_INDEX`` elsewhere.
    """

    text_loss: torch.Tensor
    mel_loss: torch.Tensor
    text_logits: torch.Tensor
    mel_logits: torch.Tensor
    mel_targets: torch.Tensor
    mel_target_mask: torch.Tensor
    text_targets: torch.Tensor
    text_target_mask: torch.Tensor


class NullPositionEmbedding(nn.Module):
    """Stands in for GPT-2's ``wpe``: adds nothing, because positions are added per segment.

    Returns a 0-dim zero so that ``inputs_embeds + wpe(position_ids)`` keeps the inputs' dtype.
    """

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), device=position_ids.device)


class LearnedPositionEmbeddings(nn.Module):
    """Learned absolute positions of one segment (module name ``emb`` as in the checkpoints)."""

    def __init__(self, length: int, dim: int, init_std: float = 0.02):
        super().__init__()
        self.emb = nn.Embedding(length, dim)
        nn.init.normal_(self.emb.weight, mean=0.0, std=init_std)

    @property
    def length(self) -> int:
        return self.emb.num_embeddings

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """positions (B, T) -> (B, T, D)."""
        return self.emb(positions)


# transformers' "gelu_new" evaluates the tanh approximation with separate tensor ops; PyTorch's
# fused kernel computes the same function (within 3e-7) several times faster on CPU.
FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}


def build_gpt2(layers: int, dim: int, heads: int, max_positions: int, activation_function: str) -> GPT2Model:
    """A GPT-2 stack fed with ``inputs_embeds`` only: ``wte`` removed, ``wpe`` adds zero."""
    activation_function = FUSED_ACTIVATIONS.get(activation_function, activation_function)
    config = GPT2Config(
        vocab_size=1,
        n_positions=max_positions,
        n_embd=dim,
        n_layer=layers,
        n_head=heads,
        activation_function=activation_function,
        bos_token_id=None,
        eos_token_id=None,
        attn_implementation="sdpa",
    )
    gpt = GPT2Model(config)
    gpt.wte = None
    gpt.wpe = NullPositionEmbedding()
    return gpt


def _check_supported(condition_type: str, use_mel_codes_as_input: bool, train_solo_embeddings: bool) -> None:
    """Refuse, all at once, GPT options of architectures other than the IndexTTS 1.0/1.5 releases."""
    unsupported = {
        "condition_type": (condition_type, "conformer_perceiver"),
        "use_mel_codes_as_input": (use_mel_codes_as_input, True),
        "train_solo_embeddings": (train_solo_embeddings, False),
    }
    problems = [f"gpt.{key}={value!r} (expected {want!r})" for key, (value, want) in unsupported.items() if value != want]
    if problems:
        raise ConfigError(
            f"Unsupported GPT config values: {', '.join(problems)}. Only the IndexTTS 1.0/1.5 "
            "architecture is implemented; use indextts/configs/indextts-1.5.yaml as a template."
        )


def build_conformer_perceiver(input_size: int, latent_dim: int, condition: ConditionDims,
                              num_latents: int) -> tuple[ConformerEncoder, PerceiverResampler]:
    """Conformer over (B, T, input_size) frames, then a perceiver resampling them to (B, num_latents, latent_dim)."""
    encoder = ConformerEncoder(
        input_size=input_size,
        output_size=condition.output_size,
        linear_units=condition.linear_units,
        attention_heads=condition.attention_heads,
        num_blocks=condition.num_blocks,
        input_layer=condition.input_layer,
    )
    perceiver = PerceiverResampler(
        latent_dim,
        dim_context=condition.output_size,
        num_latents=num_latents,
        heads=condition.attention_heads,
        ff_mult=condition.perceiver_mult,
    )
    return encoder, perceiver


class UnifiedVoice(nn.Module):
    """The IndexTTS GPT, built from its dims: ``UnifiedVoice(GPTDims.from_config(cfg))``.

    Only the configuration of the IndexTTS 1.0/1.5 releases is supported: mel codes as input,
    a conformer + perceiver conditioning encoder, no solo embeddings.
    """

    def __init__(self, dims: GPTDims):
        super().__init__()
        _check_supported(dims.condition_type, dims.use_mel_codes_as_input, dims.train_solo_embeddings)
        self.model_dim, self.condition_num_latent = dims.model_dim, dims.condition_num_latent
        self.number_text_tokens, self.number_mel_codes = dims.number_text_tokens, dims.number_mel_codes
        self.start_text_token, self.stop_text_token = dims.start_text_token, dims.stop_text_token
        self.start_mel_token, self.stop_mel_token = dims.start_mel_token, dims.stop_mel_token
        self.max_text_tokens, self.max_mel_tokens = dims.max_text_tokens, dims.max_mel_tokens
        self.mel_length_compression = dims.mel_length_compression
        self._build_conditioning(dims)
        self._build_stack(dims.model_dim, dims.layers, dims.heads, dims.number_text_tokens * dims.types + 1,
                          dims.number_mel_codes, dims.max_mel_tokens + 2 + MAX_CONDITIONING_INPUTS,
                          dims.max_text_tokens + 2, dims.activation_function)
        self.set_gradient_checkpointing(dims.checkpointing)

    def _build_conditioning(self, dims: GPTDims) -> None:
        """The speaker conditioning modules (a subclass of another model family builds its own)."""
        self.conditioning_encoder, self.perceiver_encoder = build_conformer_perceiver(
            MEL_CHANNELS, dims.model_dim, dims.condition_module, dims.condition_num_latent)

    def _build_stack(self, model_dim: int, layers: int, heads: int, text_vocab: int, mel_vocab: int,
                     max_mel_positions: int, max_text_positions: int, activation_function: str) -> None:
        """Token and position embeddings, the GPT-2 blocks, the final norm and the two heads."""
        self.text_embedding = nn.Embedding(text_vocab, model_dim)
        self.mel_embedding = nn.Embedding(mel_vocab, model_dim)
        for embedding in (self.text_embedding, self.mel_embedding):
            nn.init.normal_(embedding.weight, mean=0.0, std=0.02)
        self.gpt = build_gpt2(layers, model_dim, heads, max_mel_positions + max_text_positions, activation_function)
        self.mel_pos_embedding = LearnedPositionEmbeddings(max_mel_positions, model_dim)
        self.text_pos_embedding = LearnedPositionEmbeddings(max_text_positions, model_dim)
        self.final_norm = nn.LayerNorm(model_dim)
        self.text_head = nn.Linear(model_dim, text_vocab)
        self.mel_head = nn.Linear(model_dim, mel_vocab)

    @property
    def gradient_checkpointing(self) -> bool:
        """Whether GPT-2 block activations are recomputed in the backward pass."""
        legacy = not hasattr(self.gpt, "is_activation_checkpointing")  # transformers < 5.20 (GPU image: 5.17)
        return self.gpt.is_gradient_checkpointing if legacy else self.gpt.is_activation_checkpointing

    @property
    def text_vocab_size(self) -> int:
        """Rows of the text embedding and text head."""
        return self.text_embedding.num_embeddings

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute GPT-2 block activations in the backward pass (less memory, ~30% slower)."""
        kind = "activation" if hasattr(self.gpt, "activation_checkpointing_enable") else "gradient"  # < 5.20
        if enabled:
            options = {f"{kind}_checkpointing_kwargs": {"use_reentrant": False}}
            getattr(self.gpt, f"{kind}_checkpointing_enable")(**options)
        else:
            getattr(self.gpt, f"{kind}_checkpointing_disable")()

    @torch.no_grad()
    def resize_text_vocab(self, new_size: int) -> None:
        """Grow the text embedding and head to ``new_size`` rows (e.g. for added special tokens).

        Existing rows are kept; new rows start at the mean of the existing ones, so new tokens begin
        as an "average" token instead of noise. ``new_size`` counts rows, like ``text_vocab_size``.
        Call it before wrapping the model for LoRA; ``requires_grad`` flags are carried over.
        """
        old_size = self.text_vocab_size
        if new_size < old_size:
            raise ValueError(f"cannot shrink the text vocabulary from {old_size} to {new_size} rows")
        if new_size == old_size:
            return
        old_embedding, old_head = self.text_embedding, self.text_head
        weight = old_embedding.weight
        embedding = nn.Embedding(new_size, self.model_dim, device=weight.device, dtype=weight.dtype)
        embedding.weight[:old_size] = weight
        embedding.weight[old_size:] = weight.mean(dim=0)
        head = nn.Linear(self.model_dim, new_size, device=weight.device, dtype=old_head.weight.dtype)
        head.weight[:old_size] = old_head.weight
        head.weight[old_size:] = old_head.weight.mean(dim=0)
        head.bias[:old_size] = old_head.bias
        head.bias[old_size:] = old_head.bias.mean()
        embedding.weight.requires_grad_(weight.requires_grad)
        head.weight.requires_grad_(old_head.weight.requires_grad)
        head.bias.requires_grad_(old_head.bias.requires_grad)
        self.text_embedding, self.text_head = embedding, head
        self.number_text_tokens = new_size - 1

    def get_conditioning(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Speaker conditioning latents.

        mel (B, 100, F) log-mel, zero-padded; mel_lengths (B,) valid frames (None: all F) -> (B, 32, D).

        Every row equals its unbatched result (see ``ConvolutionModule`` for the reference's padding leak).
        """
        features, mask = self.conditioning_encoder(mel.transpose(1, 2), mel_lengths)
        return self.perceiver_encoder(features, mask)

    def _check_text_length(self, length: int) -> None:
        if length + 2 > self.text_pos_embedding.length:
            raise TextError(
                f"The text has {length} tokens but the model accepts at most {self.max_text_tokens} per "
                "sentence. Split the text into shorter sentences."
            )

    def _check_mel_length(self, length: int, position_offset: int = 0) -> None:
        """Refuse more codes than mel positions (codes sitting ``position_offset`` further, see ``_forward_sequence``)."""
        if length + position_offset + 2 > self.mel_pos_embedding.length:
            raise DataError(
                f"A clip has {length} mel codes but the GPT accepts at most {self.max_mel_tokens} "
                f"(gpt.max_mel_tokens, about {self.max_mel_tokens * self.mel_length_compression // 24000} s "
                "of audio). Leave longer clips out of the dataset or cut them."
            )

    def text_inputs(self, text_ids: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        """Embedded text segment [start, text..., stop, padding] with positions 0, 1, ...

        text_ids (B, L) padded (any padding value), text_lengths (B,) -> (B, L+2, D); padding rows are 0.
        """
        ids, valid = self._text_segment(text_ids, text_lengths)
        positions = torch.arange(ids.shape[1], device=ids.device)
        embeds = self.text_embedding(ids) + self.text_pos_embedding(positions.unsqueeze(0))
        return embeds * valid.unsqueeze(-1).to(embeds.dtype)

    def _text_segment(self, text_ids: torch.Tensor, text_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L), (B,) -> ids (B, L+2) = [start, text..., stop, stop...], valid mask (B, L+2)."""
        batch, length = text_ids.shape
        self._check_text_length(length)
        lengths = text_lengths.to(text_ids.device)
        text = text_ids.masked_fill(~length_mask(lengths, length), self.stop_text_token)
        start = torch.full((batch, 1), self.start_text_token, dtype=text.dtype, device=text.device)
        stop = torch.full((batch, 1), self.stop_text_token, dtype=text.dtype, device=text.device)
        return torch.cat([start, text, stop], dim=1), length_mask(lengths + 2, length + 2)

    def mel_inputs(self, codes: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Embedded mel codes at given segment positions: codes (B, T), positions (B, T) -> (B, T, D)."""
        return self.mel_embedding(codes) + self.mel_pos_embedding(positions)

    def mel_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """GPT output states (B, T, D) -> mel code logits (B, T, V_mel)."""
        return self.mel_head(self.final_norm(hidden))

    def _forward_sequence(
        self,
        conditioning: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        codes: torch.Tensor,
        code_lengths: torch.Tensor,
        code_position_offset: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run [cond | start_text, text, stop_text | start_mel, codes] through GPT-2 + final_norm.

        ``text`` (B, L+2, D) is the embedded text segment (``text_inputs``). ``start_mel`` sits at mel
        position 0 and code k (k = 1..N) at k + ``code_position_offset``. Returns the normalised
        states of the text segment (B, L+2, D) and of the mel segment (B, N+1, D); the mel row j
        predicts code j (row N predicts stop_mel). The stop_mel input is left out: nothing after it
        is predicted and attention is causal, so it changes nothing.
        """
        batch, num_codes = codes.shape
        self._check_mel_length(num_codes, code_position_offset)
        code_lengths = code_lengths.to(codes.device)
        text_valid = length_mask(text_lengths.to(text.device) + 2, text.shape[1])
        mel_valid = length_mask(code_lengths + 1, num_codes + 1)
        start = torch.full((batch, 1), self.start_mel_token, dtype=codes.dtype, device=codes.device)
        mel_ids = torch.cat([start, codes], dim=1).masked_fill(~mel_valid, self.stop_mel_token)
        positions = torch.arange(num_codes + 1, device=codes.device).unsqueeze(0)
        positions = positions + code_position_offset * (positions > 0)
        mel = self.mel_inputs(mel_ids, positions)
        embeds = torch.cat([conditioning.to(text.dtype), text, mel.to(text.dtype)], dim=1)
        cond_valid = torch.ones(conditioning.shape[:2], dtype=torch.bool, device=text.device)
        valid = torch.cat([cond_valid, text_valid, mel_valid.to(text.device)], dim=1)
        hidden = self._causal_gpt(embeds, valid)
        hidden = self.final_norm(hidden[:, conditioning.shape[1]:])
        return hidden[:, : text.shape[1]], hidden[:, text.shape[1]:]

    def _causal_gpt(self, embeds: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """GPT-2 over (B, T, D) segments with padding inside (valid (B, T)); (B, T, D) states, padding undefined.

        Each row's valid tokens are moved to the front, in order, so plain causal attention (no mask: SDPA's
        flash kernel where the GPU has it) computes what the masked segmented sequence computes; GPT-2 has no
        position embedding of its own, so only the order matters. The states are then moved back.
        """
        length = valid.shape[1]
        slots = torch.arange(length, device=valid.device)
        packed_slot = torch.where(valid, valid.long().cumsum(dim=1) - 1, length + slots)  # padding after tokens
        order = packed_slot.argsort(dim=1)  # (B, T): segmented position read at each packed position
        restore = order.argsort(dim=1)
        dim = embeds.shape[-1]
        packed = embeds.gather(1, order[..., None].expand(-1, -1, dim))
        hidden = self.gpt(inputs_embeds=packed, use_cache=False).last_hidden_state
        return hidden.gather(1, restore[..., None].expand(-1, -1, dim))

    def forward_latents(
        self,
        conditioning: torch.Tensor,
        text_ids: torch.Tensor,
        text_lengths: torch.Tensor,
        codes: torch.Tensor,
        code_lengths: torch.Tensor,
    ) -> torch.Tensor:
        """GPT latents for BigVGAN.

        conditioning (B, 32, D), text_ids (B, L), text_lengths (B,), codes (B, N), code_lengths (B,)
        -> (B, N, D); row j is the state that predicts code j. Rows >= code_lengths are undefined.
        """
        text = self.text_inputs(text_ids, text_lengths)
        _, mel_hidden = self._forward_sequence(conditioning, text, text_lengths, codes, code_lengths)
        return mel_hidden[:, : codes.shape[1]]

    def forward_train(
        self,
        conditioning: torch.Tensor,
        text_ids: torch.Tensor,
        text_lengths: torch.Tensor,
        codes: torch.Tensor,
        code_lengths: torch.Tensor,
    ) -> TrainOutput:
        """Teacher-forced text and mel cross-entropy on a padded batch.

        Text targets: text..., stop_text (from start_text, text...); mel targets: codes..., stop_mel. Each loss
        is the mean over the batch's valid targets, on (B*T, V) rows: no nll_loss2d (no deterministic CUDA kernel).
        """
        text = self.text_inputs(text_ids, text_lengths)
        return self._train_output(conditioning, text, text_ids, text_lengths, codes, code_lengths)

    def _train_output(self, conditioning: torch.Tensor, text: torch.Tensor, text_ids: torch.Tensor,
                      text_lengths: torch.Tensor, codes: torch.Tensor, code_lengths: torch.Tensor,
                      code_position_offset: int = 0) -> TrainOutput:
        """``forward_train`` for an embedded text segment ``text`` (B, L+2, D); positions as ``_forward_sequence``."""
        text_hidden, mel_hidden = self._forward_sequence(conditioning, text, text_lengths, codes, code_lengths,
                                                         code_position_offset)
        text_targets, text_mask = self._targets(text_ids, text_lengths, self.stop_text_token)
        mel_targets, mel_mask = self._targets(codes, code_lengths, self.stop_mel_token)
        text_scores = self.text_head(text_hidden[:, : text_ids.shape[1] + 1])  # (B, L+1, V)
        mel_scores = self.mel_head(mel_hidden)  # (B, N+1, V)
        return TrainOutput(
            text_loss=F.cross_entropy(text_scores.flatten(0, 1).float(), text_targets.flatten(), ignore_index=IGNORE_INDEX),
            mel_loss=F.cross_entropy(mel_scores.flatten(0, 1).float(), mel_targets.flatten(), ignore_index=IGNORE_INDEX),
            text_logits=text_scores.transpose(1, 2),  # (B, V, L+1)
            mel_logits=mel_scores.transpose(1, 2),  # (B, V, N+1)
            mel_targets=mel_targets,
            mel_target_mask=mel_mask,
            text_targets=text_targets,
            text_target_mask=text_mask,
        )

    @staticmethod
    def _targets(ids: torch.Tensor, lengths: torch.Tensor, stop_token: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T), (B,) -> targets (B, T+1) = [ids..., stop, ignored...], valid mask (B, T+1)."""
        lengths = lengths.to(ids.device)
        padded = F.pad(ids, (0, 1))
        positions = torch.arange(padded.shape[1], device=ids.device).unsqueeze(0)
        targets = torch.where(positions == lengths.unsqueeze(1), stop_token, padded)
        valid = positions <= lengths.unsqueeze(1)
        return targets.masked_fill(~valid, IGNORE_INDEX).long(), valid
