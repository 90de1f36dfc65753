"""On-device training augmentation, one random draw per clip.

The paper's online augmentation, as the released code chains it
(torchvision): horizontal flip (p = 0.5), then `RandomRotation(4)` (a
rotation in [-4, +4] degrees about the centre, nearest neighbour, black
outside the rotated image), then `RandomCrop(S, padding=4,
padding_mode='edge')` (a shift of up to 4 px with edge values). The chain is
one map of the sampling grid, so every frame of a clip is resampled once
with the same map and motion between frames is kept: nearest neighbour only
moves pixels, it never blends them (bilinear resampling low-pass filters the
frame differences of every training clip, about 40 % of their high-frequency
content at 224 px, while held-out clips stay sharp).
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


def transform_clip(clip, flip, shift, angle):
  """One clip (k, H, W, C) through one flip / rotation / crop draw.

  Output pixel p = (y, x) is the crop of the edge-padded rotated image:
  q = clamp(p + shift). The rotated image at q is the flipped image at the
  nearest pixel to R(angle) q about the centre, or 0 when that falls outside
  the image; the flipped image at (y, x) is the clip at (y, W - 1 - x).
  Pixel for pixel what torchvision's hflip, rotate (NEAREST, fill 0) and an
  edge-padded crop give (tests/test_augment.py).
  """
  h, w = clip.shape[1:3]
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                        jnp.arange(w, dtype=jnp.float32), indexing="ij")
  yy = jnp.clip(yy + shift[0], 0.0, h - 1.0)
  xx = jnp.clip(xx + shift[1], 0.0, w - 1.0)
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  # A positive angle turns the image counter-clockwise, as torchvision's.
  c, s = jnp.cos(angle), jnp.sin(angle)
  ys = jnp.round(cy + c * (yy - cy) + s * (xx - cx)).astype(jnp.int32)
  xs = jnp.round(cx - s * (yy - cy) + c * (xx - cx)).astype(jnp.int32)
  inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
  ys = jnp.clip(ys, 0, h - 1)
  xs = jnp.clip(xs, 0, w - 1)
  xs = jnp.where(flip, (w - 1) - xs, xs)
  out = clip[:, ys, xs]
  return jnp.where(inside[None, ..., None], out, jnp.zeros_like(out))


def augment(key, clips):
  """clips (B, k, H, W, C) float -> same shape; deterministic given key."""
  flip, shift, angle = draw(key, clips.shape[0])
  return jax.vmap(transform_clip)(clips, flip, shift, angle)
