"""EDMDBN: the entire-detail motion dual-branch network (Flax Linen).

Inputs are ImageNet-normalised RGB, channels last:
  frames:    (B, T+1, H, W, 3) the temporally normalised clip (detail branch).
  keyframes: (B, 2, H, W, 3) [onset, apex] (entire branch).

Pipeline (paper and released model):
  entire motion  E = apex - onset                     (B, H, W, 3)
  detail motion  D = frames[1:] - frames[:-1]         (B, T, H, W, 3)
  each through its own Swin backbone with Token Attention
  -> entire (B, 1, h, w, C), detail (B, T/8, h, w, C)
  -> detail averaged over its temporal tokens, fused with entire (add/concat)
  -> flatten channel-major (C, h, w) -> linear head -> logits (B, K).

`motion='feature'` is the paper's Table 7 "feature subtraction" variant: a
learnable ResNet basic block (3 -> 3 channels, per branch) is applied to every
frame before the differences are taken.

The module is written in `setup` style so that its stages can be called
separately: `features` (everything up to the fused map) and `classify` (the
head), which Grad-CAM uses to differentiate the logits w.r.t. the fused map.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from edmdbn_jax import errors
from edmdbn_jax.data import motion as motion_lib
from edmdbn_jax.models import swin3d

Dtype = Any

BRANCHES = ("both", "entire", "detail")
FUSIONS = ("add", "concat")
MOTIONS = ("pixel", "feature")
ENTIRE_EMBEDS = ("2d", "3d")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class BasicBlock(nn.Module):
  """ResNet basic block on single frames, 3 -> 3 channels (motion='feature').

  conv3x3 -> GroupNorm -> ReLU -> conv3x3 -> GroupNorm -> + identity -> ReLU.
  GroupNorm (one group) stands in for BatchNorm so the block has no batch
  statistics: training and evaluation compute the same function of one clip,
  and the train step stays a pure function of parameters.
  """
  channels: int = 3
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x: (..., H, W, C) -> (..., H, W, C)."""
    lead = x.shape[:-3]
    y = x.reshape((-1,) + x.shape[-3:])
    r = y
    y = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False,
                dtype=self.dtype, kernel_init=swin3d.torch_default,
                name="conv1")(y)
    y = nn.GroupNorm(num_groups=1, epsilon=1e-5, dtype=self.dtype,
                     name="norm1")(y)
    y = nn.relu(y)
    y = nn.Conv(self.channels, (3, 3), padding=1, use_bias=False,
                dtype=self.dtype, kernel_init=swin3d.torch_default,
                name="conv2")(y)
    y = nn.GroupNorm(num_groups=1, epsilon=1e-5, dtype=self.dtype,
                     name="norm2")(y)
    y = nn.relu(y + r)
    return y.reshape(lead + y.shape[-3:])


