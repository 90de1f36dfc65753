"""Parameter counts, FLOP counts and the `experiments.summary` command."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp

from edmdbn_jax import profiling
from edmdbn_jax.configs import edmdbn as edmdbn_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lowered_flops_counts_a_matmul_without_compiling():
  f = jax.jit(lambda a, b: a @ b)
  lowered = f.lower(jax.ShapeDtypeStruct((8, 16), jnp.float32),
                    jax.ShapeDtypeStruct((16, 4), jnp.float32))
  assert profiling.lowered_flops(lowered) == 2 * 8 * 16 * 4


def test_forward_cost_scales_with_the_batch():
  cfg = edmdbn_config.get_config("tiny")
  one = profiling.forward_cost(cfg, 1)
  two = profiling.forward_cost(cfg, 2)
  assert one["macs"] == one["flops"] / 2 == one["macs_per_clip"]
  # Per clip the same, within what does not scale with the batch (the
  # relative-position bias gathers and masks are computed once).
  assert abs(two["macs_per_clip"] / one["macs_per_clip"] - 1) < 0.01
  assert 0.03e9 < one["macs_per_clip"] < 0.05e9  # 0.037 G for tiny


def test_summary_command_reports_counts_and_cost():
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  r = subprocess.run(
      [sys.executable, "-m", "experiments.summary",
       "--config=edmdbn_jax/configs/edmdbn.py:tiny", "--repeats=2"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "total:    1,059,051" in r.stdout
  assert "Forward multiply-adds per clip (XLA cost analysis): 0.04 G" in r.stdout
  assert "Forward latency at batch 1 on 1 x cpu" in r.stdout
