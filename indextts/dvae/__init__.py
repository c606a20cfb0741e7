"""Discrete VAE turning log-mel frames into the mel codes of the GPT."""

from indextts.dvae.model import DiscreteVAE

__all__ = ["DiscreteVAE"]
