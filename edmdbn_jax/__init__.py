"""edmdbn-jax: EDMDBN for micro-expression recognition in JAX/Flax."""

__version__ = "0.1.0"
