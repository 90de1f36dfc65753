"""The converter for the authors' PyTorch state dict."""

import ast
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmdbn_jax import errors
from edmdbn_jax.configs import edmdbn as configs
from edmdbn_jax.interop import torch_reference as tr
from edmdbn_jax.models import from_config

LAYOUT = pathlib.Path(__file__).parent / "data" / "edmdbn_torch_state_dict.tsv"


def released_like_state_dict(seed=0):
  """Random arrays with every key and shape of the released model."""
  rng = np.random.default_rng(seed)
  sd = {}
  for line in LAYOUT.read_text().splitlines()[1:]:
    key, shape = line.split("\t")[:2]
    shape = ast.literal_eval(shape)
    if key.endswith("relative_position_index"):
      sd[key] = rng.integers(0, 2535, shape)
    else:
      sd[key] = rng.standard_normal(shape).astype(np.float32)
  for key in sd:  # registered twice in the released model: same tensor
    if ".sa_atten.down." in key:
      sd[key] = sd[key.replace(".sa_atten.down.", ".downsample.")]
  return sd


@pytest.fixture(scope="module")
def released():
  return released_like_state_dict()


def test_released_layout_converts_to_paper_model(released):
  cfg = configs.get_config("paper,entire_patch_embed=3d")
  params = tr.convert_state_dict(released, cfg)["params"]
  qkv = params["detail"]["layers_2_blocks_5"]["attn"]["qkv"]["kernel"]
  np.testing.assert_array_equal(
      qkv, released["short_action_model.layers.2.blocks.5.attn.qkv.weight"].T)
  np.testing.assert_array_equal(
      params["entire"]["patch_embed"]["proj"]["kernel"],
      np.transpose(released["long_action_model.patch_embed.proj.weight"],
                   (2, 3, 4, 1, 0)))
  ta = params["entire"]["layers_1_sa_atten"]["proj"]["kernel"]
  w = released["long_action_model.layers.1.sa_atten.conv.weight"]
  assert ta.shape == (2, 1)
  assert ta[0, 0] == w[0, 0, 0, 0, 0] and ta[1, 0] == w[0, 1, 0, 0, 0]
  np.testing.assert_array_equal(params["head"]["kernel"],
                                released["head.1.weight"].T)
  # Every Flax parameter came from the dict and has the model's shape.
  want = jax.eval_shape(
      from_config(cfg.model).init, jax.random.key(0),
      jax.ShapeDtypeStruct((1, 9, 224, 224, 3), np.float32),
      jax.ShapeDtypeStruct((1, 2, 224, 224, 3), np.float32))["params"]
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, want)


def test_2d_entire_embedding_keeps_the_tap_that_sees_data(released):
  params = tr.convert_state_dict(released, configs.get_config("paper"))
  k = params["params"]["entire"]["patch_embed"]["proj"]["kernel"]
  assert k.shape == (4, 4, 3, 128)
  w = released["long_action_model.patch_embed.proj.weight"]
  np.testing.assert_array_equal(k, np.transpose(w[:, :, 0], (2, 3, 1, 0)))


def test_lightning_prefix_is_accepted(released):
  cfg = configs.get_config("paper,entire_patch_embed=3d")
  prefixed = {"model." + k: v for k, v in released.items()}
  a = tr.convert_state_dict(prefixed, cfg)
  b = tr.convert_state_dict(released, cfg)
  assert jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_rejects_missing_unexpected_and_misshapen_keys(released):
  cfg = configs.get_config("paper,entire_patch_embed=3d")
  bad = dict(released)
  del bad["short_action_model.norm.bias"]
  bad["long_action_model.extra.weight"] = np.zeros(3)
  bad["head.1.bias"] = np.zeros(4, np.float32)
  with pytest.raises(errors.CheckpointError) as e:
    tr.convert_state_dict(bad, cfg)
  msg = str(e.value)
  assert "missing keys (1): short_action_model.norm.bias" in msg
  assert "unexpected keys (1): long_action_model.extra.weight" in msg
  assert "head.1.bias: got (4,), expected (5,)" in msg


