"""Flax EDMDBN vs PyTorch builds with the released keys.

Two PyTorch builds: an independent plain implementation, and one made of
torchvision's Video Swin building blocks (the benchmark's PyTorch side).
Skipped where torch (or, for the second, torchvision) is not installed.
"""

import jax
import numpy as np
import pytest

from edmdbn_jax.configs import edmdbn as configs
from edmdbn_jax.interop import torch_reference as tr
from edmdbn_jax.models import from_config

torch = pytest.importorskip("torch")
from edmdbn_jax.interop import torch_model  # pylint: disable=g-import-not-at-top,wrong-import-position


def _blocks(name):
  if name == "torchvision":
    pytest.importorskip("torchvision")
  return name


def _randomized(variables, seed):
  """Non-trivial values everywhere (norm scales, biases, TA maps)."""
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tree, [
      l + 0.05 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


@pytest.mark.parametrize("blocks", torch_model.BLOCKS)
@pytest.mark.parametrize("variant,size,depths", [
    ("tiny", 64, (2, 2, 2)),
    ("tiny,fusion=concat,num_classes=3", 32, (2, 2, 2)),
    ("tiny,accumulated_attention=False", 32, (1, 1, 2)),
    ("tiny,branches=detail", 32, (1, 1, 2)),
    ("paper,entire_patch_embed=3d", 224, None),
])
def test_same_logits_as_pytorch(variant, size, depths, blocks):
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
  tmodel = torch_model.load_numpy_state_dict(
      torch_model.TorchEDMDBN(cfg, blocks=_blocks(blocks)), sd)
  tmodel.eval()
  with torch.no_grad():
    want = tmodel(torch.from_numpy(frames), torch.from_numpy(keyframes))
  want = want.numpy()
  rel = np.abs(logits - want).max() / np.abs(want).max()
  assert rel < 1e-4, rel


@pytest.mark.parametrize("blocks", torch_model.BLOCKS)
def test_parameter_count_is_the_released_models(blocks):
  cfg = configs.get_config("paper,entire_patch_embed=3d")
  tmodel = torch_model.TorchEDMDBN(cfg, blocks=_blocks(blocks))
  # 44,308,903 used parameters in the released model (5 classes, both
  # branches, AA on); the `sa_atten.down` twins are the same tensors.
  assert sum(p.numel() for p in tmodel.parameters()) == 44_308_903


def test_torchvision_blocks_train_mode_is_stochastic():
  _blocks("torchvision")
  cfg = configs.get_config("tiny,entire_patch_embed=3d,drop_path_rate=0.5")
  cfg.data.image_size = 32
  tmodel = torch_model.TorchEDMDBN(cfg, blocks="torchvision")
  depths = [len(layer.blocks) for layer in tmodel.short_action_model.layers]
  probs = [blk.stochastic_depth.p for layer in tmodel.short_action_model.layers
           for blk in layer.blocks]
  np.testing.assert_allclose(probs, np.linspace(0, 0.5, sum(depths)))
  torch.manual_seed(0)
  frames = torch.randn(2, 9, 32, 32, 3)
  keyframes = torch.randn(2, 2, 32, 32, 3)
  tmodel.train()
  a, b = tmodel(frames, keyframes), tmodel(frames, keyframes)
  assert not torch.allclose(a, b)
  tmodel.eval()
  assert torch.equal(tmodel(frames, keyframes), tmodel(frames, keyframes))


def test_unknown_blocks_refused():
  with pytest.raises(ValueError, match="blocks must be one of"):
    torch_model.TorchEDMDBN(configs.get_config("tiny"), blocks="timm")


def test_benchmark_reports_both_precisions():
  blocks = _blocks("torchvision")
  cfg = configs.get_config("tiny,entire_patch_embed=3d")
  cfg.data.image_size = 32
  cfg.model.depths = (1, 1, 2)
  out = torch_model.benchmark(cfg, blocks=blocks, steps=1, repeats=1)
  for tag in ("fp32", "amp"):
    assert out[f"train_{tag}_clip_steps_per_s"] > 0
    assert out[f"infer_b1_s_{tag}"] > 0 and out[f"infer_b64_s_{tag}"] > 0
  assert out["blocks"] == "torchvision" and out["parameters"] > 0
  assert torch.get_float32_matmul_precision() == "highest"  # restored
