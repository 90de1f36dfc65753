r"""Speed and memory of EDMDBN training and inference on the current device.

  python -m experiments.benchmark --config=edmdbn_jax/configs/edmdbn.py:tiny
  python -m experiments.benchmark --config=...:paper --dtype=bfloat16 \
      --fold_parallel=8 --loso_epochs=60

Reports, for one config and device: training throughput (clip-steps per
second) at the paper's batch size with one fold and with `--fold_parallel`
folds at once; inference latency per clip at batch 1 and throughput at batch
64; multiply-adds per clip (the matrix products and convolutions of the
traced forward pass, `profiling.matmul_macs`; XLA's FLOP count beside it);
the achieved FLOP rate (XLA's count) of training and its fraction of the device's peak (where the peak is known);
peak device memory (where the backend reports none, as on CPU, the buffers
XLA assigned to the compiled fold-parallel train step); compile times; and the wall time of a full CASME II-sized
LOSO (26 subjects, about 250 clips) on the synthetic dataset, with
`--loso_epochs` epochs (the paper: 60) including compilation.

Results are written to `benchmarks/results/<name>.json` and the table in
`benchmarks/README.md` is regenerated from all result files.

`--torch` (needs the `bench` extra: torch and torchvision) also times, in the
same process, the same architecture and size in PyTorch built from
torchvision's Video Swin building blocks (edmdbn_jax/interop/torch_model.py;
its logits match the Flax model's, tests/test_torch_model.py): batch-4
training steps and inference at batch 1 and 64, in float32 (TF32 matmuls on
CUDA, as JAX does by default) and with bfloat16 autocast. The speed-up
columns compare like with like: a float32 JAX row against PyTorch float32,
a bfloat16 row against PyTorch bfloat16 autocast.
"""

import datetime
import json
import math
import os
import platform
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

from edmdbn_jax import errors
from edmdbn_jax import profiling
from edmdbn_jax.models import from_config
from edmdbn_jax import train
from experiments import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags; called only when run as a script (see
  experiments.gradcam.define_flags)."""
  cli.define_model_flags("tiny")
  # Listed by --help (flags defined in cli.py show only under --helpfull).
  flags.declare_key_flag("config")
  flags.declare_key_flag("dtype")
  flags.DEFINE_integer("fold_parallel", 4,
                       "Folds at once for the parallel row.")
  flags.DEFINE_integer("steps", 20, "Timed train steps per fold.")
  flags.DEFINE_integer(
      "loso_epochs", 0, "Epochs of the CASME II-sized synthetic LOSO (0: skip; "
      "60: the paper's protocol).")
  flags.DEFINE_list(
      "loso_folds", [], "Held-out subjects of the LOSO row (default: all 26). "
      "A subset is a smoke run: the row says how many folds ran.")
  flags.DEFINE_string(
      "loso_fold_parallel", "auto", "fold_parallel for the LOSO row.")
  flags.DEFINE_bool("torch", False, "Also time the PyTorch model.")
  flags.DEFINE_enum(
      "torch_blocks", "torchvision", ["torchvision", "plain"],
      "PyTorch model's Swin blocks: torchvision's Video Swin blocks, or the "
      "plain implementation (no torchvision needed).")
  flags.DEFINE_bool(
      "torch_compile", False, "Time the PyTorch model under torch.compile "
      "(default: eager, as the authors' code runs).")
  flags.DEFINE_string("out", "benchmarks", "Benchmark directory.")
  flags.DEFINE_string(
      "sections", "all", "Comma-separated subset of train,infer,torch,loso "
      "(or all). A subset updates the existing result file of the same name, "
      "so a long LOSO row can run on its own.")
  flags.DEFINE_string("name", None, "Result file name (default: "
                      "device_config_dtype).")

# Dense peak FLOP/s per device kind (vendor datasheets, no sparsity). The
# float32 entries are the TF32 tensor-core peaks: JAX computes float32
# matmuls and convolutions in TF32 on these GPUs by default
# (jax_default_matmul_precision unset), so that is the ceiling a float32 row
# runs against.
PEAK_FLOPS = {
    ("NVIDIA H100 80GB HBM3", "bfloat16"): 989e12,
    ("NVIDIA H100 80GB HBM3", "float32"): 494.7e12,
    ("NVIDIA H200", "bfloat16"): 989e12,
    ("NVIDIA H200", "float32"): 494.7e12,
    ("NVIDIA A100-SXM4-80GB", "bfloat16"): 312e12,
    ("NVIDIA A100-SXM4-80GB", "float32"): 156e12,
}


def _peak(dtype):
  kind = jax.devices()[0].device_kind
  return PEAK_FLOPS.get((kind, dtype))


def _peak_memory():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("peak_bytes_in_use")


def _xla_memory_bytes(compiled):
  """Buffers XLA assigned to a compiled step: arguments, outputs (less the
  donated ones they reuse) and temporaries. Known on every backend, CPU
  included, where the device reports no peak."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return None  # a backend without memory analysis
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes
             - m.alias_size_in_bytes + m.temp_size_in_bytes)