def test_wrong_class_count_is_named(released):
  with pytest.raises(errors.CheckpointError, match="head.1.weight"):
    tr.convert_state_dict(released, configs.get_config(
        "paper,entire_patch_embed=3d,num_classes=3"))


def test_duplicate_downsample_must_match(released):
  bad = dict(released)
  key = "short_action_model.layers.0.sa_atten.down.norm.bias"
  bad[key] = bad[key] + 1.0
  with pytest.raises(errors.CheckpointError, match="should be the same tensor"):
    tr.convert_state_dict(bad, configs.get_config(
        "paper,entire_patch_embed=3d"))


@pytest.mark.parametrize("variant", [
    "tiny", "tiny,entire_patch_embed=3d", "tiny,accumulated_attention=False",
    "tiny,fusion=concat,num_classes=3", "tiny,branches=detail"])
def test_round_trip_gives_identical_logits(variant):
  cfg = configs.get_config(variant)
  cfg.data.image_size = 32
  model = from_config(cfg.model)
  frames = jax.random.normal(jax.random.key(1), (2, 9, 32, 32, 3))
  keyframes = jax.random.normal(jax.random.key(2), (2, 2, 32, 32, 3))
  variables = model.init(jax.random.key(0), frames, keyframes)
  sd = tr.to_state_dict(variables, cfg)
  # As the released model: every stage saves a Token Attention conv (zeros
  # when the model has none) and its merge twice.
  assert sum(k.endswith(".sa_atten.conv.weight") for k in sd) == 3 * (
      1 if "branches=detail" in variant else 2)
  assert any(".sa_atten.down." in k for k in sd)
  if "accumulated_attention=False" in variant:
    assert all(not sd[k].any() for k in sd if ".sa_atten.conv." in k)
  back = tr.convert_state_dict(sd, cfg)
  a, _ = model.apply(variables, frames, keyframes)
  b, _ = model.apply(back, frames, keyframes)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_released_checkpoint_extras_are_ignored(released, caplog):
  """A real released file also holds the unused ViT (`vit_pos.*`), and one
  trained without Token Attention still holds its convs."""
  cfg = configs.get_config("paper,entire_patch_embed=3d")
  with_vit = dict(released)
  with_vit["vit_pos.pos_embed"] = np.zeros((1, 197, 512), np.float32)
  with_vit["vit_pos.blocks.0.attn.qkv.weight"] = np.zeros((1536, 512),
                                                           np.float32)
  caplog.set_level("INFO")
  a = tr.convert_state_dict({"model." + k: v for k, v in with_vit.items()},
                            cfg)
  b = tr.convert_state_dict(released, cfg)
  assert jax.tree.all(jax.tree.map(np.array_equal, a, b))
  assert any("Ignoring 2 'vit_pos.*' tensors" in r.getMessage()
             for r in caplog.records)
  off = configs.get_config(
      "paper,entire_patch_embed=3d,accumulated_attention=False")
  params = tr.convert_state_dict(released, off)["params"]
  assert not any("sa_atten" in k for k in params["entire"])
  # Said, since a checkpoint trained with Token Attention would compute
  # another function without it.
  assert any("Not converted: 12 Token Attention tensors" in r.getMessage()
             and r.levelname == "WARNING" for r in caplog.records)
  # Without Token Attention the convs are skipped only where the stage
  # exists; an unknown stage's conv is still unexpected.
  bad = dict(released)
  bad["long_action_model.layers.7.sa_atten.conv.bias"] = np.zeros(1)
  with pytest.raises(errors.CheckpointError,
                     match=r"unexpected keys \(1\): long_action_model.layers.7"):
    tr.convert_state_dict(bad, off)


def test_feature_motion_cannot_load_released_weights(released):
  with pytest.raises(errors.ConfigError, match="feature-subtraction"):
    tr.convert_state_dict(released, configs.get_config("paper,motion=feature"))


