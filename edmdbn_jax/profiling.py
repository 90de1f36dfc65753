"""Model size, compute cost and latency (used by experiments.summary/benchmark).

Two counts of compute: `matmul_macs` counts the multiply-adds of the
matrix products and convolutions in the traced program (what papers and
the reference's "13.4 G multiply-adds" count); `forward_cost` is XLA's cost
analysis of the lowered program (`flops`, 2 per multiply-add, elementwise
work such as softmax, normalisation and GELU included), the figure FLOP
rates are computed from.
"""

import math

import time
from typing import Dict, Optional

import jax
import ml_collections
import numpy as np

from edmdbn_jax.models import abstract_variables
from edmdbn_jax.models import from_config
from edmdbn_jax.models import input_specs


def param_counts(config: ml_collections.ConfigDict) -> Dict[str, int]:
  """Parameters per top-level part ('entire', 'detail', 'head', ...) + total."""
  shapes = abstract_variables(from_config(config.model), config)["params"]
  counts = {name: int(sum(np.prod(x.shape) for x in jax.tree.leaves(sub)))
            for name, sub in shapes.items()}
  counts["total"] = sum(counts.values())
  return counts


def lowered_flops(lowered) -> float:
  """XLA's FLOP count of a lowered, not yet compiled, program.

  This is the unoptimised program's arithmetic: what the model asks for,
  the same on every backend, and it needs no compile (a paper-config train
  step takes tens of seconds to compile, which a benchmark on a leased GPU
  cannot spare). A compiled program's count follows the backend's rewrites
  (for the tiny config on CPU: 0.3 % more for the forward pass, 4 % more
  for the train step).
  """
  cost = lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float((cost or {}).get("flops", float("nan")))


def _traced_forward(config: ml_collections.ConfigDict, batch: int,
                    dtype: Optional[str] = None):
  """The jitted forward pass traced on abstract inputs (nothing computed)."""
  model = from_config(config.model, dtype=dtype)
  variables = abstract_variables(model, config)
  fn = jax.jit(lambda v, a, b: model.apply(v, a, b)[0])
  return fn.trace(variables, *input_specs(config, batch))


def forward_cost(config: ml_collections.ConfigDict, batch: int = 1,
                 dtype: Optional[str] = None) -> Dict[str, float]:
  """Both counts of one forward pass at `batch`, from one trace.

  Returns {'flops': XLA's count (`lowered_flops`), 'macs': flops / 2,
  'macs_per_clip': ..., 'matmul_macs_per_clip': `matmul_macs`}.
  """
  traced = _traced_forward(config, batch, dtype)
  flops = lowered_flops(traced.lower())
  return {"flops": flops, "macs": flops / 2, "macs_per_clip": flops / 2 / batch,
          "matmul_macs_per_clip": _jaxpr_macs(traced.jaxpr.jaxpr) // batch}


def _jaxpr_macs(jaxpr) -> int:
  """Multiply-adds of dot_general and conv_general_dilated in a jaxpr
  (recursing into sub-programs; a scan's body counts `length` times, a
  cond's costliest branch once)."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(
          lhs[i] for i in contract)
    elif name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
      total += (math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs)
                // out_features)
    subs = []
    for value in eqn.params.values():
      for v in (value if isinstance(value, (tuple, list)) else (value,)):
        inner = getattr(v, "jaxpr", v)
        if hasattr(inner, "eqns"):
          subs.append(inner)
    if subs:
      counts = [_jaxpr_macs(j) for j in subs]
      inner = max(counts) if name == "cond" else sum(counts)
      total += inner * int(eqn.params.get("length", 1))
  return total


def matmul_macs(config: ml_collections.ConfigDict, batch: int = 1) -> int:
  """Multiply-adds per clip of the forward pass's matrix products and
  convolutions (traced, nothing is computed or compiled)."""
  return _jaxpr_macs(_traced_forward(config, batch).jaxpr.jaxpr) // batch


def forward_latency(config: ml_collections.ConfigDict, batch: int = 1,
                    dtype: Optional[str] = None, repeats: int = 10,
                    warmup: int = 2) -> Dict[str, float]:
  """Wall time of the jitted forward pass on the default device (seconds)."""
  model = from_config(config.model, dtype=dtype)
  f, k = input_specs(config, batch)
  frames = jax.random.normal(jax.random.key(1), f.shape)
  keyframes = jax.random.normal(jax.random.key(2), k.shape)
  variables = jax.jit(model.init)(jax.random.key(0), frames, keyframes)
  fn = jax.jit(lambda v, a, b: model.apply(v, a, b)[0])
  for _ in range(warmup):
    fn(variables, frames, keyframes).block_until_ready()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(variables, frames, keyframes).block_until_ready()
    times.append(time.perf_counter() - t0)
  times = np.asarray(times)
  return {"median_s": float(np.median(times)), "min_s": float(times.min()),
          "per_clip_s": float(np.median(times) / batch), "batch": batch,
          "repeats": repeats}


def device_description() -> str:
  d = jax.devices()[0]
  kind = getattr(d, "device_kind", d.platform)
  where = f" ({d.platform})" if kind != d.platform else ""
  return f"{len(jax.devices())} x {kind}{where}, jax {jax.__version__}"
