"""EDMDBN and its Video Swin building blocks (Flax Linen)."""

from edmdbn_jax.models.edmdbn import abstract_variables
from edmdbn_jax.models.edmdbn import EDMDBN
from edmdbn_jax.models.edmdbn import from_config
from edmdbn_jax.models.edmdbn import input_specs

__all__ = ["EDMDBN", "abstract_variables", "from_config", "input_specs"]