def random_clips_data(config, n=64, k=3, seed=0):
  """Device-resident random clips shaped like the real pipeline's: `k`
  stored random frames per clip, each of the T + 1 frames a random convex
  mix of them, so both branches' motion is non-zero (a benchmark on zeros
  can run faster than on real data)."""
  s = int(config.data.image_size)
  t = int(config.data.num_frames)
  rng = np.random.default_rng(seed)
  w = rng.random((n, t + 1, k)).astype(np.float32)
  w /= w.sum(-1, keepdims=True)
  return {
      "frames": jnp.asarray(rng.integers(0, 255, (n, k, s, s, 3), np.uint8)),
      "weights": jnp.asarray(w),
      "keyframe_pos": jnp.asarray(np.tile([0, 1], (n, 1)).astype(np.int32)),
      "labels": jnp.asarray(rng.integers(0, int(config.model.num_classes), n,
                                         dtype=np.int32)),
  }


def bench_train(config, folds: int, steps: int, repeats: int = 3):
  """Clip-steps per second of the fold-parallel train step (scan of `steps`),
  the median of `repeats` timed calls after a warm-up.

  FLOPs: 2 x the multiply-adds of the step's matrix products and
  convolutions, forward and backward, counted in the traced program (every
  scanned step; any backend, no compile); XLA's count of the lowered step,
  elementwise work included, beside it where the backend gives one (CPU).
  """
  b = int(config.train.batch_size)
  mesh = train.make_mesh(folds, b)
  model = from_config(config.model)
  tx = train.make_optimizer(config)
  jit_init, jit_train, _ = train.make_steps(model, tx, config, mesh)
  data = jax.device_put(random_clips_data(config), NamedSharding(mesh, P()))
  keys = jax.random.split(jax.random.key(0), folds)
  state = jit_init(keys)
  rng = np.random.default_rng(0)
  idx = rng.integers(0, 64, (steps, folds, b)).astype(np.int32)
  mask = np.ones((steps, folds, b), bool)
  active = np.ones((steps, folds), bool)
  weights = np.ones((folds, int(config.model.num_classes)), np.float32)
  spe = np.full((folds,), 60, np.int32)
  args = (data, idx, mask, active, weights, spe, keys)
  t0 = time.perf_counter()
  traced = jit_train.trace(state, *args)
  compiled = traced.lower().compile()
  compile_s = time.perf_counter() - t0
  xla_memory = _xla_memory_bytes(compiled)
  clip_steps = steps * folds * b
  flops = profiling.jaxpr_matmul_flops(traced)
  xla_flops = None
  if profiling.lowered_cost_available():
    # XLA's cost analysis counts a loop body once, so cost one step (a scan
    # of length 1, lowered only: no second compile) and scale by the steps.
    one = (data, idx[:1], mask[:1], active[:1], weights, spe, keys)
    one_step = profiling.lowered_flops(jit_train.lower(state, *one))
    xla_flops = None if one_step is None else one_step * steps
  state, m = compiled(state, *args)  # warm-up
  jax.block_until_ready(m)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, m = compiled(state, *args)
    jax.block_until_ready((state, m))
    times.append(time.perf_counter() - t0)
  dt = float(np.median(times))
  return {"folds": folds, "batch": b, "steps": steps, "repeats": repeats,
          "clip_steps_per_s": clip_steps / dt, "seconds": dt,
          "seconds_each": times,
          "compile_s": compile_s, "xla_memory_bytes": xla_memory,
          "flops_method": "matmul",
          "flops_per_clip_step": flops / clip_steps,
          "xla_flops_per_clip_step": (None if xla_flops is None
                                      else xla_flops / clip_steps),
          "achieved_flops": flops / dt}


