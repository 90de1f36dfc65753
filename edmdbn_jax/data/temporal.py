"""Temporal normalisation: which stored frames a clip uses and how they mix.

A dataset stores, per clip, a handful of aligned frames with the onset, apex
and offset among them. The model wants T+1 frames (detail branch) and the
onset and apex (entire branch). A `TemporalPlan` says which k stored frames to
gather and the (T+1, k) weights that turn them into the T+1 frames, so the
whole temporal normalisation is a gather plus a small matrix product that runs
on device (`assemble`). Modes:

* `keyframes` (the paper's text): onset, apex and offset linearly
  interpolated to T+1 frames. The three keyframes sit at output positions
  0, T/2 and T (align-corners interpolation over the three keyframes), so the
  first half of the clip moves onset -> apex and the second half apex ->
  offset. k = 3.
* `reference` (the released code): only onset and apex, linearly resampled to
  T+1 frames with align_corners=False: output frame i samples source position
  clip((i + 0.5) * 2 / (T+1) - 0.5, 0, 1). For T = 8 the 8 differences are
  (apex - onset) x [0, .056, .222, .222, .222, .222, .056, 0]. k = 2.
* `uniform`: T+1 real stored frames sampled evenly *in time* from onset to
  offset (the stored frame whose original frame number is nearest to each
  evenly spaced number, so frames missing on disk or a subsampled store do
  not skew the spacing; repeats when fewer are stored), plus the apex
  gathered with zero weight for the entire branch. k = T+2.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from edmdbn_jax import errors
from edmdbn_jax.data import motion

MODES = ("keyframes", "reference", "uniform")


@dataclasses.dataclass(frozen=True)
class TemporalPlan:
  indices: np.ndarray       # int32 (k,) stored frames to gather
  weights: np.ndarray       # float32 (T+1, k) mixing into T+1 frames
  keyframe_pos: np.ndarray  # int32 (2,) gathered positions of onset, apex


def num_gathered(mode: str, num_frames: int) -> int:
  if mode == "keyframes":
    return 3
  if mode == "reference":
    return 2
  if mode == "uniform":
    return num_frames + 2
  raise errors.ConfigError(f"temporal mode {mode!r}; choose from {MODES}")


def _interp_weights(positions: np.ndarray, num_sources: int) -> np.ndarray:
  """Linear interpolation weights (len(positions), num_sources)."""
  w = np.zeros((len(positions), num_sources), np.float64)
  for i, p in enumerate(positions):
    lo = int(np.floor(p))
    hi = min(lo + 1, num_sources - 1)
    frac = p - lo
    w[i, lo] += 1.0 - frac
    w[i, hi] += frac
  return w


def plan(onset: int, apex: int, offset: int, num_stored: int,
         num_frames: int = 8, mode: str = "keyframes",
         frame_numbers=None) -> TemporalPlan:
  """The plan of one clip; indices are into its stored frames.

  `frame_numbers`: the stored frames' original frame numbers (increasing),
  for `uniform`; None: evenly spaced.
  """
  if not 0 <= onset <= apex <= offset < num_stored:
    raise errors.DataError(
        f"Keyframes must satisfy 0 <= onset <= apex <= offset < stored "
        f"frames; got onset={onset}, apex={apex}, offset={offset}, "
        f"{num_stored} stored frames.")
  t1 = num_frames + 1
  if mode == "keyframes":
    indices = np.array([onset, apex, offset])
    pos = np.linspace(0.0, 2.0, t1)
    weights = _interp_weights(pos, 3)
    keyframe_pos = np.array([0, 1])
  elif mode == "reference":
    indices = np.array([onset, apex])
    pos = np.clip((np.arange(t1) + 0.5) * 2.0 / t1 - 0.5, 0.0, 1.0)
    weights = _interp_weights(pos, 2)
    keyframe_pos = np.array([0, 1])
  elif mode == "uniform":
    numbers = (np.arange(num_stored, dtype=np.float64)
               if frame_numbers is None
               else np.asarray(frame_numbers, np.float64))
    if len(numbers) != num_stored or np.any(np.diff(numbers) <= 0):
      raise errors.DataError(
          f"frame_numbers must be {num_stored} increasing numbers; got "
          f"{list(numbers)}.")
    span = np.arange(onset, offset + 1)
    targets = np.linspace(numbers[onset], numbers[offset], t1)
    real = span[np.argmin(np.abs(numbers[span][None, :] - targets[:, None]),
                          axis=1)]
    indices = np.concatenate([real, [apex]])
    weights = np.concatenate([np.eye(t1), np.zeros((t1, 1))], axis=1)
    keyframe_pos = np.array([0, t1])
  else:
    raise errors.ConfigError(f"temporal mode {mode!r}; choose from {MODES}")
  return TemporalPlan(indices.astype(np.int32), weights.astype(np.float32),
                      keyframe_pos.astype(np.int32))


def assemble(gathered, weights, keyframe_pos):
  """Gathered frames -> normalised model inputs (jittable).

  Args:
    gathered: (B, k, H, W, 3) frames in [0, 255] (uint8 or float).
    weights: (B, T+1, k) from the clips' plans.
    keyframe_pos: (B, 2) gathered positions of onset and apex.

  Returns:
    frames (B, T+1, H, W, 3) and keyframes (B, 2, H, W, 3), ImageNet-
    normalised float32. Normalisation is affine, so normalising the mixed
    frames equals mixing normalised frames (the weights sum to 1).
  """
  x = jnp.asarray(gathered, jnp.float32)
  frames = jnp.einsum("btk,bkhwc->bthwc", jnp.asarray(weights, jnp.float32),
                      x)
  keyframes = jnp.take_along_axis(
      x, jnp.asarray(keyframe_pos)[:, :, None, None, None], axis=1)
  return motion.normalize(frames), motion.normalize(keyframes)