def channel_major_flatten(x):
  """(B, h, w, C) -> (B, C*h*w) in (C, h, w) order, as the released head."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class EDMDBN(nn.Module):
  """The dual-branch network. See the module docstring for shapes."""
  num_classes: int = 5
  embed_dim: int = 128
  depths: tuple = (2, 2, 6)
  num_heads: tuple = (4, 8, 16)
  window_size: tuple = (8, 7, 7)
  patch_size: tuple = (8, 4, 4)
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  patch_norm: bool = True
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.2
  accumulated_attention: bool = True
  branches: str = "both"
  fusion: str = "add"
  motion: str = "pixel"
  entire_patch_embed: str = "2d"
  gradcam_hooks: bool = False  # see SwinBackbone3D; set by edmdbn_jax.explain
  dtype: Dtype = jnp.float32

  def setup(self):
    if self.branches not in BRANCHES:
      raise ValueError(f"branches={self.branches!r}; choose from {BRANCHES}")
    if self.fusion not in FUSIONS:
      raise ValueError(f"fusion={self.fusion!r}; choose from {FUSIONS}")
    if self.motion not in MOTIONS:
      raise ValueError(f"motion={self.motion!r}; choose from {MOTIONS}")
    if self.entire_patch_embed not in ENTIRE_EMBEDS:
      raise ValueError(f"entire_patch_embed={self.entire_patch_embed!r}; "
                       f"choose from {ENTIRE_EMBEDS}")

    def backbone(patch, fan_in_taps=1):
      return swin3d.SwinBackbone3D(
          embed_dim=self.embed_dim, depths=tuple(self.depths),
          num_heads=tuple(self.num_heads), window_size=tuple(self.window_size),
          patch_size=patch, patch_fan_in_taps=fan_in_taps,
          mlp_ratio=self.mlp_ratio, qkv_bias=self.qkv_bias,
          patch_norm=self.patch_norm, drop_rate=self.drop_rate,
          attn_drop_rate=self.attn_drop_rate,
          drop_path_rate=self.drop_path_rate,
          token_attention=self.accumulated_attention, accumulate=True,
          gradcam_hooks=self.gradcam_hooks, dtype=self.dtype)

    patch = tuple(self.patch_size)
    if self.branches in ("both", "entire"):
      # A 2D embedding stands for the released conv zero-padded to depth
      # patch[0]: it is initialised as that conv's taps are.
      self.entire = (backbone(patch[1:], fan_in_taps=patch[0])
                     if self.entire_patch_embed == "2d" else backbone(patch))
      if self.motion == "feature":
        self.entire_block = BasicBlock(dtype=self.dtype)
    if self.branches in ("both", "detail"):
      self.detail = backbone(patch)
      if self.motion == "feature":
        self.detail_block = BasicBlock(dtype=self.dtype)
    self.head = nn.Dense(self.num_classes, dtype=self.dtype,
                         kernel_init=swin3d.trunc_normal,
                         bias_init=nn.initializers.zeros)

  def motions(self, frames, keyframes):
    """Returns (entire (B, H, W, 3) or None, detail (B, T, H, W, 3) or None)."""
    # Pixel motion is differenced in float32 and then cast: in bfloat16 a
    # one-grey-level difference of normalised frames (about 0.017 at values
    # near 2) is close to the format's spacing there, so casting first
    # loses most of the signal (relative error 0.055 against 0.002).
    entire = detail = None
    if self.branches in ("both", "entire"):
      if self.motion == "feature":
        entire = motion_lib.entire_motion(
            self.entire_block(keyframes.astype(self.dtype)))
      else:
        entire = motion_lib.entire_motion(
            keyframes.astype(jnp.float32)).astype(self.dtype)
    if self.branches in ("both", "detail"):
      if self.motion == "feature":
        detail = motion_lib.detail_motion(
            self.detail_block(frames.astype(self.dtype)))
      else:
        detail = motion_lib.detail_motion(
            frames.astype(jnp.float32)).astype(self.dtype)
    return entire, detail

  def features(self, frames, keyframes, train: bool = False):
    """Everything up to the fused map.

    Returns:
      (fused (B, h, w, C_fused), out) with out['entire'] / out['detail'] the
      branches' named intermediates (see SwinBackbone3D), out['fused'].
    """
    out = {}
    entire, detail = self.motions(frames, keyframes)
    maps = []
    if entire is not None:
      if self.entire_patch_embed == "3d":
        entire = entire[:, None]  # a depth-1 clip, zero-padded by the embed
      e, out["entire"] = self.entire(entire, train=train)
      maps.append(e[:, 0])
    if detail is not None:
      d, out["detail"] = self.detail(detail, train=train)
      maps.append(jnp.mean(d, axis=1))  # temporal average pooling
    if len(maps) == 1:
      fused = maps[0]
    elif self.fusion == "add":
      fused = maps[0] + maps[1]
    else:
      fused = jnp.concatenate(maps, axis=-1)
    out["fused"] = fused
    return fused, out

  def classify(self, fused):
    """(B, h, w, C) fused map -> float32 logits (B, K)."""
    return self.head(channel_major_flatten(fused)).astype(jnp.float32)

  def __call__(self, frames, keyframes, train: bool = False):
    """Returns (logits (B, K) float32, out) with named intermediates."""
    fused, out = self.features(frames, keyframes, train=train)
    logits = self.classify(fused)
    out["logits"] = logits
    return logits, out


def from_config(model_config: ml_collections.ConfigDict,
                dtype: Optional[str] = None) -> EDMDBN:
  """Builds EDMDBN from `config.model` (see edmdbn_jax/configs/edmdbn.py)."""
  m = model_config
  name = dtype or m.get("dtype", "float32")
  if name not in DTYPES:
    raise errors.ConfigError(
        f"model.dtype={name!r}; choose from {sorted(DTYPES)}")
  # Checked here too (setup checks again), so a bad config fails when the
  # model is built, before any work, with a ConfigError.
  for key, choices in (("branches", BRANCHES), ("fusion", FUSIONS),
                       ("motion", MOTIONS),
                       ("entire_patch_embed", ENTIRE_EMBEDS)):
    if m[key] not in choices:
      raise errors.ConfigError(
          f"model.{key}={m[key]!r}; choose from {choices}.")
  return EDMDBN(
      num_classes=int(m.num_classes), embed_dim=int(m.embed_dim),
      depths=tuple(m.depths), num_heads=tuple(m.num_heads),
      window_size=tuple(m.window_size), patch_size=tuple(m.patch_size),
      mlp_ratio=float(m.mlp_ratio), qkv_bias=bool(m.qkv_bias),
      patch_norm=bool(m.patch_norm), drop_rate=float(m.drop_rate),
      attn_drop_rate=float(m.attn_drop_rate),
      drop_path_rate=float(m.drop_path_rate),
      accumulated_attention=bool(m.accumulated_attention),
      branches=m.branches, fusion=m.fusion, motion=m.motion,
      entire_patch_embed=m.entire_patch_embed, dtype=DTYPES[name])


def input_specs(config: ml_collections.ConfigDict, batch: int = 1):
  """Abstract (frames, keyframes) inputs for `config.data` at `batch`."""
  s = int(config.data.image_size)
  t = int(config.data.num_frames)
  return (jax.ShapeDtypeStruct((batch, t + 1, s, s, 3), jnp.float32),
          jax.ShapeDtypeStruct((batch, 2, s, s, 3), jnp.float32))


def abstract_variables(model: EDMDBN, config: ml_collections.ConfigDict):
  """The model's variables as shapes only (no compute, no memory)."""
  return jax.eval_shape(model.init, jax.random.key(0), *input_specs(config))