def loso_config(config, epochs: int, fold_parallel: str, folds=()):
  """The CASME II-sized synthetic LOSO config for the benchmark's model."""
  cfg = config.copy_and_resolve_references()
  cfg.train.folds = tuple(folds)
  cfg.train.final_model = False
  cfg.data.dataset = "synthetic"
  cfg.data.variant = "large"
  cfg.train.epochs = epochs
  cfg.train.warmup_epochs = min(cfg.train.warmup_epochs, epochs)
  cfg.train.fold_parallel = fold_parallel
  # The row's UF1 is the fixed budget's, whatever the config selects.
  cfg.train.selection = "fixed"
  # The progress bar on a terminal; in logs, plain lines (bench_loso).
  cfg.train.progress = True
  # Checkpoints at the config's own cadence (the paper config: every 10
  # minutes), so the row costs what `experiments.loso` costs.
  return cfg


def bench_loso(cfg, clips):
  """Wall time of a CASME II-sized synthetic LOSO, including compilation.

  Progress: the bar on a terminal, else a line every 15 s (a run cut off by
  a time limit still shows how far it got and how fast)."""
  n_folds = len(train.make_folds(clips, list(cfg.train.folds)))
  at_once = train.folds_at_once(cfg, n_folds)
  print(f"LOSO row: {n_folds} folds, {at_once} at once "
        f"(fold_parallel={cfg.train.fold_parallel}), {cfg.train.epochs} "
        "epochs", flush=True)
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    results = train.train_and_evaluate(
        cfg, workdir, clips=clips,
        progress_log_every_s=None if sys.stderr.isatty() else 15.0)
    wall = time.perf_counter() - t0
  agg = results["aggregated"]
  return {"epochs": int(cfg.train.epochs),
          "subjects": len(clips.subject_list()),
          "folds": int(results["protocol"]["folds"]),
          "clips": int(len(clips.labels)), "wall_s": wall,
          "fold_parallel": cfg.train.fold_parallel,
          "folds_at_once": at_once,
          "checkpoint_every_epochs": int(cfg.train.checkpoint_every_epochs),
          "checkpoint_every_minutes": float(
              cfg.train.checkpoint_every_minutes),
          "uf1_aggregated_fixed": agg["uf1"], "uar_aggregated_fixed": agg["uar"]}


def bench_torch(config, dtype, result, jax_in_this_process=True):
  """PyTorch timings and the JAX / PyTorch ratios at the matching dtype.

  `jax_in_this_process`: whether the JAX figures the ratios use were
  measured by this process (else they come from the stored row, and the
  ratio says so with their date: another process, possibly other load).
  """
  from edmdbn_jax.interop import torch_model  # pylint: disable=g-import-not-at-top
  cfg = config.copy_and_resolve_references()
  cfg.model.entire_patch_embed = "3d"  # the released layout
  tt = torch_model.benchmark(cfg, blocks=FLAGS.torch_blocks,
                             steps=FLAGS.steps,
                             compile_model=FLAGS.torch_compile)
  tt["jax_figures"] = ("same process" if jax_in_this_process else
                       "stored row of "
                       f"{result.get('measured', {}).get('train', 'unknown date')}")
  tag = "amp" if dtype == "bfloat16" else "fp32"
  tt["compared_with"] = tag
  ref = tt[f"train_{tag}_clip_steps_per_s"]
  tt["jax_1fold_over_torch_train"] = (
      result["train_1fold"]["clip_steps_per_s"] / ref)
  tt["jax_folds_over_torch_train"] = (
      result["train_folds"]["clip_steps_per_s"] / ref)
  print(f"PyTorch {tt['torch']} ({tt['blocks']} blocks, "
        f"{'compiled' if tt['compiled'] else 'eager'}, {tt['device']}): "
        f"train {tt['train_fp32_clip_steps_per_s']:.1f} clip-steps/s fp32, "
        f"{tt['train_amp_clip_steps_per_s']:.1f} bf16 autocast; inference "
        f"{1e3 * tt['infer_b1_s_fp32']:.2f} / {1e3 * tt['infer_b1_s_amp']:.2f}"
        f" ms/clip at batch 1. JAX ({dtype}) over PyTorch ({tag}): train "
        f"{tt['jax_1fold_over_torch_train']:.2f}x (1 fold), "
        f"{tt['jax_folds_over_torch_train']:.2f}x "
        f"({result['train_folds']['folds']} folds)")
  return tt


