"""On-device training augmentation, one random draw per clip.

The paper's online augmentation: horizontal flip, random crop (the released
code pads 4 px with edge values and crops back to H x W) and a rotation in
[-4, +4] degrees. All three are one affine map of the sampling grid, so each
clip is resampled once (bilinear, coordinates clamped to the border = edge
padding) and every frame of the clip gets the same map, which keeps motion
between frames intact.
"""

import jax
import jax.numpy as jnp

PAD = 4
MAX_DEGREES = 4.0


def draw(key, batch: int):
  """Random parameters per clip: flip (bool), shift (2,) px, angle (rad)."""
  kf, ks, ka = jax.random.split(key, 3)
  flip = jax.random.bernoulli(kf, 0.5, (batch,))
  shift = jax.random.randint(ks, (batch, 2), -PAD, PAD + 1).astype(jnp.float32)
  angle = jax.random.uniform(ka, (batch,), minval=-MAX_DEGREES,
                             maxval=MAX_DEGREES) * (jnp.pi / 180.0)
  return flip, shift, angle


def _bilinear(img, ys, xs):
  """img (k, H, W, C); ys, xs (H, W) source coordinates, clamped."""
  h, w = img.shape[1:3]
  ys = jnp.clip(ys, 0.0, h - 1.0)
  xs = jnp.clip(xs, 0.0, w - 1.0)
  y0 = jnp.floor(ys)
  x0 = jnp.floor(xs)
  wy = (ys - y0)[None, ..., None]
  wx = (xs - x0)[None, ..., None]
  y0 = y0.astype(jnp.int32)
  x0 = x0.astype(jnp.int32)
  y1 = jnp.minimum(y0 + 1, h - 1)
  x1 = jnp.minimum(x0 + 1, w - 1)
  g = lambda yy, xx: img[:, yy, xx]
  return ((1 - wy) * ((1 - wx) * g(y0, x0) + wx * g(y0, x1))
          + wy * ((1 - wx) * g(y1, x0) + wx * g(y1, x1)))


def transform_clip(clip, flip, shift, angle):
  """One clip (k, H, W, C) through one flip / crop / rotation draw.

  Output pixel (y, x) samples the input at R(angle) about the centre of
  (y + dy, x' + dx), where x' = W - 1 - x when flipped. A crop of the
  4-px edge-padded image at offset (PAD + dy, PAD + dx) is exactly a shift
  by (dy, dx) with clamped coordinates.
  """
  h, w = clip.shape[1:3]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                        jnp.arange(w, dtype=jnp.float32), indexing="ij")
  xx = jnp.where(flip, (w - 1) - xx, xx)
  yy = yy + shift[0]
  xx = xx + shift[1]
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  c, s = jnp.cos(angle), jnp.sin(angle)
  ys = cy + c * (yy - cy) - s * (xx - cx)
  xs = cx + s * (yy - cy) + c * (xx - cx)
  return _bilinear(clip, ys, xs).astype(clip.dtype)


def augment(key, clips):
  """clips (B, k, H, W, C) float -> same shape; deterministic given key."""
  flip, shift, angle = draw(key, clips.shape[0])
  return jax.vmap(transform_clip)(clips, flip, shift, angle)
