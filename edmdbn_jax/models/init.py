"""Initialisation schemes applied after `model.init` (`config.model.init`).

'paper' (the default) is what the modules' own initialisers give: truncated
normal std 0.02 for linear weights and relative-position tables (timm's
trunc_normal_(std=.02), cut at +-2 in absolute units, so a normal of std
0.02 in effect), zero biases, LayerNorm 1 / 0 (the paper,
shared/reference); the patch embeddings, for which the paper names no rule,
keep PyTorch's conv default with zero bias, the 2D entire-branch one drawn
as the released Conv3d's taps are (fan-in 8 * 4 * 4 * 3, as the 3D one).
'torch' is what the authors' released code runs:
its Swin backbone applies its truncated normal only when loading pretrained
weights, so every Linear and Conv keeps PyTorch's default,

  weight, bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))

(kaiming_uniform with a=sqrt(5) for the weight, the matching bound for the
bias), LayerNorm keeps 1 / 0, and only the relative-position tables are drawn
from timm's trunc_normal_(std=0.02), whose bounds are +-2 in absolute units:
a normal with std 0.02 in effect.

Written as a pure function of the parameter tree (names and shapes), so it
works under the fold `vmap` and needs no change to the modules.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp

SCHEMES = ("paper", "torch")


def _key_name(entry) -> str:
  return str(getattr(entry, "key", entry))


def torch_default(params, key, patch_size: Sequence[int] = (8, 4, 4)):
  """`params` re-drawn as the released PyTorch model initialises them.

  Args:
    params: the Flax parameter tree of an EDMDBN model.
    key: a PRNG key.
    patch_size: the config's patch size. A 2D entire-branch embedding
      (kernel (h, w, C, D)) stands for the released (d, h, w) Conv3d, whose
      fan-in counts the d temporal taps too.

  Returns:
    A tree of the same structure, shapes and dtypes.
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(params)
  # fan-in of each layer (the path without its leaf name) that has a kernel.
  fan_in = {}
  for path, leaf in flat:
    names = tuple(_key_name(p) for p in path)
    if names[-1] == "kernel":
      n = math.prod(leaf.shape[:-1])
      if ("patch_embed" in names and names[0] == "entire" and leaf.ndim == 4):
        n *= int(patch_size[0])
      fan_in[names[:-1]] = n
  keys = jax.random.split(key, len(flat))
  out = []
  for (path, leaf), k in zip(flat, keys):
    names = tuple(_key_name(p) for p in path)
    layer, name = names[:-1], names[-1]
    if name == "relative_position_bias_table":
      new = 0.02 * jax.random.truncated_normal(k, -100.0, 100.0, leaf.shape,
                                               jnp.float32)
    elif name in ("kernel", "bias") and layer in fan_in:
      bound = 1.0 / math.sqrt(fan_in[layer])
      new = jax.random.uniform(k, leaf.shape, jnp.float32, -bound, bound)
    else:
      new = leaf  # LayerNorm / GroupNorm scale and bias
    out.append(jnp.asarray(new, leaf.dtype))
  return jax.tree_util.tree_unflatten(treedef, out)


def apply(scheme: str, params, key, patch_size=(8, 4, 4)):
  """`params` under `scheme` ('paper': unchanged)."""
  if scheme == "paper":
    return params
  if scheme == "torch":
    return torch_default(params, key, patch_size)
  raise ValueError(f"model.init={scheme!r}; choose from {SCHEMES}.")