def _fmt_bytes(n):
  return "n/a (not reported by this backend)" if n is None else (
      f"{n / 2**30:.2f} GiB")


NOTES = """
## Targets and status

Targets on one H100 (issue 5): full CASME II-sized LOSO (26 folds, 60 epochs,
paper config) under 3 minutes including compilation; training throughput at
least 3x the PyTorch model's at batch 4; inference at batch 1 under 3 ms per
clip; bf16 training at 35 % or more of peak.

- **GPU rows: still to be measured.** No GPU has been lent to the sessions
  so far. On a lent H100/H200:
  `PYTHON=/path/to/python3.12 bash benchmarks/device/fetch_wheels.sh` here
  first (wheels the GPU image lacks, about 10 MB, for its Python 3.12),
  then `run(command="bash benchmarks/device/run.sh", carry=[".whl"],
  timeout_s=600)`: it checks that JAX and PyTorch both see the GPU, then
  runs the paper config in bf16 with the PyTorch side-by-side
  (`--sections=train,infer,torch`, at most 300 s, saving after each
  section) and the 60-epoch LOSO row (`--sections=loso`, at most 250 s,
  progress lines every 15 s), each under its own limit so that one cut off
  or failing does not cost the other; everything printed is also in
  `run.log`. A LOSO row cut off is rerun alone (`STEPS=loso
  LOSO_TIMEOUT=560`); `STEPS=fp32` adds the float32 row. A task's device
  time, about 15 minutes with the machine start, fits one such call and a
  short second one.
  The kit was rehearsed on CPU (`REQUIRE_GPU=0 JAX_PLATFORMS=cpu
  CFG=edmdbn_jax/configs/edmdbn.py:tiny LOSO_EPOCHS=1`), earlier also in a
  Python 3.12 / jax 0.11.2 environment shaped like the GPU image (offline
  install from the wheels); it has not run on a GPU yet. Not yet known
  there: how long the paper config compiles (the 60-epoch LOSO compiles its
  init, train and eval steps once for all 26 folds).
- **PyTorch side-by-side** (`--torch`, `pip install -e ".[bench]"`): the
  same architecture and size built from torchvision's Video Swin blocks
  (`PatchEmbed3d`, `SwinTransformerBlock` with `ShiftedWindowAttention3d`,
  `PatchMerging`; Token Attention, fusion and head from
  `edmdbn_jax/interop/torch_model.py`), with the released state-dict layout:
  44,308,903 parameters for the paper config, logits equal to the Flax
  model's to a relative 1e-4 (tests/test_torch_model.py). Eager by default
  (`--torch_compile` for torch.compile); `--torch_blocks=plain` uses the
  independent plain-PyTorch blocks instead. The ratio column compares like
  with like: a float32 row against PyTorch float32 (TF32 matmuls on CUDA,
  as JAX uses there by default), a bfloat16 row against bf16 autocast.
- **Peak FLOP rate**: vendor dense peaks (H100 SXM and H200: 989 TFLOP/s
  bf16); for float32 rows the TF32 tensor-core peak, since JAX computes
  float32 matmuls in TF32 on these GPUs by default. A plain 8192^3 bf16
  matrix product reached 769 to 798 TFLOP/s on this workplace's H200s
  (its device notes, 2026-10/11): about 80 % of the datasheet is the
  practical ceiling. The % of peak is the fold-parallel row's (`FOLDS`
  folds at once, default 8), counting the matrix products and
  convolutions only; a device kind missing from the table (e.g. an H100
  PCIe) gets "peak unknown" rather than a wrong peak.
- **Inputs**: random frames, every clip frame a random convex mix of three
  stored ones, so both branches see motion (not zeros, which can run
  faster); PyTorch gets random normal inputs. Timings are the median of 3
  calls of 20 steps after a warm-up. The PyTorch model keeps the released
  3D entire-branch embedding (1 % more multiply-adds than the JAX default
  2D one) and runs with cuDNN autotuning on.
- CPU rows use the `tiny` config on 2 cores and are for tracking progress
  only; CPU has no known peak FLOP rate, and the same command varies by up
  to about 3x between machines and with other load on the cores: compare
  figures within one row, not across sessions.
- The LOSO column of CPU rows runs fewer epochs than the paper's 60 (the
  epochs are stated in the cell); it is measured, not extrapolated.
"""


