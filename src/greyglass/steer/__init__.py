"""Steering: vectors from contrast pairs, probes or SAE latents; applying them; measuring their effect."""

from .apply import Comparison, compare, side_by_side, steering
from .effect import CAA_BEHAVIORS, EffectConfig, caa_items, matching_probability, steering_effect
from .vectors import ContrastPair, ab_prompt, caa_pairs, contrast_vector, sae_latent_direction

__all__ = [
    "CAA_BEHAVIORS",
    "Comparison",
    "ContrastPair",
    "EffectConfig",
    "ab_prompt",
    "caa_items",
    "caa_pairs",
    "compare",
    "contrast_vector",
    "matching_probability",
    "sae_latent_direction",
    "side_by_side",
    "steering",
    "steering_effect",
]
