"""On-device augmentation: one draw per clip, deterministic, the right maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmdbn_jax.data import augment


def _clips(b=3, k=4, size=16):
  rng = np.random.default_rng(0)
  base = rng.uniform(0, 255, (b, 1, size, size, 3)).astype(np.float32)
  # Frames of a clip differ by a small brightness change only.
  return jnp.asarray(base + np.arange(k)[None, :, None, None, None])


def test_deterministic_given_key_and_shape():
  x = _clips()
  a = augment.augment(jax.random.key(0), x)
  b = augment.augment(jax.random.key(0), x)
  c = augment.augment(jax.random.key(1), x)
  np.testing.assert_array_equal(a, b)
  assert a.shape == x.shape and a.dtype == x.dtype
  assert np.abs(np.asarray(a - c)).max() > 1.0


def test_identity_draw_is_identity():
  x = _clips()[0]
  y = augment.transform_clip(x, False, jnp.zeros(2), 0.0)
  np.testing.assert_allclose(y, x, atol=1e-3)


def test_flip_and_shift_exact():
  x = _clips()[0]
  y = augment.transform_clip(x, True, jnp.zeros(2), 0.0)
  np.testing.assert_allclose(y, x[:, :, ::-1], atol=1e-3)
  y = augment.transform_clip(x, False, jnp.array([2.0, -3.0]), 0.0)
  # Shift by (2, -3) with edge padding: out[y, x] = in[y + 2, x - 3].
  np.testing.assert_allclose(y[:, :14, 3:], x[:, 2:, :13], atol=1e-3)
  np.testing.assert_allclose(y[:, 14:, 3:], np.broadcast_to(
      x[:, 15:16, :13], (4, 2, 13, 3)), atol=1e-3)  # bottom edge repeated


def test_same_transform_for_every_frame_of_a_clip():
  x = _clips()
  y = np.asarray(augment.augment(jax.random.key(3), x))
  inside = np.asarray(augment.augment(jax.random.key(3), jnp.ones_like(x)))
  # Frames differ by +1 brightness before; the same warp keeps that where
  # the rotated image has pixels (black, 0 in every frame, elsewhere).
  assert set(np.unique(inside)) <= {0.0, 1.0} and inside.mean() > 0.9
  has = inside[:, 0] > 0
  np.testing.assert_allclose((y[:, 1] - y[:, 0])[has], 1.0, atol=1e-4)
  np.testing.assert_allclose((y[:, 3] - y[:, 0])[has], 3.0, atol=1e-4)
  np.testing.assert_array_equal(y[inside == 0], 0.0)


def test_pixels_are_moved_never_blended():
  # Nearest neighbour: every output value is an input value of that frame
  # (or the black fill), so frame differences keep their sharpness.
  x = _clips(b=4, size=32)
  y = np.asarray(augment.augment(jax.random.key(5), x))
  for b in range(4):
    for k in range(4):
      assert set(np.unique(y[b, k])) <= set(np.unique(x[b, k])) | {0.0}


def test_equals_stored_torchvision_output():
  """The released chain's output as torchvision 0.29 gave it (hflip, rotate
  NEAREST fill 0, edge pad 4 and crop), stored in tests/data by the test
  below's code, so the check runs where torchvision is not installed."""
  import pathlib  # pylint: disable=g-import-not-at-top
  ref = np.load(pathlib.Path(__file__).parent / "data" /
                "torchvision_augment.npz")
  img = jnp.asarray(ref["image"][None].astype(np.float32))
  assert len(ref["cases"]) == 18
  for (flip, deg, dy, dx), want in zip(ref["cases"], ref["outputs"]):
    got = augment.transform_clip(img, bool(flip),
                                 jnp.array([dy, dx], jnp.float32),
                                 np.radians(deg))
    np.testing.assert_array_equal(np.asarray(got)[0], want)


def test_equals_the_released_torchvision_chain():
  torch = pytest.importorskip("torch")
  tf = pytest.importorskip("torchvision.transforms.functional")
  from torchvision.transforms import InterpolationMode  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (1, 32, 32, 3)).astype(np.float32)
  for flip in (False, True):
    for deg in (3.3, -2.7, 4.0):
      for dy, dx in ((0, 0), (2, -3), (-4, 4)):
        t = torch.from_numpy(img[0]).permute(2, 0, 1)
        if flip:
          t = tf.hflip(t)
        t = tf.rotate(t, deg, interpolation=InterpolationMode.NEAREST, fill=0)
        t = torch.nn.functional.pad(t[None], (4, 4, 4, 4), mode="replicate")[0]
        want = t[:, 4 + dy:36 + dy, 4 + dx:36 + dx].permute(1, 2, 0).numpy()
        got = augment.transform_clip(jnp.asarray(img), flip,
                                     jnp.array([dy, dx], jnp.float32),
                                     np.radians(deg))
        np.testing.assert_array_equal(np.asarray(got)[0], want)


def test_draws_within_ranges():
  flip, shift, angle = augment.draw(jax.random.key(0), 2000)
  assert 0.4 < float(flip.mean()) < 0.6
  assert int(shift.min()) == -4 and int(shift.max()) == 4
  deg = np.degrees(np.asarray(angle))
  assert deg.min() >= -4 and deg.max() <= 4 and deg.std() > 1.5


def test_rotation_rotates_about_the_centre():
  size = 33
  img = np.zeros((1, size, size, 1), np.float32)
  img[0, 16, 26] = 100.0  # 10 px right of the centre
  y = np.asarray(augment.transform_clip(jnp.asarray(img), False, jnp.zeros(2),
                                        np.radians(4.0)))
  r, c = np.unravel_index(y[0, ..., 0].argmax(), (size, size))
  assert abs(int(c) - 26) <= 1 and abs(int(r) - 16) <= 1  # 4 deg: < 1 px
  img2 = np.zeros_like(img)
  img2[0, 16, 26] = 100.0
  y = np.asarray(augment.transform_clip(jnp.asarray(img2), False,
                                        jnp.zeros(2), np.radians(90.0)))
  r, c = np.unravel_index(y[0, ..., 0].argmax(), (size, size))
  assert (r, c) in {(6, 16), (26, 16)}
