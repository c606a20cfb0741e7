"""Discrete VAE that turns log-mel frames into the mel codes the GPT predicts.

Module and buffer names follow the release ``dvae.pth`` exactly so it loads with ``strict=True``.
Only the encoder and the nearest-codebook lookup are needed for codes; the decoder is kept so the
checkpoint loads strictly and codes can be turned back into mels for debugging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from indextts.dims import DVAEDims
from indextts.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


def _length_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) lengths -> (B, 1, max_length) boolean mask, True on valid frames."""
    positions = torch.arange(max_length, device=lengths.device)
    return (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1)


class Codebook(nn.Module):
    """Vector-quantiser codebook (EMA-trained in the reference); here only the nearest lookup."""

    def __init__(self, dim: int, num_tokens: int):
        super().__init__()
        self.dim = dim
        self.num_tokens = num_tokens
        self.register_buffer("embed", torch.randn(dim, num_tokens))
        self.register_buffer("cluster_size", torch.zeros(num_tokens))
        self.register_buffer("embed_avg", self.embed.clone())

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (...) index of the closest codebook entry (squared Euclidean).

        Distances are computed in float32 even under autocast, so half precision cannot flip codes.
        """
        flat = vectors.reshape(-1, self.dim).float()
        embed = self.embed.float()
        with torch.autocast(device_type=flat.device.type, enabled=False):
            distance = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed
                        + embed.pow(2).sum(0, keepdim=True))
        return distance.neg().argmax(dim=1).view(vectors.shape[:-1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T) codes -> (B, T, dim) codebook vectors."""
        return F.embedding(codes, self.embed.t())


class DiscretizationLossState(nn.Module):
    """Running code-usage statistics stored in the release checkpoint (used only in DVAE training)."""

    def __init__(self, num_tokens: int, averaging_steps: int):
        super().__init__()
        self.register_buffer("accumulator_index", torch.zeros(1, dtype=torch.long))
        self.register_buffer("accumulator_filled", torch.zeros(1, dtype=torch.long))
        self.register_buffer("accumulator", torch.zeros(averaging_steps, num_tokens))


class ResBlock(nn.Module):
    """conv3 -> act -> conv3 -> act -> conv1, plus the input."""

    def __init__(self, channels: int, activation: type[nn.Module]):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(channels, channels, 3, padding=1), activation(),
            nn.Conv1d(channels, channels, 3, padding=1), activation(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T) -> (B, C, T); ``mask`` (B, 1, T) zeroes padding after every conv."""
        h = x
        for layer in self.net:
            h = layer(h)
            if mask is not None and isinstance(layer, nn.ReLU | nn.SiLU):
                h = h * mask
        out = h + x
        return out if mask is None else out * mask


class UpsampledConv(nn.Module):
    """Nearest-neighbour upsampling followed by a convolution (decoder without transposed convs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.stride, mode="nearest"))


def _check_supported(positional_dims: int, encoder_norm: bool, normalization, activation: str,
                     num_layers: int) -> None:
    """Refuse, all at once, the vqvae options this implementation does not build (the releases use none)."""
    unsupported = []
    if positional_dims != 1:
        unsupported.append(f"positional_dims={positional_dims} (only 1 is supported)")
    if encoder_norm:
        unsupported.append("encoder_norm=true")
    if normalization is not None:
        unsupported.append("normalization (must be null)")
    if activation not in ACTIVATIONS:
        unsupported.append(f"activation={activation!r} (relu or silu)")
    if num_layers < 1:
        unsupported.append(f"num_layers={num_layers} (at least 1)")
    if unsupported:
        raise ConfigError(f"Unsupported vqvae settings in the model config: {', '.join(unsupported)}. "
                          "The IndexTTS release configs use the defaults; restore them.")


