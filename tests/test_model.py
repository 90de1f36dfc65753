"""EDMDBN end to end: shapes for every variant, sizes, gradients, training."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from edmdbn_jax.configs import edmdbn as configs
from edmdbn_jax.models import edmdbn as edmdbn_lib
from edmdbn_jax.models import from_config


def _inputs(batch, size, t=8, key=0):
  k1, k2 = jax.random.split(jax.random.key(key))
  frames = jax.random.normal(k1, (batch, t + 1, size, size, 3))
  keyframes = jax.random.normal(k2, (batch, 2, size, size, 3))
  return frames, keyframes


def _tiny(**overrides):
  cfg = configs.get_config("tiny")
  cfg.model.depths = (1, 1, 1)
  cfg.model.embed_dim = 16
  cfg.model.update(overrides)
  return cfg


def _n_params(variables):
  return sum(x.size for x in jax.tree.leaves(variables["params"]))


def _shapes(cfg, size=224):
  model = from_config(cfg.model)
  f = jax.ShapeDtypeStruct((1, 9, size, size, 3), jnp.float32)
  k = jax.ShapeDtypeStruct((1, 2, size, size, 3), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), f, k)


def test_paper_parameter_counts():
  assert _n_params(_shapes(configs.get_config("paper"))) == 44_265_895
  assert _n_params(_shapes(configs.get_config(
      "paper,entire_patch_embed=3d"))) == 44_308_903
  assert _n_params(_shapes(configs.get_config(
      "paper,entire_patch_embed=3d,num_classes=3"))) == 44_108_197
  assert _n_params(_shapes(configs.get_config(
      "paper,branches=detail"))) == 22_405_334


def test_paper_intermediate_shapes():
  cfg = configs.get_config("paper")
  model = from_config(cfg.model)
  f = jax.ShapeDtypeStruct((1, 9, 224, 224, 3), jnp.float32)
  k = jax.ShapeDtypeStruct((1, 2, 224, 224, 3), jnp.float32)
  variables = _shapes(cfg)
  logits, out = jax.eval_shape(model.apply, variables, f, k)
  assert logits.shape == (1, 5)
  for branch in ("entire", "detail"):
    o = out[branch]
    assert o["stage1"].shape == (1, 1, 56, 56, 128)
    assert o["stage2"].shape == (1, 1, 28, 28, 256)
    assert o["stage3"].shape == (1, 1, 14, 14, 512)
    assert o["attention3"].shape == (1, 1, 14, 14, 1)
  assert out["fused"].shape == (1, 14, 14, 512)
  assert variables["params"]["head"]["kernel"].shape == (100_352, 5)


# Fusion only matters with both branches.
VARIANTS = [v for v in itertools.product(
    ("both", "entire", "detail"), ("add", "concat"), ("pixel", "feature"),
    (True, False)) if v[0] == "both" or v[1] == "add"]


@pytest.mark.parametrize("branches,fusion,motion,aa", VARIANTS)
def test_every_variant_runs(branches, fusion, motion, aa):
  cfg = _tiny(branches=branches, fusion=fusion, motion=motion,
              accumulated_attention=aa, num_classes=3)
  model = from_config(cfg.model)
  frames, keyframes = _inputs(2, 32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), frames, keyframes)
  params = shapes["params"]
  assert ("entire" in params) == (branches != "detail")
  assert ("detail" in params) == (branches != "entire")
  assert ("entire_block" in params or "detail_block" in params) == (
      motion == "feature")
  has_ta = any("sa_atten" in k for b in ("entire", "detail")
               for k in params.get(b, {}))
  assert has_ta == aa
  channels = 64 * (2 if (fusion == "concat" and branches == "both") else 1)
  assert params["head"]["kernel"].shape == (channels * 2 * 2, 3)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_forward_finite_and_dtype_policy(dtype):
  cfg = _tiny(dtype=dtype)
  model = from_config(cfg.model)
  frames, keyframes = _inputs(2, 32)
  variables = model.init(jax.random.key(0), frames, keyframes)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  logits, out = jax.jit(model.apply)(variables, frames, keyframes)
  assert logits.dtype == jnp.float32 and logits.shape == (2, 5)
  assert np.isfinite(np.asarray(logits)).all()
  assert out["fused"].dtype == (jnp.bfloat16 if dtype == "bfloat16"
                                else jnp.float32)


def test_head_flattens_channel_major():
  x = jnp.arange(2 * 2 * 3 * 4).reshape(2, 2, 3, 4)  # (B, h, w, C)
  flat = edmdbn_lib.channel_major_flatten(x)
  np.testing.assert_array_equal(
      flat, np.transpose(np.asarray(x), (0, 3, 1, 2)).reshape(2, -1))
  assert flat[0, 1] == x[0, 0, 1, 0]  # second input: channel 0, (h0, w1)


def test_motion_is_difference_of_inputs():
  """Pixel motion: adding a constant frame to every input changes nothing."""
  cfg = _tiny()
  model = from_config(cfg.model)
  frames, keyframes = _inputs(1, 32)
  variables = model.init(jax.random.key(0), frames, keyframes)
  bg = jax.random.normal(jax.random.key(9), (1, 1, 32, 32, 3))
  a, _ = model.apply(variables, frames, keyframes)
  b, _ = model.apply(variables, frames + bg, keyframes + bg)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_bfloat16_motion_is_differenced_in_float32():
  """Frames near 2 (normalised bright pixels) one grey level apart: the
  bfloat16 model's motion input keeps the difference."""
  model = from_config(_tiny(dtype="bfloat16").model)
  base = 2.0 + jax.random.uniform(jax.random.key(3), (1, 1, 32, 32, 3)) * 0.2
  step = 1.0 / (255 * 0.229)  # one grey level after ImageNet normalisation
  frames = base + step * jnp.arange(9.0)[None, :, None, None, None]
  keyframes = frames[:, jnp.array([0, 4])]
  entire, detail = model.apply({}, frames, keyframes, method="motions")
  assert entire.dtype == detail.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(detail, np.float32), step, rtol=0.01)
  np.testing.assert_allclose(np.asarray(entire, np.float32), 4 * step,
                             rtol=0.01)


