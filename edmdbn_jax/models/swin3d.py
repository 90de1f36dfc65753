"""Video Swin building blocks in Flax Linen (channels-last).

Matches the released PyTorch model's semantics: pre-norm blocks, exact (erf)
GELU, LayerNorm eps 1e-5, relative position bias from a table of the nominal
window, cyclic shift with -100 masks, zero padding to window multiples after
norm1, patch merging order (0,0),(1,0),(0,1),(1,1). Modules own parameters;
the geometry lives in `edmdbn_jax.models.windows`.
"""

import functools
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmdbn_jax.models import windows as W
from edmdbn_jax.models.token_attention import TokenAttention

Dtype = Any

LN_EPS = 1e-5  # PyTorch's LayerNorm default.
# timm's trunc_normal_(std=.02), which the Swin codes use: a normal of std
# 0.02 cut at +-2 in absolute units (100 std), so in effect untruncated.
# JAX's truncated_normal(stddev) cuts at +-2 stddev by default, which
# leaves a std of 0.0176.
trunc_normal = nn.initializers.truncated_normal(stddev=0.02, lower=-100.0,
                                                upper=100.0)


def torch_default_init(fan_in_taps: int = 1):
  """PyTorch's default Conv/Linear init (kaiming_uniform with a=sqrt(5)),
  U(+-1/sqrt(fan_in)), for a kernel standing for a conv with `fan_in_taps`
  times its own fan-in (see PatchProjection)."""
  return nn.initializers.variance_scaling(1 / (3 * fan_in_taps), "fan_in",
                                          "uniform")


torch_default = torch_default_init()

LayerNorm = functools.partial(nn.LayerNorm, epsilon=LN_EPS)
Dense = functools.partial(nn.Dense, kernel_init=trunc_normal,
                          bias_init=nn.initializers.zeros)


def gelu(x):
  return jax.nn.gelu(x, approximate=False)


class DropPath(nn.Module):
  """Stochastic depth: drops whole residual paths per sample in training."""
  rate: float

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    rng = self.make_rng("dropout")
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


class Mlp(nn.Module):
  hidden: int
  drop: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    out = x.shape[-1]
    x = Dense(self.hidden, dtype=self.dtype, name="fc1")(x)
    x = gelu(x)
    x = nn.Dropout(self.drop)(x, deterministic=deterministic)
    x = Dense(out, dtype=self.dtype, name="fc2")(x)
    return nn.Dropout(self.drop)(x, deterministic=deterministic)


def window_attention_logits(q, k, bias, mask=None):
  """Attention logits inside windows: q k^T + relative bias (+ shift mask).

  Args:
    q, k: (B_, heads, N, d) with B_ = batch * nW (q already scaled).
    bias: (heads, N, N) relative position bias.
    mask: optional (nW, N, N) additive mask; B_ must be a multiple of nW
      with windows ordered batch-major.

  Returns:
    float32 logits (B_, heads, N, N).
  """
  logits = jnp.einsum("bhqd,bhkd->bhqk", q, k).astype(jnp.float32)
  logits = logits + bias[None].astype(jnp.float32)
  if mask is not None:
    nw = mask.shape[0]
    logits = logits.reshape((-1, nw) + logits.shape[1:])
    logits = logits + jnp.asarray(mask)[None, :, None]
    logits = logits.reshape((-1,) + logits.shape[2:])
  return logits