class DiscreteVAE(nn.Module):
    """1-D discrete VAE over mel frames: ``num_layers`` stride-``stride`` convs down to codes.

    Built from its dims: ``DiscreteVAE(DVAEDims.from_config(cfg))`` (the config's ``vqvae`` section).
    """

    def __init__(self, dims: DVAEDims):
        super().__init__()
        _check_supported(dims.positional_dims, dims.encoder_norm, dims.normalization, dims.activation,
                         dims.num_layers)
        act = ACTIVATIONS[dims.activation]
        self.num_tokens = dims.num_tokens
        self.kernel_size = dims.kernel_size
        self.stride = dims.stride
        self.padding = (dims.kernel_size - 1) // 2
        self.num_layers = dims.num_layers
        self.discrete_loss = DiscretizationLossState(dims.num_tokens, dims.discretization_loss_averaging_steps)
        encoder_channels = [dims.channels] + [dims.hidden_dim * 2**i for i in range(dims.num_layers)]
        self.encoder = self._build_encoder(encoder_channels, dims.num_resnet_blocks, dims.codebook_dim, act)
        self.decoder = self._build_decoder(encoder_channels, dims.num_resnet_blocks, dims.codebook_dim, act,
                                           dims.use_transposed_convs)
        self.codebook = Codebook(dims.codebook_dim, dims.num_tokens)

    def _build_encoder(self, encoder_channels: list[int], num_resnet_blocks: int, codebook_dim: int,
                       act) -> nn.Sequential:
        """Strided convs down to the innermost width, resnet blocks, then a 1x1 conv to the codebook width."""
        innermost = encoder_channels[-1]
        encoder: list[nn.Module] = [
            nn.Sequential(nn.Conv1d(c_in, c_out, self.kernel_size, stride=self.stride, padding=self.padding), act())
            for c_in, c_out in zip(encoder_channels[:-1], encoder_channels[1:])
        ]
        encoder += [ResBlock(innermost, act) for _ in range(num_resnet_blocks)]
        encoder.append(nn.Conv1d(innermost, codebook_dim, 1))
        return nn.Sequential(*encoder)

    def _build_decoder(self, encoder_channels: list[int], num_resnet_blocks: int, codebook_dim: int, act,
                       use_transposed_convs: bool) -> nn.Sequential:
        """The encoder mirrored: 1x1 conv and resnet blocks, then upsampling convs back to the mel channels."""
        innermost = encoder_channels[-1]
        decoder_channels = [innermost if num_resnet_blocks > 0 else codebook_dim]
        decoder_channels += list(reversed(encoder_channels[1:]))
        decoder: list[nn.Module] = []
        if num_resnet_blocks > 0:
            decoder.append(nn.Conv1d(codebook_dim, innermost, 1))
            decoder += [ResBlock(innermost, act) for _ in range(num_resnet_blocks)]
        for c_in, c_out in zip(decoder_channels[:-1], decoder_channels[1:]):
            upsample = nn.ConvTranspose1d if use_transposed_convs else UpsampledConv
            decoder.append(nn.Sequential(
                upsample(c_in, c_out, self.kernel_size, stride=self.stride, padding=self.padding), act()))
        decoder.append(nn.Conv1d(decoder_channels[-1], encoder_channels[0], 1))
        return nn.Sequential(*decoder)

    def code_lengths(self, mel_lengths: torch.Tensor) -> torch.Tensor:
        """Number of codes for mels of ``mel_lengths`` frames: ceil(F / 4) for the release model."""
        lengths = mel_lengths
        for _ in range(self.num_layers):
            lengths = (lengths + 2 * self.padding - self.kernel_size) // self.stride + 1
        return lengths

    def encode(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mel (B, C, F) -> encoder output (B, codebook_dim, T).

        With ``mel_lengths``, every position past a row's length is zeroed after each layer, so each
        row equals the result of encoding it alone (convolutions see zero padding at its end).
        """
        if mel_lengths is None:
            return self.encoder(mel)
        lengths = mel_lengths.to(mel.device)
        x = mel * _length_mask(lengths, mel.shape[-1])
        for layer in self.encoder:
            if isinstance(layer, nn.Sequential):
                x = layer(x)
                lengths = (lengths + 2 * self.padding - self.kernel_size) // self.stride + 1
                x = x * _length_mask(lengths, x.shape[-1])
            elif isinstance(layer, ResBlock):
                x = layer(x, _length_mask(lengths, x.shape[-1]))
            else:
                x = layer(x)
        return x

    @torch.no_grad()
    def get_codebook_indices(self, mel: torch.Tensor, mel_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mel (B, C, F) -> codes (B, ceil(F / 4)) int64.

        For a padded batch pass ``mel_lengths`` (B,): row ``b`` then equals the codes of its
        unpadded mel on its first ``code_lengths(mel_lengths)[b]`` positions; later positions
        hold codes of the padding and must be ignored.
        """
        latents = self.encode(mel, mel_lengths)
        return self.codebook.nearest(latents.transpose(1, 2))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, T) -> reconstructed mel (B, C, T * stride**num_layers), for inspection."""
        return self.decoder(self.codebook.lookup(codes).transpose(1, 2))
