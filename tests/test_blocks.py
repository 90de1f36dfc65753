"""Swin blocks, patch merging/embedding and Token Attention against NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmdbn_jax.models import swin3d
from edmdbn_jax.models import token_attention as ta
from tests import numpy_reference as ref


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _randomize(params, key):
  """Replace every parameter by noise so biases and norms are exercised."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [
      0.3 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


@pytest.mark.parametrize("size,shift", [
    ((1, 8, 8), (0, 0, 0)),      # plain windows
    ((1, 8, 8), (4, 2, 2)),      # shifted, D shift dropped by the rule
    ((2, 6, 5), (1, 2, 2)),      # padding in H and W plus a shift
])
def test_swin_block_matches_numpy(size, shift):
  window = (2, 4, 4)
  c, heads = 8, 2
  block = swin3d.SwinBlock3D(heads, window, shift, mlp_ratio=2.0)
  x = jax.random.normal(jax.random.key(0), (2,) + size + (c,))
  params = block.init(jax.random.key(1), x)["params"]
  params = _randomize(params, jax.random.key(2))
  y = np.asarray(block.apply({"params": params}, x))
  p = _np(params)
  for b in range(2):
    want = ref.swin_block(np.asarray(x[b], np.float64), p, window, shift)
    np.testing.assert_allclose(y[b], want, rtol=1e-4, atol=1e-4)


def test_shifted_block_is_local():
  """A token only influences tokens of its own window and shift region."""
  window, shift = (1, 4, 4), (0, 2, 2)
  block = swin3d.SwinBlock3D(2, window, shift, mlp_ratio=2.0)
  x = jax.random.normal(jax.random.key(0), (1, 1, 8, 8, 8))
  params = block.init(jax.random.key(1), x)
  base = block.apply(params, x)
  # Token (7, 7) wraps to shifted position (5, 5): window rows/cols 4..7,
  # region "wrapped in h and w" = original rows/cols 6..7 and only those.
  # A perturbation with non-zero variance (LayerNorm removes a constant).
  moved = block.apply(params, x.at[0, 0, 7, 7].add(jnp.arange(8.0)))
  changed = np.abs(np.asarray(moved - base))[0, 0].max(-1) > 1e-6
  expected = np.zeros((8, 8), bool)
  expected[6:8, 6:8] = True
  np.testing.assert_array_equal(changed, expected)


def test_patch_merging_matches_numpy():
  x = jax.random.normal(jax.random.key(0), (1, 2, 4, 6, 3))
  mod = swin3d.PatchMerging()
  params = _randomize(mod.init(jax.random.key(1), x)["params"],
                      jax.random.key(2))
  y = np.asarray(mod.apply({"params": params}, x))
  np.testing.assert_allclose(
      y[0], ref.patch_merging(np.asarray(x[0], np.float64), _np(params)),
      rtol=1e-4, atol=1e-4)


def test_2d_patch_embed_equals_3d_on_a_padded_single_frame():
  img = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  e3 = swin3d.PatchEmbed(8, (8, 4, 4))
  p3 = e3.init(jax.random.key(1), img[:, None])["params"]
  p2 = jax.tree.map(lambda a: a, p3)
  p2["proj"]["kernel"] = p3["proj"]["kernel"][0]  # the tap that sees data
  y3 = e3.apply({"params": p3}, img[:, None])
  y2 = swin3d.PatchEmbed(8, (4, 4)).apply({"params": p2}, img)
  assert y3.shape == y2.shape == (2, 1, 4, 4, 8)
  np.testing.assert_allclose(y2, y3, rtol=1e-5, atol=1e-5)


def test_gelu_is_exact_and_layernorm_eps():
  x = jnp.linspace(-3, 3, 7)
  np.testing.assert_allclose(swin3d.gelu(x), ref.gelu(np.asarray(x)),
                             rtol=1e-6, atol=1e-6)
  assert swin3d.LN_EPS == 1e-5


def test_drop_path_drops_whole_samples_in_training_only():
  dp = swin3d.DropPath(0.5)
  x = jnp.ones((64, 3, 4))
  y = dp.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
  per_sample = np.asarray(y).reshape(64, -1)
  assert set(np.unique(per_sample)) <= {0.0, 2.0}
  assert (per_sample.min(1) == per_sample.max(1)).all()  # whole sample
  assert 10 < (per_sample[:, 0] == 0).sum() < 54
  np.testing.assert_array_equal(dp.apply({}, x, deterministic=True), x)


