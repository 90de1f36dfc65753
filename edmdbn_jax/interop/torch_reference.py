"""Loading the authors' released PyTorch EDMDBN weights (and writing them back).

The released state dict (see shared/reference/edmdbn_torch_state_dict.tsv in
the developers' notes) names the entire-motion branch `long_action_model`, the
detail-motion branch `short_action_model` and the classifier `head.1`. This
module maps every key to a Flax variable of `edmdbn_jax.models.EDMDBN`:

  Linear weight (out, in)                 -> Dense kernel (in, out)
  Conv3d weight (out, in, D, H, W)        -> Conv kernel (D, H, W, in, out)
    (for the 2D entire-branch embedding only the first temporal tap, the one
    that ever sees data, is kept: [:, :, 0] -> (H, W, in, out))
  LayerNorm weight / bias                 -> scale / bias
  sa_atten.conv.weight (1, 2, 1, 1, 1)    -> Token Attention proj kernel (2, 1)
  relative_position_bias_table (rows, h)  -> same (whole nominal table)

Skipped on purpose, and checked: `relative_position_index` buffers (the Flax
model computes its indices), and `layers.N.sa_atten.down.*`, which the
released model registers twice (same tensor as `layers.N.downsample.*`); the
converter verifies they are equal to the downsample weights. Skipped and
logged: `vit_pos.*`, the ViT the released model builds but never calls; for
a model without Token Attention (`accumulated_attention=False`), the
`sa_atten.conv.*` the released stages build anyway.

NumPy only: torch is needed just to read a `.pt` file (experiments.import_torch).
"""

from typing import Dict, Mapping, Tuple

from absl import logging
import jax
import ml_collections
import numpy as np

from edmdbn_jax import errors
from edmdbn_jax.models import edmdbn as edmdbn_lib
from edmdbn_jax.models import windows

BRANCH_KEYS = {"entire": "long_action_model", "detail": "short_action_model"}
LIGHTNING_PREFIX = "model."


def _flax_shapes(config: ml_collections.ConfigDict):
  """Parameter shapes of the Flax model for `config` (no compute)."""
  if config.model.motion != "pixel":
    raise errors.ConfigError(
        "The released model has no feature-subtraction block; only "
        "model.motion='pixel' configs can load its weights.")
  model = edmdbn_lib.from_config(config.model, dtype="float32")
  return edmdbn_lib.abstract_variables(model, config)


def _torch_key(path: Tuple[str, ...]) -> Tuple[str, str]:
  """Flax param path -> (torch key, kind of transform)."""
  top = path[0]
  if top == "head":
    return "head.1." + {"kernel": "weight", "bias": "bias"}[path[1]], (
        "linear" if path[1] == "kernel" else "copy")
  prefix = BRANCH_KEYS[top]
  rest = path[1:]
  leaf = rest[-1]
  if rest[0] == "patch_embed":
    if rest[1] == "proj":
      return f"{prefix}.patch_embed.proj.{'weight' if leaf == 'kernel' else 'bias'}", (
          "conv" if leaf == "kernel" else "copy")
    return f"{prefix}.patch_embed.norm.{'weight' if leaf == 'scale' else 'bias'}", "copy"
  if rest[0] == "norm":
    return f"{prefix}.norm.{'weight' if leaf == 'scale' else 'bias'}", "copy"
  # layers_{i}_blocks_{j} / layers_{i}_downsample / layers_{i}_sa_atten
  parts = rest[0].split("_")
  i = parts[1]
  if parts[2] == "blocks":
    j = parts[3]
    inner = ".".join(rest[1:-1])
    if leaf == "relative_position_bias_table":
      return f"{prefix}.layers.{i}.blocks.{j}.attn.relative_position_bias_table", "copy"
    name = {"kernel": "weight", "scale": "weight", "bias": "bias"}[leaf]
    kind = "linear" if leaf == "kernel" else "copy"
    return f"{prefix}.layers.{i}.blocks.{j}.{inner}.{name}", kind
  if parts[2] == "downsample":
    if rest[1] == "reduction":
      return f"{prefix}.layers.{i}.downsample.reduction.weight", "linear"
    return f"{prefix}.layers.{i}.downsample.norm.{'weight' if leaf == 'scale' else 'bias'}", "copy"
  if parts[2] == "sa":  # layers_{i}_sa_atten/proj
    if leaf == "kernel":
      return f"{prefix}.layers.{i}.sa_atten.conv.weight", "ta"
    return f"{prefix}.layers.{i}.sa_atten.conv.bias", "copy"
  raise KeyError(f"No torch name for Flax parameter {'/'.join(path)}")


