"""Temporal plans and on-device assembly; motion extraction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmdbn_jax import errors
from edmdbn_jax.data import motion
from edmdbn_jax.data import temporal


def _clip(n=12, size=4, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (n, size, size, 3))


def _run(p, clip):
  gathered = clip[p.indices][None].astype(np.float32)
  frames, keyframes = temporal.assemble(gathered, p.weights[None],
                                        p.keyframe_pos[None])
  return np.asarray(frames[0]), np.asarray(keyframes[0])


def test_reference_mode_matches_released_code():
  clip = _clip()
  p = temporal.plan(2, 7, 10, 12, num_frames=8, mode="reference")
  assert list(p.indices) == [2, 7] and p.weights.shape == (9, 2)
  frames, keyframes = _run(p, clip)
  diffs = motion.detail_motion(frames[None])[0]
  ent = motion.normalize(clip[7]) - motion.normalize(clip[2])
  factors = [0, 1 / 18, 2 / 9, 2 / 9, 2 / 9, 2 / 9, 1 / 18, 0]
  for d, f in zip(diffs, factors):
    np.testing.assert_allclose(d, f * ent, atol=1e-4)
  np.testing.assert_allclose(keyframes[1] - keyframes[0], ent, atol=1e-4)


def test_keyframes_mode_places_onset_apex_offset():
  clip = _clip()
  p = temporal.plan(1, 4, 11, 12, num_frames=8, mode="keyframes")
  frames, keyframes = _run(p, clip)
  norm = lambda i: np.asarray(motion.normalize(clip[i]))
  np.testing.assert_allclose(frames[0], norm(1), atol=1e-4)
  np.testing.assert_allclose(frames[4], norm(4), atol=1e-4)
  np.testing.assert_allclose(frames[8], norm(11), atol=1e-4)
  np.testing.assert_allclose(frames[2], 0.5 * (norm(1) + norm(4)), atol=1e-4)
  np.testing.assert_allclose(keyframes[1], norm(4), atol=1e-4)
  np.testing.assert_allclose(p.weights.sum(1), 1.0)


def test_uniform_mode_uses_real_frames_and_gathers_the_apex():
  clip = _clip(n=20)
  p = temporal.plan(0, 13, 16, 20, num_frames=8, mode="uniform")
  assert len(p.indices) == temporal.num_gathered("uniform", 8) == 10
  assert list(p.indices[:9]) == [0, 2, 4, 6, 8, 10, 12, 14, 16]
  assert p.indices[p.keyframe_pos[1]] == 13
  frames, keyframes = _run(p, clip)
  np.testing.assert_allclose(frames[3], motion.normalize(clip[6]), atol=1e-4)
  np.testing.assert_allclose(keyframes[1], motion.normalize(clip[13]),
                             atol=1e-4)
  # Fewer stored frames than needed: repeats, still in order.
  p = temporal.plan(0, 2, 3, 4, num_frames=8, mode="uniform")
  assert (np.diff(p.indices[:9]) >= 0).all()


def test_uniform_mode_is_even_in_time_not_in_stored_index():
  # Frames 100..108 then 120..128 stored (109..119 missing on disk): 9
  # samples evenly over frames 100..128 are every 3.5 frames, so the gap
  # is skipped in time rather than squeezed.
  numbers = list(range(100, 109)) + list(range(120, 129))
  p = temporal.plan(0, 5, 17, 18, num_frames=8, mode="uniform",
                    frame_numbers=numbers)
  picked = [numbers[i] for i in p.indices[:9]]
  targets = np.linspace(100, 128, 9)
  nearest = [min(numbers, key=lambda n: abs(n - t)) for t in targets]
  assert picked == nearest
  assert picked[0] == 100 and picked[-1] == 128
  assert sum(109 <= n <= 119 for n in nearest) == 0
  by_index = temporal.plan(0, 5, 17, 18, num_frames=8, mode="uniform")
  assert list(by_index.indices) != list(p.indices)
  with pytest.raises(errors.DataError, match="increasing"):
    temporal.plan(0, 1, 2, 3, mode="uniform", frame_numbers=[3, 2, 1])


@pytest.mark.parametrize("args", [(3, 2, 5, 8), (0, 2, 8, 8), (-1, 0, 1, 4)])
def test_bad_keyframes_raise(args):
  with pytest.raises(errors.DataError, match="onset"):
    temporal.plan(*args)


def test_unknown_mode():
  with pytest.raises(errors.ConfigError):
    temporal.plan(0, 1, 2, 3, mode="cubic")


def test_assemble_is_jittable_and_batched():
  clip = _clip()
  plans = [temporal.plan(0, a, 11, 12) for a in (3, 6)]
  g = np.stack([clip[p.indices] for p in plans])
  w = np.stack([p.weights for p in plans])
  kp = np.stack([p.keyframe_pos for p in plans])
  f, k = jax.jit(temporal.assemble)(g.astype(np.uint8), w, kp)
  assert f.shape == (2, 9, 4, 4, 3) and k.shape == (2, 2, 4, 4, 3)
  assert f.dtype == jnp.float32