def _torch_cells(r):
  """The PyTorch columns of a result row ('not run' without --torch)."""
  tt = r.get("torch")
  if not tt:
    return ["not run"] * 3
  how = f"{tt['blocks']}{', compiled' if tt['compiled'] else ''}"
  train = (f"{tt['train_fp32_clip_steps_per_s']:.1f} / "
           f"{tt['train_amp_clip_steps_per_s']:.1f} ({how})")
  infer = f"{1e3 * tt['infer_b1_s_fp32']:.2f} / {1e3 * tt['infer_b1_s_amp']:.2f}"
  stored = tt.get("jax_figures", "same process") != "same process"
  ratio = (f"{tt['jax_1fold_over_torch_train']:.2f}x / "
           f"{tt['jax_folds_over_torch_train']:.2f}x "
           f"(vs {'bf16' if tt['compared_with'] == 'amp' else 'fp32'}"
           f"{'; JAX figures from the ' + tt['jax_figures'] if stored else ''})")
  return [train, ratio, infer]


def _mem_cell(device_peak, train_folds):
  """Device peak where the backend reports one, else XLA's buffer total."""
  if device_peak is not None:
    return f"{device_peak / 2**30:.2f}"
  xla = train_folds.get("xla_memory_bytes")
  if xla is None:
    return "n/a"
  return (f"n/a; XLA buffers of the {train_folds['folds']}-fold step: "
          f"{xla / 2**30:.2f}")


def write_table(out_dir):
  rows = []
  res_dir = os.path.join(out_dir, "results")
  for name in sorted(os.listdir(res_dir)):
    if name.endswith(".json"):
      with open(os.path.join(res_dir, name)) as f:
        rows.append(json.load(f))
  cols = ["date", "device", "config", "dtype",
          "train clip-steps/s (1 fold, B=4)", "train clip-steps/s (F folds)",
          "infer ms/clip B=1", "infer clips/s B=64", "GMAC/clip (forward)",
          "train GFLOP/clip-step", "train TFLOP/s (% peak)", "peak mem GiB",
          "compile s (1 fold / F folds)", "LOSO wall (epochs)",
          "PyTorch train clip-steps/s fp32 / bf16 (blocks)",
          "JAX / PyTorch train, 1 fold / F folds (same dtype)",
          "PyTorch infer ms/clip B=1 fp32 / bf16", "jax"]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  partial = [r for r in rows if not r.get("complete", True)]
  for r in rows:
    if not r.get("complete", True):
      continue
    tr1, trf = r["train_1fold"], r["train_folds"]
    frac = r.get("peak_fraction")
    frac_s = (f" ({100 * frac:.0f}%)" if frac is not None
              and math.isfinite(frac) else " (peak unknown)")
    mem = r.get("peak_memory_bytes")
    loso = r.get("loso")
    loso_s = "not run"
    if loso:
      n = loso.get("folds", loso["subjects"])
      of = "" if n == loso["subjects"] else f" of {loso['subjects']}"
      loso_s = f"{loso['wall_s']:.0f} s ({loso['epochs']} ep, {n}{of} folds)"
    cells = [
        r["date"], r["device"], r["config"], r["dtype"],
        f"{tr1['clip_steps_per_s']:.1f}",
        f"{trf['clip_steps_per_s']:.1f} (F={trf['folds']})",
        f"{1e3 * r['infer_b1']['per_clip_s']:.2f}",
        f"{64 / r['infer_b64']['median_s']:.1f}",
        f"{r['macs_per_clip'] / 1e9:.3f}"
        + ("" if r.get("macs_method") == "matmul" else " (XLA/2)"),
        f"{trf['flops_per_clip_step'] / 1e9:.3f}"
        + ("" if trf.get("flops_method") == "matmul" else " (XLA)"),
        f"{trf['achieved_flops'] / 1e12:.3f}{frac_s}",
        _mem_cell(mem, trf),
        f"{tr1['compile_s']:.1f} / {trf['compile_s']:.1f}",
        loso_s, *_torch_cells(r), r["versions"]["jax"]]
    lines.append("| " + " | ".join(cells) + " |")
  readme = os.path.join(out_dir, "README.md")
  intro = ("# Benchmarks\n\nMade by `python -m experiments.benchmark` "
           "(see its docstring); one row per result file in `results/`. "
           "Training throughput counts clip-steps (one clip through one "
           "forward + backward + update); train FLOP counts and rates are 2 x "
           "the multiply-adds of the train step's matrix products and "
           "convolutions, forward and backward, counted in the traced "
           "program on any backend (what a tensor-core peak is a peak of); "
           "cells marked (XLA), rows dated before 2026-12-02, used XLA's "
           "cost analysis of the lowered program instead, elementwise work "
           "included (the GPU plugin has none without compiling; for the "
           "paper config 2.4 % more than the matmul count), and rows before "
           "2026-12-01 the compiled CPU program's (for the tiny config 0.3 % "
           "more forward and 4 % more train-step FLOPs). CPU rows have no "
           "known peak. "
           "PyTorch columns: the same architecture and size built from "
           "torchvision's Video Swin blocks, timed in the same process; "
           "'fp32' uses TF32 matmuls on CUDA (JAX's float32 default there), "
           "'bf16' is autocast.\n\n")
  if partial:
    lines.append("\nIncomplete result files (a run that stopped early; not "
                 "in the table): " + ", ".join(
                     f"{r['device']} {r['config']} {r['dtype']}"
                     for r in partial) + ".")
  with open(readme, "w") as f:
    f.write(intro + "\n".join(lines) + "\n" + NOTES)
  return readme