def test_torch_default_init():
  """model.init='torch': every Linear/Conv weight and bias U(+-1/sqrt(fan_in))
  (the 2D entire embedding with the released Conv3d's fan-in), LayerNorm
  1 / 0, relative-position tables normal std 0.02 (untruncated at 2 std)."""
  from edmdbn_jax.models import init as init_lib  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config("paper")
  # Only names and shapes matter: ones stand in for the modules' values.
  params = jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype),
                        _shapes(cfg)["params"])
  new = jax.jit(lambda p: init_lib.apply("torch", p, jax.random.key(1)))(
      params)
  flat = {"/".join(str(k.key) for k in path): np.asarray(v) for path, v in
          jax.tree_util.tree_flatten_with_path(new)[0]}
  assert set(flat) == {"/".join(str(k.key) for k in path) for path, _ in
                       jax.tree_util.tree_flatten_with_path(params)[0]}

  def check_uniform(name, fan_in):
    w = flat[name]
    bound = 1 / np.sqrt(fan_in)
    assert np.abs(w).max() <= bound + 1e-7, name
    if w.size > 1000:
      assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.05, name

  check_uniform("head/kernel", 512 * 14 * 14)
  check_uniform("head/bias", 512 * 14 * 14)
  check_uniform("detail/layers_0_blocks_0/attn/qkv/kernel", 128)
  check_uniform("detail/layers_0_blocks_0/attn/qkv/bias", 128)
  check_uniform("detail/layers_2_blocks_5/mlp/fc2/kernel", 4 * 512)
  check_uniform("detail/layers_0_downsample/reduction/kernel", 4 * 128)
  check_uniform("detail/patch_embed/proj/kernel", 8 * 4 * 4 * 3)
  check_uniform("entire/patch_embed/proj/kernel", 8 * 4 * 4 * 3)  # as 3D
  check_uniform("entire/patch_embed/proj/bias", 8 * 4 * 4 * 3)
  check_uniform("entire/layers_1_sa_atten/proj/kernel", 2)
  assert flat["entire/patch_embed/proj/kernel"].shape == (4, 4, 3, 128)
  table = flat["detail/layers_2_blocks_0/attn/relative_position_bias_table"]
  assert abs(table.std() / 0.02 - 1) < 0.05 and np.abs(table).max() > 0.05
  # LayerNorm keeps the modules' values (1 / 0 there; the ones stand-in here).
  assert np.all(flat["detail/norm/scale"] == 1)
  assert np.all(flat["detail/layers_0_blocks_0/norm1/bias"] == 1)
  # 'paper' leaves the modules' own initial values.
  same = init_lib.apply("paper", params, jax.random.key(1))
  assert jax.tree.all(jax.tree.map(np.array_equal, same, params))


