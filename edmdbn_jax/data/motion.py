"""Frame normalisation and motion extraction (pure JAX functions).

Shapes use B batch, T number of detail-motion frames, H, W image size and C = 3
RGB channels, channels last. Normalisation happens before differencing, as in
the paper; since it is affine with the same statistics per frame, the order
only matters for the constant offset, which differencing removes anyway.
"""

import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(frames, dtype=jnp.float32):
  """uint8 (or [0, 255] float) RGB frames (..., C) -> ImageNet-normalised."""
  x = jnp.asarray(frames).astype(dtype) / 255.0
  mean = jnp.asarray(IMAGENET_MEAN, dtype)
  std = jnp.asarray(IMAGENET_STD, dtype)
  return (x - mean) / std


def entire_motion(keyframes):
  """(B, 2, H, W, C) [onset, apex] -> (B, H, W, C) apex - onset."""
  return keyframes[:, 1] - keyframes[:, 0]


def detail_motion(frames):
  """(B, T+1, H, W, C) -> (B, T, H, W, C) adjacent differences F[i+1] - F[i]."""
  return frames[:, 1:] - frames[:, :-1]