def test_import_torch_reads_a_pt_file_and_writes_a_model_dir(tmp_path):
  torch = pytest.importorskip("torch")
  from edmdbn_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from experiments import import_torch  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config("tiny,num_classes=3")
  cfg.data.image_size = 32
  model = from_config(cfg.model)
  frames = jax.random.normal(jax.random.key(1), (1, 9, 32, 32, 3))
  keyframes = jax.random.normal(jax.random.key(2), (1, 2, 32, 32, 3))
  variables = model.init(jax.random.key(0), frames, keyframes)
  sd = tr.to_state_dict(variables, cfg)
  path = tmp_path / "weights.ckpt"
  # A Lightning-style checkpoint: {'state_dict': {'model.<key>': tensor}}.
  torch.save({"state_dict": {"model." + k: torch.from_numpy(np.array(v))
                             for k, v in sd.items()}}, path)
  read = import_torch.read_torch_state_dict(str(path))
  converted = tr.convert_state_dict(read, cfg)
  out = checkpoints.save_model(str(tmp_path / "model"), converted, cfg,
                               ["negative", "positive", "surprise"])
  model2, v2, cfg2, names = checkpoints.load_model(out)
  assert names == ("negative", "positive", "surprise")
  assert cfg2.model.num_classes == 3
  a, _ = model.apply(variables, frames, keyframes)
  b, _ = model2.apply(v2, frames, keyframes)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_import_torch_cli_errors_and_default_class_names(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from experiments import import_torch  # pylint: disable=g-import-not-at-top
  assert import_torch.default_class_names(configs.get_config("paper")) == [
      "happiness", "repression", "surprise", "disgust", "others"]
  with pytest.raises(errors.ConfigError, match="--class_names"):
    import_torch.default_class_names(configs.get_config("paper,num_classes=4"))
  # The synthetic dataset (the tiny config's) has its class set too.
  assert len(import_torch.default_class_names(configs.get_config("tiny"))) == 5
  # A trained model is never replaced by accident.
  run = tmp_path / "run"
  (run / "folds" / "s01" / "model" / "12").mkdir(parents=True)
  (run / "folds" / "s01" / "result.json").write_text("{}")
  (run / "config.json").write_text("{}")
  for inside in (run, run / "folds", run / "folds" / "s01",
                 run / "folds" / "s01" / "model", run / "final_model"):
    with pytest.raises(errors.CheckpointError, match="is inside the LOSO run"):
      import_torch.check_output(str(inside), overwrite=True)
  other = tmp_path / "imported"
  (other / "0").mkdir(parents=True)
  with pytest.raises(errors.CheckpointError, match="--overwrite"):
    import_torch.check_output(str(other), overwrite=False)
  import_torch.check_output(str(other), overwrite=True)
  import_torch.check_output(str(tmp_path / "new"), overwrite=False)
  # Weights of another config: the cause in one line, lists capped.
  tiny = configs.get_config("tiny")
  tiny.data.image_size = 32
  sd = tr.to_state_dict(from_config(tiny.model).init(
      jax.random.key(0), jnp.zeros((1, 9, 32, 32, 3)),
      jnp.zeros((1, 2, 32, 32, 3))), tiny)
  with pytest.raises(errors.CheckpointError) as e:
    tr.convert_state_dict(sd, configs.get_config("paper"))
  assert "embedding width is 32, the config's model.embed_dim 128" in str(
      e.value)
  assert len(str(e.value)) < 4000 and "more)" in str(e.value)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  r = subprocess.run(
      [sys.executable, "-m", "experiments.import_torch",
       f"--checkpoint={tmp_path}/missing.pt", f"--workdir={tmp_path}/out"],
      cwd=root, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu"))
  assert r.returncode == 2, r.stderr[-2000:]
  assert "missing.pt does not exist" in r.stderr
  assert "Traceback" not in r.stderr