def _to_flax(kind: str, w: np.ndarray, flax_shape) -> np.ndarray:
  if kind == "linear":
    return w.T
  if kind == "ta":
    return w.reshape(1, 2).T
  if kind == "conv":
    w = np.transpose(w, (2, 3, 4, 1, 0))  # (D, H, W, in, out)
    if len(flax_shape) == 4:  # 2D embedding: the tap that sees data
      w = w[0]
    return w
  return w


def _torch_shape(kind: str, flax_shape, config) -> Tuple[int, ...]:
  if kind == "linear":
    return tuple(flax_shape[::-1])
  if kind == "ta":
    return (1, 2, 1, 1, 1)
  if kind == "conv":
    if len(flax_shape) == 4:
      h, w, cin, cout = flax_shape
      d = int(config.model.patch_size[0])
    else:
      d, h, w, cin, cout = flax_shape
    return (cout, cin, d, h, w)
  return tuple(flax_shape)


def strip_prefix(state_dict: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Removes a Lightning checkpoint's 'model.' prefix when every key has it."""
  keys = list(state_dict)
  if keys and all(k.startswith(LIGHTNING_PREFIX) for k in keys):
    return {k[len(LIGHTNING_PREFIX):]: v for k, v in state_dict.items()}
  return dict(state_dict)


# The released model always builds a ViT (`vit_pos`, 6,508,550 parameters)
# that its forward pass calls only with `use_pos_vit`, which EDMDBN does not
# use: its weights are in every released state dict and are ignored here.
UNUSED_VIT_PREFIX = "vit_pos."


def _is_skipped(key: str, config: ml_collections.ConfigDict) -> bool:
  """Keys of the released state dict the Flax model has no parameter for."""
  if key.endswith(".relative_position_index") or ".sa_atten.down." in key:
    return True
  if key.startswith(UNUSED_VIT_PREFIX):
    return True
  # The released stages build Token Attention whether or not it is used, so
  # a model trained without it still saves its (unused) conv.
  return (".sa_atten.conv." in key
          and not config.model.accumulated_attention)


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       config: ml_collections.ConfigDict):
  """Released PyTorch state dict (numpy values) -> Flax variables.

  Args:
    state_dict: key -> array, in the released model's layout (optionally with
      a Lightning 'model.' prefix on every key).
    config: the toolkit config whose model the weights are for (its
      `model.*`, `data.image_size` and `data.num_frames` fix every shape).

  Returns:
    {'params': ...} for `edmdbn_jax.models.from_config(config.model)`.

  Raises:
    CheckpointError naming every missing, unexpected or misshapen key.
  """
  sd = {k: np.asarray(v) for k, v in strip_prefix(state_dict).items()}
  vit = [k for k in sd if k.startswith(UNUSED_VIT_PREFIX)]
  if vit:
    logging.info(
        "Ignoring %d '%s*' tensors (%d values): the ViT the released model "
        "builds but EDMDBN never calls.", len(vit), UNUSED_VIT_PREFIX,
        sum(sd[k].size for k in vit))
  shapes = _flax_shapes(config)["params"]
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  params = {}
  used, seen = set(), set()  # converted / known but misshapen
  missing, misshapen = [], []
  for path, leaf in flat:
    names = tuple(p.key for p in path)
    key, kind = _torch_key(names)
    if key not in sd:
      missing.append(key)
      continue
    want = _torch_shape(kind, leaf.shape, config)
    got = tuple(sd[key].shape)
    if got != want:
      misshapen.append(f"{key}: got {got}, expected {want}")
      seen.add(key)
      continue
    used.add(key)
    value = _to_flax(kind, sd[key], leaf.shape).astype(np.float32)
    node = params
    for n in names[:-1]:
      node = node.setdefault(n, {})
    node[names[-1]] = value
  unexpected = sorted(k for k in sd
                      if k not in used | seen and not _is_skipped(k, config))
  # Skipped keys must belong to the model: a duplicate of a downsample that
  # exists, and a buffer of a block that exists.
  for k in sd:
    if ".sa_atten.down." in k:
      twin = k.replace(".sa_atten.down.", ".downsample.")
      if twin not in sd:
        unexpected.append(k)
      elif twin in used and not np.array_equal(sd[k], sd[twin]):
        misshapen.append(f"{k}: differs from {twin} (they should be the "
                         "same tensor)")
    elif ".sa_atten.conv." in k and not config.model.accumulated_attention:
      stage = k.split(".sa_atten.conv.")[0]
      if f"{stage}.blocks.0.norm1.weight" not in used:
        unexpected.append(k)
    elif k.endswith(".relative_position_index"):
      table = k.replace("relative_position_index",
                        "relative_position_bias_table")
      if table not in used:
        unexpected.append(k)
  dropped_ta = sorted(k for k in sd if ".sa_atten.conv." in k
                      and k not in unexpected
                      and not config.model.accumulated_attention)
  if dropped_ta:
    logging.warning(
        "Not converted: %d Token Attention tensors (%s ...): the configured "
        "model has accumulated_attention=False. The released stages build "
        "them whether or not they are used; if this checkpoint was trained "
        "with Token Attention, import it with accumulated_attention=True, "
        "or the model computes another function.", len(dropped_ta),
        dropped_ta[0])
  def listed(items, sep):
    more = f"{sep}... ({len(items) - 10} more)" if len(items) > 10 else ""
    return sep.join(items[:10]) + more

  problems = []
  for branch in BRANCH_KEYS.values():
    # The most common cause, said in one line: another size of model.
    w = sd.get(f"{branch}.patch_embed.proj.weight")
    if w is not None and w.shape[0] != int(config.model.embed_dim):
      problems.append(
          f"the checkpoint's embedding width is {w.shape[0]}, the config's "
          f"model.embed_dim {config.model.embed_dim} (another config "
          "variant: paper is 128, tiny 32)")
      break
  if missing:
    problems.append(f"missing keys ({len(missing)}): {listed(missing, ', ')}")
  if unexpected:
    problems.append(f"unexpected keys ({len(unexpected)}): "
                    f"{listed(sorted(unexpected), ', ')}")
  if misshapen:
    problems.append(f"wrong shapes ({len(misshapen)}): "
                    f"{listed(misshapen, '; ')}")
  if problems:
    raise errors.CheckpointError(
        "The state dict does not match the configured model (check "
        "num_classes, branches, fusion, image_size and the config variant):\n  "
        + "\n  ".join(problems))
  return {"params": params}


