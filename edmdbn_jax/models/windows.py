"""Pure functions of 3D shifted-window attention (Video Swin conventions).

Tensors are channels-last: a feature map is (B, D, H, W, C) with D the
temporal token axis. A window is (wd, wh, ww); a window's tokens are ordered
d-major, then h, then w (as `reshape` lays them out), which is also the order
of the released PyTorch model.

Everything here works on static shapes with NumPy (masks, indices) or is a
reshape (partition, reverse), so it is traced once per shape under `jit`.
"""

from typing import Sequence, Tuple

import einops
import numpy as np

Size3 = Tuple[int, int, int]

# Added to attention logits of token pairs that come from different regions
# of a cyclically shifted window (the released model's value).
MASK_VALUE = -100.0


def effective_window(x_size: Sequence[int], window_size: Sequence[int],
                     shift_size: Sequence[int]) -> Tuple[Size3, Size3]:
  """The Video Swin window rule.

  Along any axis whose feature size is <= the window, the window shrinks to
  the feature size and the shift along that axis is 0, so a window never
  exceeds the feature map and a shift never wraps a whole axis.

  Args:
    x_size: (D, H, W) feature size in tokens.
    window_size: nominal (wd, wh, ww).
    shift_size: nominal (sd, sh, sw).

  Returns:
    (window, shift), each a tuple of 3 ints.
  """
  window = list(window_size)
  shift = list(shift_size)
  for i in range(3):
    if x_size[i] <= window_size[i]:
      window[i] = x_size[i]
      shift[i] = 0
  return tuple(window), tuple(shift)


def padded_size(x_size: Sequence[int], window: Sequence[int]) -> Size3:
  """(D, H, W) rounded up to multiples of `window`."""
  return tuple(-(-s // w) * w for s, w in zip(x_size, window))


def window_partition(x, window: Sequence[int]):
  """(B, D, H, W, C) -> (B * nW, wd * wh * ww, C).

  D, H and W must be multiples of the window. Windows are ordered batch-major,
  then by window position (d, h, w), matching `compute_mask`'s window order.
  """
  wd, wh, ww = window
  return einops.rearrange(
      x, "b (nd wd) (nh wh) (nw ww) c -> (b nd nh nw) (wd wh ww) c",
      wd=wd, wh=wh, ww=ww)


def window_reverse(windows, window: Sequence[int], batch: int,
                   size: Sequence[int]):
  """Inverse of `window_partition`: (B * nW, wd*wh*ww, C) -> (B, D, H, W, C)."""
  wd, wh, ww = window
  d, h, w = size
  return einops.rearrange(
      windows, "(b nd nh nw) (wd wh ww) c -> b (nd wd) (nh wh) (nw ww) c",
      b=batch, nd=d // wd, nh=h // wh, nw=w // ww, wd=wd, wh=wh, ww=ww)


def region_ids(size: Sequence[int], window: Sequence[int],
               shift: Sequence[int]) -> np.ndarray:
  """Labels each token of a (padded) D x H x W map by its shift region.

  After a cyclic shift by -shift, tokens that wrapped around carry a
  different label from their window neighbours; `compute_mask` forbids
  attention between different labels. Returns an int array (D, H, W).
  """
  img = np.zeros(tuple(size), np.int32)
  cnt = 0
  slices = [
      (slice(0, -w), slice(-w, -s), slice(-s, None)) if s > 0
      else (slice(None),)
      for w, s in zip(window, shift)
  ]
  for d in slices[0]:
    for h in slices[1]:
      for w in slices[2]:
        img[d, h, w] = cnt
        cnt += 1
  return img


def compute_mask(size: Sequence[int], window: Sequence[int],
                 shift: Sequence[int]) -> np.ndarray:
  """Attention mask of cyclically shifted windows.

  Args:
    size: padded (D, H, W), multiples of `window`.
    window: effective window (wd, wh, ww).
    shift: effective shift (sd, sh, sw).

  Returns:
    float32 (nW, N, N) with N = wd*wh*ww: 0 where two tokens of a window come
    from the same region, MASK_VALUE where they do not.
  """
  ids = region_ids(size, window, shift)[None, ..., None]
  win = window_partition(ids, window)[..., 0]  # (nW, N)
  diff = win[:, None, :] != win[:, :, None]
  return np.where(diff, MASK_VALUE, 0.0).astype(np.float32)


def bias_table_size(window_size: Sequence[int]) -> int:
  """Rows of the relative-position bias table of a nominal window."""
  wd, wh, ww = window_size
  return (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1)


def _offset_index(window: Sequence[int],
                  table_window: Sequence[int]) -> np.ndarray:
  """Table rows of the token pairs of `window`, by their true offsets."""
  td, th, tw = table_window
  coords = np.stack(np.meshgrid(*[np.arange(w) for w in window],
                                indexing="ij")).reshape(3, -1)  # (3, N)
  rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
  idx = ((rel[0] + td - 1) * (2 * th - 1) * (2 * tw - 1)
         + (rel[1] + th - 1) * (2 * tw - 1) + (rel[2] + tw - 1))
  return idx.astype(np.int32)


def relative_position_index(window: Sequence[int],
                            table_window: Sequence[int]) -> np.ndarray:
  """Indices into the bias table of `table_window` for an effective window.

  A pair of tokens with relative offset (dd, dh, dw) in the nominal window
  (Td, Th, Tw) uses row
  `(dd + Td - 1) * (2Th - 1) * (2Tw - 1) + (dh + Th - 1) * (2Tw - 1) + dw + Tw - 1`.
  For a smaller effective window of N tokens the released model (like Video
  Swin) takes the first N rows and columns of the nominal index,
  `index[:N, :N]`; this function does the same. When only the depth shrinks
  (the paper's configuration: window (1, 7, 7) in an (8, 7, 7) table, rows
  1183..1351) that is exactly the true offsets of the effective window. When
  H or W shrink (small inputs, e.g. the tiny config's last stage) the sliced
  rows are those of the first N tokens of the nominal window, not of the true
  offsets: kept as released so converted weights compute the same function.

  Args:
    window: effective window (wd, wh, ww), each <= the nominal one.
    table_window: nominal window the bias table was built for.

  Returns:
    int32 (N, N), N = wd * wh * ww.
  """
  n = int(np.prod(window))
  return _offset_index(table_window, table_window)[:n, :n]
