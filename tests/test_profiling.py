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


def test_lowered_flops_is_none_where_the_backend_has_no_analysis():
  """The GPU's PJRT plugin raises NotImplementedError for a lowered
  program's cost analysis (and jax returns None from some stages)."""

  class NoAnalysis:
    def cost_analysis(self):
      raise NotImplementedError("Lowered.cost_analysis not implemented")

  class Empty:
    def cost_analysis(self):
      return None

  assert profiling.lowered_flops(NoAnalysis()) is None
  assert profiling.lowered_flops(Empty()) is None


def test_jaxpr_matmul_flops_counts_every_scanned_step():
  f = jax.jit(lambda x, y: jax.lax.scan(
      lambda c, _: (jnp.tanh(c @ y), None), x, None, length=3)[0])
  traced = f.trace(jnp.zeros((8, 8)), jnp.zeros((8, 8)))
  assert profiling.jaxpr_matmul_flops(traced) == 2 * 3 * 8 * 8 * 8


def test_forward_cost_scales_with_the_batch():
  cfg = edmdbn_config.get_config("tiny")
  one = profiling.forward_cost(cfg, 1)
  two = profiling.forward_cost(cfg, 2)
  assert one["macs"] == one["flops"] / 2 == one["macs_per_clip"]
  # Per clip the same, within what does not scale with the batch (the
  # relative-position bias gathers and masks are computed once).
  assert abs(two["macs_per_clip"] / one["macs_per_clip"] - 1) < 0.01
  assert 0.03e9 < one["macs_per_clip"] < 0.05e9  # 0.037 G for tiny
  # The matmul count is XLA's less the elementwise work.
  assert 0.8 < one["matmul_macs_per_clip"] / one["macs_per_clip"] < 1.0


def test_matmul_macs_count_a_matmul_and_a_conv():
  a = jax.make_jaxpr(lambda x, y: x @ y)(jnp.zeros((8, 16)),
                                         jnp.zeros((16, 4)))
  assert profiling._jaxpr_macs(a.jaxpr) == 8 * 16 * 4  # pylint: disable=protected-access
  conv = jax.make_jaxpr(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), "VALID", feature_group_count=2))(
          jnp.zeros((1, 4, 10, 10)), jnp.zeros((6, 2, 3, 3)))
  # 6 x 8 x 8 outputs, each 2 input channels x 3 x 3 taps.
  assert profiling._jaxpr_macs(conv.jaxpr) == 6 * 8 * 8 * 2 * 9  # pylint: disable=protected-access
  scanned = jax.make_jaxpr(lambda x, y: jax.lax.scan(
      lambda c, _: (c @ y, None), x, None, length=5)[0])(
          jnp.zeros((8, 8)), jnp.zeros((8, 8)))
  assert profiling._jaxpr_macs(scanned.jaxpr) == 5 * 8 * 8 * 8  # pylint: disable=protected-access


def test_paper_multiply_adds_match_the_released_model():
  """The reference measured 13.4 G multiply-adds per clip on the released
  model (3D entire embedding); the 2D embedding drops exactly the taps that
  only see zero padding: 56 x 56 x 128 outputs x 3 x 4 x 4 x 7 taps."""
  macs_3d = profiling.matmul_macs(
      edmdbn_config.get_config("paper,entire_patch_embed=3d"))
  macs_2d = profiling.matmul_macs(edmdbn_config.get_config("paper"))
  assert abs(macs_3d / 13.4e9 - 1) < 0.005
  assert macs_3d - macs_2d == 56 * 56 * 128 * 3 * 4 * 4 * 7


def test_summary_command_reports_counts_and_cost():
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  r = subprocess.run(
      [sys.executable, "-m", "experiments.summary",
       "--config=edmdbn_jax/configs/edmdbn.py:tiny", "--repeats=2"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "total:    1,059,051" in r.stdout
  assert ("Forward multiply-adds per clip (matrix products and "
          "convolutions): 0.0319 G") in r.stdout
  assert "Forward FLOPs per clip (XLA cost analysis" in r.stdout
  assert "Forward latency at batch 1 on 1 x cpu" in r.stdout
