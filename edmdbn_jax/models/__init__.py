"""EDMDBN and its Video Swin building blocks (Flax Linen)."""

from edmdbn_jax.models.edmdbn import EDMDBN, from_config

__all__ = ["EDMDBN", "from_config"]
