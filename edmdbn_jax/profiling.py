"""Model size, compute cost and latency (used by experiments.summary/benchmark).

Two counts of compute: `matmul_macs` / `jaxpr_matmul_flops` count the
multiply-adds of the matrix products and convolutions in the traced program
(what papers and the reference's "13.4 G multiply-adds" count, and what a
tensor-core peak FLOP rate is a peak of; 2 FLOPs per multiply-add), on any
backend without compiling; FLOP rates are computed from these. XLA's cost
analysis of the lowered program (`lowered_flops`: elementwise work such as
softmax, normalisation and GELU included) is kept beside them where the
backend gives it without compiling: CPU, not the GPU's PJRT plugin, whose
`Lowered.cost_analysis` is not implemented.
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


def lowered_flops(lowered) -> Optional[float]:
  """XLA's FLOP count of a lowered, not yet compiled, program, or None
  where the backend has no such analysis (a PJRT plugin such as CUDA's).

  This is the unoptimised program's arithmetic (a compiled program's count
  follows the backend's rewrites: for the tiny config on CPU 0.3 % more for
  the forward pass, 4 % more for the train step), and it needs no compile.
  """
  try:
    cost = lowered.cost_analysis()
  except NotImplementedError:
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return None if flops is None or not math.isfinite(flops) else float(flops)


def lowered_cost_available() -> bool:
  """Whether the default backend costs lowered programs (CPU does; the GPU
  plugin does not, and lowering a paper-config step only to learn that
  would cost seconds of leased device time)."""
  return jax.default_backend() == "cpu"


def jaxpr_matmul_flops(traced) -> int:
  """2 x the multiply-adds of the matrix products and convolutions of a
  traced (`jax.jit(f).trace(...)`) program: scans count every step."""
  return 2 * _jaxpr_macs(traced.jaxpr.jaxpr)


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

  Returns {'flops': XLA's count (`lowered_flops`; None where the backend
  has none), 'macs': flops / 2, 'macs_per_clip': ..., 'matmul_macs_per_clip':
  `matmul_macs`}.
  """
  traced = _traced_forward(config, batch, dtype)
  flops = (lowered_flops(traced.lower()) if lowered_cost_available()
           else None)
  half = None if flops is None else flops / 2
  return {"flops": flops, "macs": half,
          "macs_per_clip": None if half is None else half / batch,
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


def init_variables(config: ml_collections.ConfigDict,
                   dtype: Optional[str] = None):
  """The model's variables, initialised at batch 1 (they do not depend on
  the batch: one init, and one compile of it, serves every batch size)."""
  model = from_config(config.model, dtype=dtype)
  f, k = input_specs(config, 1)
  return jax.jit(model.init)(jax.random.key(0), jax.numpy.zeros(f.shape),
                             jax.numpy.zeros(k.shape))


def forward_latency(config: ml_collections.ConfigDict, batch: int = 1,
                    dtype: Optional[str] = None, repeats: int = 10,
                    warmup: int = 2, variables=None) -> Dict[str, float]:
  """Wall time of the jitted forward pass on the default device (seconds),
  on random inputs; `variables` from `init_variables` (drawn if None)."""
  model = from_config(config.model, dtype=dtype)
  f, k = input_specs(config, batch)
  frames = jax.random.normal(jax.random.key(1), f.shape)
  keyframes = jax.random.normal(jax.random.key(2), k.shape)
  if variables is None:
    variables = init_variables(config, dtype)
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
