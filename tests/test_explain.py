"""Class activation maps (HiResCAM, Grad-CAM) and attention maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmdbn_jax import explain
from edmdbn_jax.configs import edmdbn as configs
from edmdbn_jax.models import from_config


@pytest.fixture(scope="module")
def tiny():
  cfg = configs.get_config("tiny")
  cfg.model.depths = (1, 1, 1)
  cfg.model.embed_dim = 16
  model = from_config(cfg.model)
  k1, k2 = jax.random.split(jax.random.key(3))
  frames = jax.random.normal(k1, (2, 9, 32, 32, 3))
  keyframes = jax.random.normal(k2, (2, 2, 32, 32, 3))
  variables = model.init(jax.random.key(0), frames, keyframes)
  return model, {"params": variables["params"]}, frames, keyframes


def test_cam_from_gradients_by_hand():
  feature = jnp.zeros((1, 3, 3, 2)).at[0, 1, 2, 0].set(4.0).at[0, 0, 0, 1].set(
      1.0)
  grads = jnp.zeros((1, 3, 3, 2)).at[0, :, :, 0].set(1.0).at[0, :, :, 1].set(
      -1.0)
  cam = np.asarray(explain.cam_from_gradients(feature, grads,
                                              method="gradcam"))[0]
  want = np.zeros((3, 3))
  want[1, 2] = 1.0  # channel 0 positive weight; channel 1 negative (ReLU'd)
  np.testing.assert_allclose(cam, want, atol=1e-6)
  # HiResCAM: gradient x activation at each position, summed over channels.
  grads = grads.at[0, 1, 2, 0].set(0.5).at[0, 0, 0, 1].set(3.0)
  signed = np.asarray(explain.signed_cam(feature, grads, "hirescam"))[0]
  want = np.zeros((3, 3))
  want[1, 2], want[0, 0] = 4.0 * 0.5, 1.0 * 3.0
  np.testing.assert_allclose(signed, want, atol=1e-6)
  with pytest.raises(ValueError, match="method"):
    explain.signed_cam(feature, grads, "cam++")


@pytest.mark.parametrize("i0,j0", [(1, 0), (0, 1)])
def test_map_peaks_where_the_head_reads(tiny, i0, j0):
  """A head that reads only fused position (i0, j0) for class 0, with
  random weights there: HiResCAM is that position's share of the logit, so
  its map is non-zero there only (a transposed or shifted layout would
  put it elsewhere)."""
  model, variables, frames, keyframes = tiny
  fused, _ = model.apply(variables, frames, keyframes, method="features")
  _, h, w, c = fused.shape
  kernel = np.zeros((c * h * w, model.num_classes), np.float32)
  # Channel-major flattening: input index = ch * h * w + i * w + j.
  rows = np.arange(c) * h * w + i0 * w + j0
  weights = np.random.default_rng(i0 + 2 * j0).normal(size=c)
  # Class 0 reads position (i0, j0) positively (so its map is not empty).
  weights *= np.sign(weights @ np.asarray(fused[0, i0, j0])) or 1.0
  kernel[rows, 0] = weights
  params = jax.tree.map(lambda a: a, variables["params"])
  params["head"] = {"kernel": jnp.asarray(kernel),
                    "bias": jnp.zeros(model.num_classes)}
  res = explain.gradcam(model, {"params": params}, frames[:1], keyframes[:1],
                        classes=[0, 1], return_signed=True)
  cams, signed = np.asarray(res["cams"]), np.asarray(res["signed"])
  assert cams.shape == (1, 2, h, w)
  want = np.zeros((h, w))
  want[i0, j0] = 1.0
  np.testing.assert_allclose(cams[0, 0], want, atol=1e-6)
  np.testing.assert_allclose(signed[0, 0, i0, j0],
                             np.asarray(res["logits"])[0, 0], rtol=1e-4)
  # Class 1 does not depend on the features at all: an all-zero map.
  assert not cams[0, 1].any()


@pytest.mark.parametrize("target", ["fused", "entire", "detail"])
def test_hirescam_shares_add_up_to_the_logit(tiny, target):
  """With EDMDBN's linear head, the signed HiResCAM map sums to the class
  logit less the head's bias (for a branch target, with the other branch's
  map: with add fusion fused = entire + detail)."""
  model, variables, frames, keyframes = tiny
  res = {t: explain.gradcam(model, variables, frames, keyframes,
                            classes=[0, 2, 4], target=t, return_signed=True)
         for t in {"fused", target}}
  bias = np.asarray(variables["params"]["head"]["bias"])[[0, 2, 4]]
  logits = np.asarray(res["fused"]["logits"])[:, [0, 2, 4]]
  total = np.asarray(res["fused"]["signed"]).sum((2, 3))
  np.testing.assert_allclose(total, logits - bias, rtol=1e-4, atol=1e-4)
  if target != "fused":
    other = "detail" if target == "entire" else "entire"
    rest = explain.gradcam(model, variables, frames, keyframes,
                           classes=[0, 2, 4], target=other,
                           return_signed=True)["signed"]
    both = np.asarray(res[target]["signed"]) + np.asarray(rest)
    np.testing.assert_allclose(both.sum((2, 3)), logits - bias, rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("target", ["fused", "entire", "detail"])
def test_gradcam_maps_finite_and_normalised(tiny, target):
  model, variables, frames, keyframes = tiny
  res = explain.gradcam(model, variables, frames, keyframes, classes=[0, 2],
                        target=target)
  cams = np.asarray(res["cams"])
  assert cams.shape[:2] == (2, 2)
  assert np.isfinite(cams).all()
  assert cams.min() >= 0.0 and cams.max() <= 1.0 + 1e-6
  peaks = cams.max(axis=(2, 3))
  assert np.all((np.abs(peaks - 1.0) < 1e-5) | (peaks == 0.0))
  np.testing.assert_allclose(np.asarray(res["probabilities"]).sum(-1), 1.0,
                             rtol=1e-5)


@pytest.mark.parametrize("target", ["fused", "entire", "detail"])
def test_gradcam_out_is_the_forward_pass(tiny, target):
  # The intermediates returned with the maps (gradcam.py draws the Token
  # Attention panels from them) are those of a plain forward pass.
  model, variables, frames, keyframes = tiny
  logits, out = model.apply(variables, frames, keyframes)
  res = explain.gradcam(model, variables, frames, keyframes, classes=[0],
                        target=target, return_out=True)
  np.testing.assert_allclose(np.asarray(res["logits"]), np.asarray(logits),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(res["out"]["logits"]),
                             np.asarray(logits), rtol=1e-5, atol=1e-5)
  want = explain.attention_maps(out)
  got = explain.attention_maps(res["out"])
  assert set(got) == set(want) and want
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
  assert "out" not in explain.gradcam(model, variables, frames, keyframes,
                                      classes=[0], target=target)


@pytest.mark.parametrize("method", explain.METHODS)
def test_branch_maps_add_up_to_the_fused_map(tiny, method):
  # The branch targets explain the features the (add) fusion takes, after
  # each branch's final LayerNorm: the signed maps add up exactly.
  model, variables, frames, keyframes = tiny
  signed = {t: np.asarray(explain.gradcam(
      model, variables, frames, keyframes, classes=[0, 3], target=t,
      return_signed=True, method=method)["signed"])
            for t in ("fused", "entire", "detail")}
  np.testing.assert_allclose(signed["fused"],
                             signed["entire"] + signed["detail"],
                             rtol=1e-4, atol=1e-5)
  assert np.abs(signed["entire"]).max() > 1e-3


def test_attention_maps_and_panel(tiny, tmp_path):
  model, variables, frames, keyframes = tiny
  _, out = model.apply(variables, frames, keyframes)
  maps = explain.attention_maps(out)
  assert set(maps) == {f"{b}/attention{i}" for b in ("entire", "detail")
                       for i in (1, 2, 3)}
  assert maps["entire/attention1"].shape == (2, 8, 8)
  assert ((maps["detail/attention3"] >= 0) & (maps["detail/attention3"] <= 1)
          ).all()
  img = np.full((32, 32, 3), 100, np.uint8)
  cams = np.random.default_rng(0).random((5, 2, 2))
  path = tmp_path / "panel.png"
  explain.save_panel(str(path), img, img + 5, cams, list("abcde"),
                     np.full(5, 0.2), title="t",
                     attention={k: v[0] for k, v in maps.items()})
  import matplotlib.image as mpimg  # pylint: disable=g-import-not-at-top
  assert mpimg.imread(str(path)).shape[0] == 500  # 2 rows of 2.5 in, 100 dpi
  # Two classes: 5 columns, so the 6 maps take two rows (none cut off).
  explain.save_panel(str(path), img, img + 5, cams[:2], list("ab"),
                     np.full(2, 0.5), title="t",
                     attention={k: v[0] for k, v in maps.items()})
  assert mpimg.imread(str(path)).shape[0] == 750
