"""Flax EDMDBN vs an independent PyTorch implementation with released keys."""

import jax
import numpy as np
import pytest

from edmdbn_jax.configs import edmdbn as configs
from edmdbn_jax.interop import torch_reference as tr
from edmdbn_jax.models import from_config

torch = pytest.importorskip("torch")
from edmdbn_jax.interop import torch_model  # pylint: disable=g-import-not-at-top,wrong-import-position


def _randomized(variables, seed):
  """Non-trivial values everywhere (norm scales, biases, TA maps)."""
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [
      l + 0.05 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


@pytest.mark.parametrize("variant,size,depths", [
    ("tiny", 64, (2, 2, 2)),
    ("tiny,fusion=concat,num_classes=3", 32, (2, 2, 2)),
    ("tiny,accumulated_attention=False", 32, (1, 1, 2)),
    ("tiny,branches=detail", 32, (1, 1, 2)),
    ("paper,entire_patch_embed=3d", 224, None),
])
def test_same_logits_as_pytorch(variant, size, depths):
  cfg = configs.get_config(variant)
  cfg.data.image_size = size
  if depths:
    cfg.model.depths = depths
  model = from_config(cfg.model)
  rng = np.random.default_rng(0)
  frames = rng.standard_normal((2, 9, size, size, 3)).astype(np.float32)
  keyframes = rng.standard_normal((2, 2, size, size, 3)).astype(np.float32)
  variables = jax.jit(model.init)(jax.random.key(0), frames[:1],
                                  keyframes[:1])
  variables = _randomized({"params": variables["params"]}, 1)
  logits = np.asarray(jax.jit(lambda v, a, b: model.apply(v, a, b)[0])(
      variables, frames, keyframes))
  sd = tr.to_state_dict(variables, cfg)
  tmodel = torch_model.load_numpy_state_dict(torch_model.TorchEDMDBN(cfg), sd)
  tmodel.eval()
  with torch.no_grad():
    want = tmodel(torch.from_numpy(frames), torch.from_numpy(keyframes))
  want = want.numpy()
  rel = np.abs(logits - want).max() / np.abs(want).max()
  assert rel < 1e-4, rel