def test_paper_init():
  """model.init='paper' (the modules' own values): linear weights and
  relative-position tables a normal of std 0.02 (timm's trunc_normal_, cut
  at +-2 in absolute units, not at 2 std, which would leave std 0.0176),
  zero biases, LayerNorm 1 / 0; patch embeddings PyTorch's conv default,
  the 2D entire one drawn as the released Conv3d's taps (fan-in 8*4*4*3),
  like the detail branch's 3D one."""
  cfg = _tiny()
  cfg.model.embed_dim = 32
  model = from_config(cfg.model)
  frames, keyframes = _inputs(1, 32)
  params = jax.jit(model.init)(jax.random.key(5), frames, keyframes)["params"]
  flat = {"/".join(str(k.key) for k in path): np.asarray(v) for path, v in
          jax.tree_util.tree_flatten_with_path(params)[0]}
  for name in ("detail/layers_0_blocks_0/attn/qkv/kernel",
               "entire/layers_2_blocks_0/mlp/fc1/kernel", "head/kernel",
               "detail/layers_0_downsample/reduction/kernel"):
    w = flat[name]
    assert w.size > 2000, name
    assert abs(w.std() / 0.02 - 1) < 0.05, (name, w.std())
    # A normal of std 0.02 reaches past 2 std (0.04) in a few thousand draws.
    assert 0.04 < np.abs(w).max() <= 2.0, name
  table = np.concatenate([
      flat[f"{b}/layers_{i}_blocks_0/attn/relative_position_bias_table"]
      .ravel() for b in ("entire", "detail") for i in range(3)])
  assert abs(table.std() / 0.02 - 1) < 0.1 and np.abs(table).max() > 0.04
  for name in ("detail/layers_0_blocks_0/attn/qkv/bias", "head/bias",
               "entire/patch_embed/proj/bias", "detail/patch_embed/proj/bias",
               "detail/norm/bias"):
    assert np.all(flat[name] == 0), name
  assert np.all(flat["detail/norm/scale"] == 1)
  e, d = (flat[f"{b}/patch_embed/proj/kernel"] for b in ("entire", "detail"))
  assert e.shape == (4, 4, 3, 32) and d.shape == (8, 4, 4, 3, 32)
  bound = 1 / np.sqrt(8 * 4 * 4 * 3)
  for w in (e, d):
    assert np.abs(w).max() <= bound
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.1, w.std()


def test_train_mode_differs_from_eval_and_uses_the_rng():
  cfg = _tiny(drop_path_rate=0.5)
  model = from_config(cfg.model)
  frames, keyframes = _inputs(4, 32)
  variables = model.init(jax.random.key(0), frames, keyframes)
  ev1, _ = model.apply(variables, frames, keyframes, train=False)
  ev2, _ = model.apply(variables, frames, keyframes, train=False)
  np.testing.assert_array_equal(ev1, ev2)
  tr1, _ = model.apply(variables, frames, keyframes, train=True,
                       rngs={"dropout": jax.random.key(1)})
  tr2, _ = model.apply(variables, frames, keyframes, train=True,
                       rngs={"dropout": jax.random.key(2)})
  assert np.abs(np.asarray(tr1 - ev1)).max() > 1e-4
  assert np.abs(np.asarray(tr1 - tr2)).max() > 1e-4


def test_gradients_finite_and_loss_decreases():
  cfg = _tiny(drop_path_rate=0.0)
  model = from_config(cfg.model)
  frames, keyframes = _inputs(4, 32)
  labels = jnp.array([0, 1, 2, 3])
  variables = model.init(jax.random.key(0), frames, keyframes)
  params = variables["params"]
  tx = optax.adamw(1e-3)
  opt = tx.init(params)

  def loss_fn(p):
    logits, _ = model.apply({"params": p}, frames, keyframes, train=True,
                            rngs={"dropout": jax.random.key(0)})
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, labels).mean()

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(loss_fn)(p)
    updates, o = tx.update(g, o, p)
    return optax.apply_updates(p, updates), o, loss, g

  losses = []
  for i in range(8):
    params, opt, loss, grads = step(params, opt)
    if i == 0:
      leaves = jax.tree.leaves(grads)
      assert all(np.isfinite(np.asarray(g)).all() for g in leaves)
      assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0], losses
