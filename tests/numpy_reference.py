"""Plain NumPy versions of the model's pieces, written from the reference notes.

They loop window by window and token by token, so they share no code (and no
reshape conventions) with `edmdbn_jax.models`.
"""

import math

import numpy as np

_erf = np.vectorize(math.erf)


def layer_norm(x, scale, bias, eps=1e-5):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * scale + bias


def gelu(x):
  return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def swin_block(x, p, window_size, shift_size):
  """One pre-norm Swin block on x (D, H, W, C) (a single clip).

  p: the block's Flax params as numpy (norm1, attn{qkv, proj,
  relative_position_bias_table}, norm2, mlp{fc1, fc2}).
  """
  d, h, w, c = x.shape
  size = (d, h, w)
  # The window rule: windows never exceed the feature map.
  win = [min(s, ws) if s <= ws else ws for s, ws in zip(size, window_size)]
  shift = [0 if s <= ws else sh for s, ws, sh in zip(size, window_size,
                                                     shift_size)]
  padded = [-(-s // wi) * wi for s, wi in zip(size, win)]
  y = layer_norm(x, p["norm1"]["scale"], p["norm1"]["bias"])
  yp = np.zeros(tuple(padded) + (c,), np.float64)
  yp[:d, :h, :w] = y
  heads = p["attn"]["relative_position_bias_table"].shape[1]
  hd = c // heads
  qkv = yp @ p["attn"]["qkv"]["kernel"] + p["attn"]["qkv"]["bias"]
  q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
  table = p["attn"]["relative_position_bias_table"]
  td, th, tw = window_size
  out = np.zeros_like(yp)
  # Work in shifted coordinates: token s of the shifted map is original token
  # (s + shift) mod padded. A token "wrapped" along an axis if s >= L - shift.
  grid = np.stack(np.meshgrid(*[np.arange(n) for n in padded],
                              indexing="ij"), -1).reshape(-1, 3)
  for start in np.stack(np.meshgrid(
      *[np.arange(0, n, wi) for n, wi in zip(padded, win)], indexing="ij"),
                        -1).reshape(-1, 3):
    inside = np.all((grid >= start) & (grid < start + win), axis=1)
    toks = grid[inside]  # shifted coordinates, d-major order
    orig = (toks + shift) % padded
    wrapped = np.stack([(toks[:, a] >= padded[a] - shift[a]) & (shift[a] > 0)
                        for a in range(3)], 1)
    qi = q[tuple(orig.T)]
    ki = k[tuple(orig.T)]
    vi = v[tuple(orig.T)]
    n = len(toks)
    res = np.zeros((n, c))
    for hh in range(heads):
      sl = slice(hh * hd, (hh + 1) * hd)
      logits = (qi[:, sl] * hd ** -0.5) @ ki[:, sl].T
      for a in range(n):
        for b in range(n):
          rel = toks[a] - toks[b]
          row = ((rel[0] + td - 1) * (2 * th - 1) * (2 * tw - 1)
                 + (rel[1] + th - 1) * (2 * tw - 1) + rel[2] + tw - 1)
          logits[a, b] += table[row, hh]
          if np.any(wrapped[a] != wrapped[b]):
            logits[a, b] += -100.0
      res[:, sl] = softmax(logits) @ vi[:, sl]
    res = res @ p["attn"]["proj"]["kernel"] + p["attn"]["proj"]["bias"]
    out[tuple(orig.T)] = res
  x = x + out[:d, :h, :w]
  y = layer_norm(x, p["norm2"]["scale"], p["norm2"]["bias"])
  y = gelu(y @ p["mlp"]["fc1"]["kernel"] + p["mlp"]["fc1"]["bias"])
  y = y @ p["mlp"]["fc2"]["kernel"] + p["mlp"]["fc2"]["bias"]
  return x + y


def token_attention(x, w, b, a_prev=None):
  """x (D, H, W, C); w (2,) over [mean, max]; returns (x * A, A (D, H, W))."""
  a = 1.0 / (1.0 + np.exp(-(w[0] * x.mean(-1) + w[1] * x.max(-1) + b)))
  if a_prev is not None:
    d, h, ww = a.shape
    pooled = np.zeros_like(a)
    for i in range(h):
      for j in range(ww):
        pooled[:, i, j] = a_prev[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(
            axis=(1, 2))
    a = a * pooled
  return x * a[..., None], a


def patch_merging(x, p):
  """(D, H, W, C), even H, W -> (D, H/2, W/2, 2C) per the reference order."""
  d, h, w, c = x.shape
  out = np.zeros((d, h // 2, w // 2, 4 * c))
  for i in range(h // 2):
    for j in range(w // 2):
      parts = [x[:, 2 * i + r, 2 * j + s] for r, s in
               ((0, 0), (1, 0), (0, 1), (1, 1))]
      out[:, i, j] = np.concatenate(parts, -1)
  out = layer_norm(out, p["norm"]["scale"], p["norm"]["bias"])
  return out @ p["reduction"]["kernel"]