def test_token_attention_and_accumulation_match_numpy():
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  x1 = jax.random.normal(k1, (2, 1, 8, 8, 6))
  x2 = jax.random.normal(k2, (2, 1, 4, 4, 12))
  mod = ta.TokenAttention()
  p1 = _randomize(mod.init(k3, x1)["params"], jax.random.key(4))
  p2 = _randomize(mod.init(k3, x2)["params"], jax.random.key(5))
  y1, a1 = mod.apply({"params": p1}, x1)
  y2, a2 = mod.apply({"params": p2}, x2, a1)
  for b in range(2):
    w1 = np.asarray(p1["proj"]["kernel"])[:, 0]
    w2 = np.asarray(p2["proj"]["kernel"])[:, 0]
    r1, ra1 = ref.token_attention(np.asarray(x1[b], np.float64), w1,
                                  float(p1["proj"]["bias"][0]))
    r2, ra2 = ref.token_attention(np.asarray(x2[b], np.float64), w2,
                                  float(p2["proj"]["bias"][0]), ra1)
    np.testing.assert_allclose(y1[b], r1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a1[b, ..., 0], ra1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y2[b], r2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a2[b, ..., 0], ra2, rtol=1e-5, atol=1e-6)
  # Accumulated maps only shrink: each factor is a sigmoid in (0, 1).
  assert (np.asarray(a2) <= np.asarray(ta.pool_previous(a1)) + 1e-7).all()


def test_token_attention_without_accumulation_ignores_previous_map():
  x = jax.random.normal(jax.random.key(0), (1, 1, 4, 4, 6))
  prev = jnp.full((1, 1, 8, 8, 1), 0.01)
  mod = ta.TokenAttention(accumulate=False)
  p = mod.init(jax.random.key(1), x)
  np.testing.assert_allclose(mod.apply(p, x, prev)[1], mod.apply(p, x)[1])


@pytest.mark.parametrize("patch,shape", [
    ((8, 4, 4), (2, 8, 16, 12, 3)),   # the detail branch's 3D embedding
    ((4, 4), (2, 16, 12, 3)),         # the entire branch's 2D embedding
    ((2, 2, 4), (1, 4, 6, 8, 5)),
])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_patch_projection_is_the_strided_conv(patch, shape, dtype):
  """Same parameter names, shapes and initial values as nn.Conv, and the
  same function (up to rounding), in both compute dtypes."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.key(1), shape)
  conv = nn.Conv(7, patch, strides=patch, padding="VALID", dtype=dtype,
                 kernel_init=swin3d.torch_default, name="proj")
  proj = swin3d.PatchProjection(7, patch, dtype=dtype, name="proj")
  v_conv, v_proj = conv.init(jax.random.key(0), x), proj.init(
      jax.random.key(0), x)
  assert jax.tree.map(np.shape, v_conv) == jax.tree.map(np.shape, v_proj)
  np.testing.assert_array_equal(v_conv["params"]["kernel"],
                                v_proj["params"]["kernel"])
  v = _randomize(v_conv, jax.random.key(2))
  want, got = conv.apply(v, x), proj.apply(v, x)
  assert got.dtype == want.dtype == dtype
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(got, np.float32),
                             np.asarray(want, np.float32), rtol=tol, atol=tol)


def test_fold_vmapped_model_has_no_grouped_convolution():
  """Under the train step's vmap over folds (a kernel per fold), the patch
  embedding stays a batched matmul: no convolution, whose vmapped form and
  gradients are grouped convolutions (slow special kernels)."""
  from edmdbn_jax.configs import edmdbn as edmdbn_config  # pylint: disable=g-import-not-at-top
  from edmdbn_jax.models import abstract_variables, from_config, input_specs  # pylint: disable=g-import-not-at-top
  cfg = edmdbn_config.get_config("tiny")
  model = from_config(cfg.model)
  variables = abstract_variables(model, cfg)
  folds = 3
  stacked = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct((folds,) + a.shape, a.dtype), variables)
  specs = [jax.ShapeDtypeStruct((folds,) + s.shape, s.dtype)
           for s in input_specs(cfg, 2)]

  def loss(v, frames, keyframes):
    return jnp.sum(model.apply(v, frames, keyframes)[0])

  step = jax.jit(jax.vmap(jax.grad(loss)))
  hlo = step.lower(stacked, *specs).as_text(dialect="hlo")
  assert "convolution(" not in hlo
  assert "dot(" in hlo