class WindowAttention3D(nn.Module):
  """Window multi-head self-attention with relative position bias.

  Attributes:
    num_heads: attention heads.
    table_window: the nominal window; the bias table has
      (2wd-1)(2wh-1)(2ww-1) rows for it, whatever window is used.
  """
  num_heads: int
  table_window: Tuple[int, int, int]
  qkv_bias: bool = True
  attn_drop: float = 0.0
  proj_drop: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, window, mask=None, deterministic: bool = True):
    """x: (B_, N, C) tokens of B_ windows of shape `window` -> (B_, N, C)."""
    b, n, c = x.shape
    heads = self.num_heads
    head_dim = c // heads
    table = self.param("relative_position_bias_table", trunc_normal,
                       (W.bias_table_size(self.table_window), heads),
                       jnp.float32)
    index = W.relative_position_index(window, self.table_window)
    bias = jnp.take(table, index.reshape(-1), axis=0).reshape(n, n, heads)
    bias = jnp.transpose(bias, (2, 0, 1))

    qkv = Dense(3 * c, use_bias=self.qkv_bias, dtype=self.dtype,
                name="qkv")(x)
    qkv = qkv.reshape(b, n, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q = q * (head_dim ** -0.5)
    logits = window_attention_logits(q, k, bias, mask)
    attn = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    attn = nn.Dropout(self.attn_drop)(attn, deterministic=deterministic)
    y = jnp.einsum("bhqk,bhkd->bqhd", attn, v).reshape(b, n, c)
    y = Dense(c, dtype=self.dtype, name="proj")(y)
    return nn.Dropout(self.proj_drop)(y, deterministic=deterministic)


class SwinBlock3D(nn.Module):
  """Pre-norm (shifted-)window attention block + MLP, both residual."""
  num_heads: int
  window_size: Tuple[int, int, int]
  shift_size: Tuple[int, int, int] = (0, 0, 0)
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop: float = 0.0
  attn_drop: float = 0.0
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    """x: (B, D, H, W, C) -> (B, D, H, W, C)."""
    b, d, h, w, c = x.shape
    window, shift = W.effective_window((d, h, w), self.window_size,
                                       self.shift_size)
    size = W.padded_size((d, h, w), window)

    shortcut = x
    y = LayerNorm(dtype=self.dtype, name="norm1")(x)
    y = jnp.pad(y, ((0, 0), (0, size[0] - d), (0, size[1] - h),
                    (0, size[2] - w), (0, 0)))
    mask = None
    if any(s > 0 for s in shift):
      y = jnp.roll(y, shift=tuple(-s for s in shift), axis=(1, 2, 3))
      mask = W.compute_mask(size, window, shift)
    y = W.window_partition(y, window)
    y = WindowAttention3D(
        self.num_heads, self.window_size, self.qkv_bias, self.attn_drop,
        self.drop, dtype=self.dtype, name="attn")(
            y, window, mask, deterministic)
    y = W.window_reverse(y, window, b, size)
    if mask is not None:
      y = jnp.roll(y, shift=shift, axis=(1, 2, 3))
    y = y[:, :d, :h, :w]
    x = shortcut + DropPath(self.drop_path)(y, deterministic)

    y = LayerNorm(dtype=self.dtype, name="norm2")(x)
    y = Mlp(int(c * self.mlp_ratio), self.drop, dtype=self.dtype,
            name="mlp")(y, deterministic)
    return x + DropPath(self.drop_path)(y, deterministic)


class PatchProjection(nn.Module):
  """A convolution whose stride is its kernel, written as one matmul.

  The same parameters as `nn.Conv(features, patch, strides=patch,
  padding='VALID')` ('kernel' (*patch, C_in, features) and 'bias', the same
  names, shapes and initial values) and the same function up to float
  rounding: the input is cut into non-overlapping patches, each flattened
  in (patch..., C_in) order, and multiplied by the flattened kernel. Why: a
  `vmap` over the fold axis (each fold its own kernel) turns a convolution
  into a grouped convolution (feature_group_count = folds, also in its
  gradients), which backends run on slower special kernels than the batched
  matmul this becomes.
  """
  features: int
  patch_size: Tuple[int, ...]
  # Temporal taps of the conv this kernel stands for: a 2D kernel standing
  # for the released zero-padded (d, h, w) Conv3d is drawn as that conv's
  # taps are, PyTorch's default with fan-in d * h * w * C_in (not h * w *
  # C_in, which would start it sqrt(d) times larger).
  fan_in_taps: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x: (B, *spatial, C_in), spatial multiples of the patch ->
    (B, *spatial / patch, features)."""
    cin = x.shape[-1]
    n = len(self.patch_size)
    kernel = self.param("kernel", torch_default_init(self.fan_in_taps),
                        (*self.patch_size, cin, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,),
                      jnp.float32)
    grid = [s // p for s, p in zip(x.shape[1:-1], self.patch_size)]
    split = [x.shape[0]]
    for g, p in zip(grid, self.patch_size):
      split += [g, p]
    x = x.reshape(split + [cin])
    # (B, g1, p1, g2, p2, ..., C) -> (B, g1, g2, ..., p1, p2, ..., C).
    x = x.transpose([0] + [1 + 2 * i for i in range(n)]
                    + [2 + 2 * i for i in range(n)] + [1 + 2 * n])
    x = x.reshape([x.shape[0]] + grid + [-1]).astype(self.dtype)
    y = jnp.dot(x, kernel.reshape(-1, self.features).astype(self.dtype))
    return y + bias.astype(self.dtype)


class PatchEmbed(nn.Module):
  """Non-overlapping patch embedding, 3D (clips) or 2D (single images).

  3D: (B, D, H, W, 3) -> (B, D/pd, H/ph, W/pw, C), zero-padding D, H, W at the
  end to multiples of the patch, as the released model does.
  2D: (B, H, W, 3) -> (B, 1, H/ph, W/pw, C) with a (ph, pw) kernel. On a
  single image this is the same function as the 3D embedding of a depth-1
  clip zero-padded to depth pd (only the first temporal tap sees data).
  """
  embed_dim: int
  patch_size: Tuple[int, ...]
  norm: bool = True
  fan_in_taps: int = 1  # see PatchProjection
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    spatial = x.shape[1:-1]
    pads = [(0, 0)] + [(0, -s % p) for s, p in zip(spatial, self.patch_size)]
    x = jnp.pad(x, pads + [(0, 0)])
    x = PatchProjection(self.embed_dim, tuple(self.patch_size),
                        fan_in_taps=self.fan_in_taps, dtype=self.dtype,
                        name="proj")(x)
    if x.ndim == 4:
      x = x[:, None]
    if self.norm:
      x = LayerNorm(dtype=self.dtype, name="norm")(x)
    return x


def merge_neighbours(x):
  """(B, D, H, W, C) -> (B, D, ceil(H/2), ceil(W/2), 4C).

  Odd H or W are zero-padded. The four 2x2 neighbours are concatenated in the
  order (0,0), (1,0), (0,1), (1,1) as (row offset, column offset).
  """
  h, w = x.shape[2:4]
  x = jnp.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)))
  return jnp.concatenate(
      [x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2],
       x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], axis=-1)


class PatchMerging(nn.Module):
  """2x2 spatial merge -> LayerNorm(4C) -> bias-free linear 4C -> 2C."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = merge_neighbours(x)
    x = LayerNorm(dtype=self.dtype, name="norm")(x)
    return Dense(2 * c, use_bias=False, dtype=self.dtype,
                 name="reduction")(x)


class SwinBackbone3D(nn.Module):
  """One EDMDBN branch: patch embedding, Swin stages with Token Attention.

  Order: patch embedding -> LayerNorm -> for each stage: blocks -> Token
  Attention (when on) -> patch merging (all but the last stage) -> final
  LayerNorm.

  Returns (features (B, D', H', W', C_last), out) where `out` holds named
  intermediates: 'stage{i}' (stage output after Token Attention, before
  merging), 'attention{i}' (accumulated map (B, D, H, W, 1)), 'features'.
  """
  embed_dim: int = 128
  depths: Sequence[int] = (2, 2, 6)
  num_heads: Sequence[int] = (4, 8, 16)
  window_size: Tuple[int, int, int] = (8, 7, 7)
  patch_size: Tuple[int, ...] = (8, 4, 4)
  # Temporal taps a 2D patch embedding stands for (see PatchProjection).
  patch_fan_in_taps: int = 1
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  patch_norm: bool = True
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.2
  token_attention: bool = True
  accumulate: bool = True
  # Adds a zero 'perturbations' variable to the final features so Grad-CAM
  # can differentiate w.r.t. them (Flax's `perturb`); off for training.
  gradcam_hooks: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    deterministic = not train
    out = {}
    x = PatchEmbed(self.embed_dim, tuple(self.patch_size), self.patch_norm,
                   fan_in_taps=self.patch_fan_in_taps, dtype=self.dtype,
                   name="patch_embed")(x)
    x = nn.Dropout(self.drop_rate)(x, deterministic=deterministic)
    dpr = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
    shift = tuple(w // 2 for w in self.window_size)
    attention = None
    start = 0
    for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads)):
      for j in range(depth):
        x = SwinBlock3D(
            heads, tuple(self.window_size),
            (0, 0, 0) if j % 2 == 0 else shift,
            self.mlp_ratio, self.qkv_bias, self.drop_rate,
            self.attn_drop_rate, dpr[start + j], dtype=self.dtype,
            name=f"layers_{i}_blocks_{j}")(x, deterministic)
      start += depth
      if self.token_attention:
        x, attention = TokenAttention(
            self.accumulate, dtype=self.dtype, name=f"layers_{i}_sa_atten")(
                x, attention)
        out[f"attention{i + 1}"] = attention
      out[f"stage{i + 1}"] = x
      if i < len(self.depths) - 1:
        x = PatchMerging(dtype=self.dtype, name=f"layers_{i}_downsample")(x)
    x = LayerNorm(dtype=self.dtype, name="norm")(x)
    if self.gradcam_hooks:
      x = self.perturb("features", x)
    out["features"] = x
    return x, out
