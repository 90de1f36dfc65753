"""Token Attention with accumulation across stages (EDMDBN's "AA").

For a stage output x (B, D, H, W, C):

  A_cur = sigmoid(w_mean * mean_c(x) + w_max * max_c(x) + b)     (B, D, H, W, 1)
  A     = A_cur * maxpool_2x2(A_prev)     (A = A_cur on the first stage)
  out   = x * A

A is passed on to the next stage, so the maps multiply through all stages.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def channel_statistics(x):
  """(..., C) -> (..., 2): [mean over C, max over C], the released order."""
  return jnp.concatenate(
      [jnp.mean(x, axis=-1, keepdims=True), jnp.max(x, axis=-1, keepdims=True)],
      axis=-1)


def pool_previous(a_prev):
  """2x2 spatial max pooling of an attention map (B, D, H, W, 1).

  Odd H or W are padded with -inf (ceil mode), matching patch merging, which
  pads odd maps with zeros to even size before halving them.
  """
  b, d, h, w, c = a_prev.shape
  ph, pw = h % 2, w % 2
  if ph or pw:
    a_prev = jnp.pad(a_prev, ((0, 0), (0, 0), (0, ph), (0, pw), (0, 0)),
                     constant_values=-jnp.inf)
  return jax.lax.reduce_window(
      a_prev, -jnp.inf, jax.lax.max, (1, 1, 2, 2, 1), (1, 1, 2, 2, 1), "VALID")


def accumulate(a_cur, a_prev):
  """A = A_cur * maxpool_2x2(A_prev); A_prev None means the first stage."""
  if a_prev is None:
    return a_cur
  return a_cur * pool_previous(a_prev)


class TokenAttention(nn.Module):
  """One stage's Token Attention; owns the 2 -> 1 linear map (a 1x1x1 conv).

  Returns (x * A, A) where A is the accumulated map (or the stage's own map
  when `accumulate` is False).
  """
  accumulate: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, a_prev=None):
    stats = channel_statistics(x.astype(jnp.float32))
    logit = nn.Dense(1, name="proj", dtype=jnp.float32,
                     kernel_init=nn.initializers.variance_scaling(
                         1 / 3, "fan_in", "uniform"),
                     bias_init=nn.initializers.zeros)(stats)
    a = jax.nn.sigmoid(logit)
    if self.accumulate:
      a = accumulate(a, a_prev)
    return (x * a.astype(x.dtype)), a
