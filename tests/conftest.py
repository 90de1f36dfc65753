"""Test-wide JAX settings: CPU, fast compiles (the tests use tiny models)."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_disable_most_optimizations", True)
