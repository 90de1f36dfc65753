#!/usr/bin/env bash
# Run ON THE GPU MACHINE through the device tool, from the repository root,
# after benchmarks/device/fetch_wheels.sh has built .whl/ here:
#   run(command="bash benchmarks/device/run.sh", carry=[".whl"])
# Installs the carried wheels offline, then measures the paper config on the
# GPU: bf16 and float32 rows with the PyTorch (torchvision) side-by-side, then
# the CASME II-sized synthetic LOSO at 60 epochs. Each step writes its result
# file as it goes (benchmarks' --sections), so a step cut off by the 10-minute
# limit keeps what it measured; results and the regenerated table land in
# $OUT (copy them into benchmarks/results/ and rerun
# `python -m experiments.benchmark` or write_table to refresh the README).
#
# One device call may run 10 minutes at most. If all steps do not fit, split
# them over calls, e.g. run(command="STEPS=bf16 bash benchmarks/device/run.sh",
# carry=[".whl"]), then STEPS=loso, then STEPS=fp32; before each next call
# copy the returned results/*.json into benchmarks/results/ here, so the LOSO
# step adds to the bf16 row instead of starting an incomplete one.
#
# STEPS: which steps to run, in order (default all, most telling first:
# bf16 loso fp32). A task is lent about 15 minutes of device time in all,
# machine start included, so the bf16 row (the issue's throughput, % of
# peak, latency and PyTorch-ratio targets) and the 60-epoch LOSO row (the
# 3-minute target) come first; the float32 row is the extra.
# FOLDS: folds trained at once for the fold-parallel row (default 8).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-benchmarks}"
STEPS="${STEPS:-bf16 loso fp32}"
FOLDS="${FOLDS:-8}"
PY="${PY:-python3}"
if [ -d .whl ]; then
  "$PY" -m pip install --quiet --no-index --find-links .whl \
    ml_collections tensorflow-datasets array_record tensorboardX
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TFDS_DATA_DIR="${TFDS_DATA_DIR:-/tmp/tensorflow_datasets}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" -c 'import jax, flax, optax, torch, torchvision; print("jax", jax.__version__, jax.devices(), "flax", flax.__version__, "torch", torch.__version__, "torchvision", torchvision.__version__)'
mkdir -p "$OUT/results"
cp benchmarks/results/*.json "$OUT/results/" 2>/dev/null || true
CFG=edmdbn_jax/configs/edmdbn.py:paper
for step in $STEPS; do
  case "$step" in
    bf16|fp32)
      dtype=$([ "$step" = bf16 ] && echo bfloat16 || echo float32)
      # JAX preallocates 75% of GPU memory by default; the PyTorch timings
      # run afterwards in the same process and need room of their own.
      XLA_PYTHON_CLIENT_MEM_FRACTION="${JAX_MEM_FRACTION:-0.6}" \
      "$PY" -m experiments.benchmark --config="$CFG" --dtype="$dtype" \
        --fold_parallel="$FOLDS" --torch --sections=train,infer,torch \
        --out="$OUT" ;;
    loso)
      "$PY" -m experiments.benchmark --config="$CFG" --dtype=bfloat16 \
        --loso_epochs=60 --sections=loso --out="$OUT" ;;
    *) echo "run.sh: unknown step $step (bf16 fp32 loso)" >&2; exit 2 ;;
  esac
done
