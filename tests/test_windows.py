"""Window geometry: the window rule, partitions, shift masks, bias indices."""

import numpy as np
import pytest

from edmdbn_jax.models import windows as W


def test_window_rule_paper_detail_branch():
  # Detail branch at 224 px: 1 x 56 x 56 tokens, nominal window (8, 7, 7).
  window, shift = W.effective_window((1, 56, 56), (8, 7, 7), (4, 3, 3))
  assert window == (1, 7, 7)
  assert shift == (0, 3, 3)


def test_window_rule_never_exceeds_feature():
  window, shift = W.effective_window((2, 4, 9), (8, 7, 7), (4, 3, 3))
  assert window == (2, 4, 7)
  assert shift == (0, 0, 3)
  # Equal size: the window is the whole axis and the shift is dropped.
  window, shift = W.effective_window((8, 7, 7), (8, 7, 7), (4, 3, 3))
  assert window == (8, 7, 7) and shift == (0, 0, 0)


def test_partition_reverse_round_trip_and_order():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 2, 6, 4, 3))
  win = (1, 3, 2)
  parts = np.asarray(W.window_partition(x, win))
  assert parts.shape == (2 * 2 * 2 * 2, 6, 3)
  # Window 1 of batch 0 is d=0, h in 0..2, w in 2..3 (d, h, w-major order).
  np.testing.assert_array_equal(parts[1], x[0, 0, 0:3, 2:4].reshape(6, 3))
  back = np.asarray(W.window_reverse(parts, win, 2, (2, 6, 4)))
  np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("size,window,shift", [
    ((1, 14, 14), (1, 7, 7), (0, 3, 3)),
    ((4, 8, 8), (2, 4, 4), (1, 2, 2)),
])
def test_mask_forbids_attention_across_shift_regions(size, window, shift):
  mask = W.compute_mask(size, window, shift)
  n = int(np.prod(window))
  nw = int(np.prod([s // w for s, w in zip(size, window)]))
  assert mask.shape == (nw, n, n)
  # Independent rule: in shifted coordinates a token wrapped around along an
  # axis iff its index >= size - shift; two tokens of one window may attend
  # to each other iff they wrapped along exactly the same axes.
  grid = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"),
                  -1)
  wrapped = np.stack([(grid[..., a] >= size[a] - shift[a]) & (shift[a] > 0)
                      for a in range(3)], -1)
  code = (wrapped * np.array([1, 2, 4])).sum(-1)[None, ..., None]
  codes = np.asarray(W.window_partition(code, window))[..., 0]
  for k in range(nw):
    same = codes[k][:, None] == codes[k][None, :]
    np.testing.assert_array_equal(mask[k] == 0, same)
    np.testing.assert_array_equal(mask[k][~same], W.MASK_VALUE)
  # The last window along a shifted axis really mixes regions.
  assert (mask == W.MASK_VALUE).any()


def test_no_shift_means_no_masked_pairs():
  assert not W.compute_mask((1, 14, 14), (1, 7, 7), (0, 0, 0)).any()


def test_relative_position_index_paper_rows():
  idx = W.relative_position_index((1, 7, 7), (8, 7, 7))
  assert idx.shape == (49, 49)
  assert idx.min() == 1183 and idx.max() == 1351
  assert W.bias_table_size((8, 7, 7)) == 2535
  # The released model slices the nominal index as [:N, :N]; identical here.
  nominal = W.relative_position_index((8, 7, 7), (8, 7, 7))
  np.testing.assert_array_equal(idx, nominal[:49, :49])
  # Diagonal: offset (0, 0, 0) -> (7*169 + 6*13 + 6).
  assert set(np.diag(idx)) == {7 * 169 + 6 * 13 + 6}


def test_relative_position_index_slices_like_the_released_model():
  # H and W shrink to 2: the released model takes the first 4 tokens of the
  # nominal (8, 4, 4) window, (0,0,0)..(0,0,3), not the 2 x 2 geometry.
  idx = W.relative_position_index((1, 2, 2), (8, 4, 4))
  row = lambda dd, dh, dw: (dd + 7) * 49 + (dh + 3) * 7 + dw + 3
  assert idx[0, 3] == row(0, 0, -3)
  assert idx[3, 0] == row(0, 0, 3)
  assert idx.shape == (4, 4)