def to_state_dict(variables, config: ml_collections.ConfigDict,
                  ) -> Dict[str, np.ndarray]:
  """Flax variables -> a state dict in the released model's layout.

  Includes the buffers, duplicate keys and unused Token Attention convs the
  released model saves. Not included: the released model's unused ViT
  (`vit_pos.*`), whose layout is not documented (its source is not part of
  the release); load with `strict=False` and check that the only missing
  keys start with `vit_pos.`. A 2D entire-branch embedding is written as the
  released (8, 4, 4) conv with zeros in the temporal taps that only ever
  see zero padding.
  """
  flat = jax.tree_util.tree_flatten_with_path(variables["params"])[0]
  sd = {}
  for path, leaf in flat:
    names = tuple(p.key for p in path)
    key, kind = _torch_key(names)
    w = np.asarray(leaf, np.float32)
    if kind == "linear":
      w = w.T
    elif kind == "ta":
      w = w.T.reshape(1, 2, 1, 1, 1)
    elif kind == "conv":
      if w.ndim == 4:
        d = int(config.model.patch_size[0])
        w = np.concatenate([w[None], np.zeros((d - 1,) + w.shape, w.dtype)])
      w = np.transpose(w, (4, 3, 0, 1, 2))
    sd[key] = w
    if kind == "copy" and key.endswith("relative_position_bias_table"):
      win = tuple(int(v) for v in config.model.window_size)
      sd[key.replace("bias_table", "index")] = windows.relative_position_index(
          win, win).astype(np.int64)
  # Every released stage builds Token Attention, used or not (model trained
  # without it: a placeholder conv, zeros, that its forward never calls),
  # and the Token Attention holds the stage's merge a second time.
  for branch in BRANCH_KEYS.values():
    for i in range(len(config.model.depths)):
      if f"{branch}.layers.{i}.blocks.0.norm1.weight" not in sd:
        continue
      ta = f"{branch}.layers.{i}.sa_atten.conv."
      if ta + "weight" not in sd:
        sd[ta + "weight"] = np.zeros((1, 2, 1, 1, 1), np.float32)
        sd[ta + "bias"] = np.zeros((1,), np.float32)
  for k in list(sd):
    if ".downsample." in k:
      sd[k.replace(".downsample.", ".sa_atten.down.")] = sd[k]
  return sd