SECTIONS = ("train", "infer", "torch", "loso")


def _sections():
  chosen = [x for x in FLAGS.sections.split(",") if x]
  bad = sorted(set(chosen) - set(SECTIONS) - {"all"})
  if bad:
    raise app.UsageError(f"--sections: unknown {bad}; choose from "
                         f"{', '.join(SECTIONS)} or all.")
  chosen = list(SECTIONS) if "all" in chosen else chosen
  if "torch" in chosen and not FLAGS.torch and FLAGS.sections == "all":
    chosen.remove("torch")
  if "loso" in chosen and not FLAGS.loso_epochs:
    if FLAGS.sections != "all":
      raise app.UsageError("--sections=loso needs --loso_epochs (the "
                           "paper: 60).")
    chosen.remove("loso")
  return chosen


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_orbax_logs()
  config = FLAGS.config
  dtype = FLAGS.dtype or config.model.dtype
  config.model.dtype = dtype
  cli.check_model_config_or_exit(config.model)
  sections = _sections()
  device = profiling.device_description()
  name = FLAGS.name or "_".join(
      [jax.devices()[0].device_kind.replace(" ", "-"),
       config.get("variant", "?"), dtype]).lower()
  os.makedirs(os.path.join(FLAGS.out, "results"), exist_ok=True)
  path = os.path.join(FLAGS.out, "results", f"{name}.json")
  result = {}
  if set(sections) != set(SECTIONS) and os.path.exists(path):
    # A subset of sections updates the existing row of this device, config
    # and dtype (e.g. the long LOSO row run on its own).
    with open(path) as f:
      result = json.load(f)
    if (result.get("config"), result.get("dtype"),
        result.get("image_size")) != (config.get("variant", "?"), dtype,
                                      int(config.data.image_size)):
      raise app.UsageError(
          f"{path} holds another config, dtype or image size ("
          f"{result.get('config')}, {result.get('dtype')}, "
          f"{result.get('image_size')} px); pass --name to write a new row.")
  now = datetime.datetime.now().isoformat(timespec="minutes")
  result.update({
      "date": datetime.date.today().isoformat(), "device": device,
      "config": config.get("variant", "?"), "dtype": dtype,
      "image_size": int(config.data.image_size),
      "versions": {"jax": jax.__version__, "python": platform.python_version()},
  })
  # The torch ratios need the JAX figures: from this run or the stored row.
  produces = {"train": ("train_1fold", "train_folds"), "infer": ("infer_b1",)}
  missing = [k for sec, keys in produces.items() if sec not in sections
             for k in keys if k not in result] if "torch" in sections else []
  if missing:
    raise app.UsageError(f"--sections=torch compares with the JAX figures; "
                         f"{path} lacks {missing}: run train,infer first.")
  print(f"Benchmark: {result['config']} config, {dtype}, {device}; "
        f"sections {', '.join(sections)} -> {path}")

  if "loso" in sections:
    # Build / load the data first: a config without a CASME II-sized
    # synthetic build fails now, not after the timed sections.
    loso_cfg = loso_config(config, FLAGS.loso_epochs,
                           FLAGS.loso_fold_parallel, FLAGS.loso_folds)
    try:
      loso_clips = train.load_data(loso_cfg)
      train.make_folds(loso_clips, list(loso_cfg.train.folds))
    except errors.ConfigError as e:
      raise app.UsageError(f"LOSO row: {e}") from e

  def save(section=None):
    # When each section was last measured (stamped once it has run): a row
    # updated by --sections mixes processes and dates, and the table says so.
    if section:
      result.setdefault("measured", {})[section] = now
    result["complete"] = all(
        k in result for k in ("train_1fold", "train_folds", "infer_b1"))
    with open(path, "w") as f:
      json.dump(result, f, indent=2)

  if "train" in sections:
    result["train_1fold"] = bench_train(config, 1, FLAGS.steps)
    print(f"train, 1 fold x batch {config.train.batch_size}: "
          f"{result['train_1fold']['clip_steps_per_s']:.1f} clip-steps/s "
          f"(compiled in {result['train_1fold']['compile_s']:.1f} s)", flush=True)
    save()
    result["train_folds"] = bench_train(config, FLAGS.fold_parallel,
                                        FLAGS.steps)
    print(f"train, {FLAGS.fold_parallel} folds at once: "
          f"{result['train_folds']['clip_steps_per_s']:.1f} clip-steps/s "
          f"(compiled in {result['train_folds']['compile_s']:.1f} s)", flush=True)
    peak = _peak(dtype)
    result.pop("peak_flops", None)
    result.pop("peak_fraction", None)
    if peak:
      result["peak_flops"] = peak
      result["peak_fraction"] = result["train_folds"]["achieved_flops"] / peak
    trf = result["train_folds"]
    print(f"train FLOP rate ({FLAGS.fold_parallel} folds; matrix products "
          f"and convolutions, {trf['flops_per_clip_step'] / 1e9:.2f} GFLOP "
          f"per clip-step): {trf['achieved_flops'] / 1e12:.3f} TFLOP/s"
          + (f", {100 * result['peak_fraction']:.1f}% of the "
             f"{peak / 1e12:.0f} TFLOP/s {dtype} peak" if peak else
             " (peak of this device unknown)"), flush=True)
    save("train")
  if "infer" in sections:
    # Multiply-adds of the matrix products and convolutions (the figure
    # papers and the reference quote); XLA's count, elementwise work
    # included, is kept beside it.
    cost = profiling.forward_cost(config, 1, dtype)
    result["macs_per_clip"] = cost["matmul_macs_per_clip"]
    result["macs_method"] = "matmul"
    result["xla_forward_flops_per_clip"] = cost["flops"]
    variables = profiling.init_variables(config, dtype)  # one init compile
    result["infer_b1"] = profiling.forward_latency(config, 1, dtype,
                                                   variables=variables)
    result["infer_b64"] = profiling.forward_latency(config, 64, dtype,
                                                    repeats=3,
                                                    variables=variables)
    print(f"inference: {1e3 * result['infer_b1']['per_clip_s']:.2f} ms/clip "
          f"at batch 1, {64 / result['infer_b64']['median_s']:.1f} clips/s "
          "at 64", flush=True)
  if "train" in sections or "infer" in sections:
    # Peak over the train and inference sections (the LOSO row has its own).
    result["peak_memory_bytes"] = _peak_memory()
    print(f"peak device memory: {_fmt_bytes(result['peak_memory_bytes'])}")
    save("infer" if "infer" in sections else None)
  if "torch" in sections:
    result["torch"] = bench_torch(config, dtype, result,
                                  jax_in_this_process="train" in sections)
    save("torch")
  if "loso" in sections:
    result["loso"] = bench_loso(loso_cfg, loso_clips)
    result["loso"]["peak_memory_bytes"] = _peak_memory()
    lo = result["loso"]
    print(f"CASME II-sized synthetic LOSO, {lo['epochs']} epochs, "
          f"{lo['folds']} of {lo['subjects']} folds: {lo['wall_s']:.1f} s "
          "including compilation")
    save("loso")
  print(f"wrote {path} and {write_table(FLAGS.out)}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
