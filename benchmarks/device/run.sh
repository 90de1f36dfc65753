#!/usr/bin/env bash
# Run ON THE GPU MACHINE through the device tool, from the repository root,
# after benchmarks/device/fetch_wheels.sh has built .whl/ here:
#   run(command="bash benchmarks/device/run.sh", carry=[".whl"], timeout_s=600)
# Installs the carried wheels offline, checks that JAX and PyTorch both see
# the GPU, then measures the paper config: the bf16 row with the PyTorch
# (torchvision) side-by-side, then the CASME II-sized synthetic LOSO at 60
# epochs. Results, the regenerated table and the whole log (run.log) land
# in $OUT: copy results/*.json into benchmarks/results/ here and run
# `python -c "from experiments import benchmark; benchmark.write_table('benchmarks')"`.
#
# One device call may run 10 minutes at most, and a task is lent about 15
# minutes of device time in all, machine start included. So each step runs
# under its own time limit and a step that fails or is cut off does not stop
# the next:
#   bf16  (BF16_TIMEOUT, default 300 s): train 1 fold and FOLDS folds,
#         inference, PyTorch; the result file is saved after each section,
#         so a cut keeps what was measured (the issue's throughput, % of
#         peak, latency and PyTorch-ratio targets).
#   loso  (LOSO_TIMEOUT, default 250 s): the 60-epoch LOSO row (the
#         3-minute target). Its result is written at the end only; cut off,
#         its progress lines in run.log show how far it got and how fast:
#         rerun it alone with more time, STEPS=loso LOSO_TIMEOUT=560.
#   fp32  (FP32_TIMEOUT, default 300 s): the float32 row, not run by default.
# Before a second call copy the returned results/*.json into
# benchmarks/results/ here, so a later step adds to its row.
#
# STEPS: steps in order (default "bf16 loso"). FOLDS: folds trained at once
# for the fold-parallel row (default 8). PY: the Python (default python3).
# REQUIRE_GPU=0 (with JAX_PLATFORMS=cpu) rehearses the script on a CPU,
# e.g. with CFG=edmdbn_jax/configs/edmdbn.py:tiny LOSO_EPOCHS=1.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-benchmarks}"
STEPS="${STEPS:-bf16 loso}"
FOLDS="${FOLDS:-8}"
PY="${PY:-python3}"
REQUIRE_GPU="${REQUIRE_GPU:-1}"
mkdir -p "$OUT/results"
export PYTHONUNBUFFERED=1

# The steps (not indented: they hold a here-document).
main() {
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TFDS_DATA_DIR="${TFDS_DATA_DIR:-/tmp/tensorflow_datasets}"
if [ "$REQUIRE_GPU" = 1 ]; then
  # Fail now rather than benchmark a CPU fallback for minutes.
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cuda}"
fi
echo "run.sh $(date -u +%FT%TZ): STEPS='$STEPS' FOLDS=$FOLDS"

need="ml_collections tensorflow-datasets array_record tensorboardX"
if [ -d .whl ]; then
  "$PY" -m pip show protobuf etils 2>/dev/null | grep -E '^(Name|Version)' || true
  if ! "$PY" -m pip install --quiet --no-compile --no-index --find-links .whl \
      $need; then
    # The image's version of a dependency the wheels were resolved against
    # (e.g. protobuf) may be older: install the carried wheels as they are.
    echo "run.sh: resolving against the image failed; installing the" \
         "carried wheels without their dependency checks" >&2
    "$PY" -m pip install --quiet --no-compile --no-index --no-deps .whl/*.whl
  fi
elif ! "$PY" -c 'import ml_collections, tensorflow_datasets' 2>/dev/null; then
  echo "run.sh: no .whl/ here and the toolkit's packages are missing: run" \
       "benchmarks/device/fetch_wheels.sh on the machine with PyPI and pass" \
       "carry=[\".whl\"]" >&2
  return 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"$PY" - "$REQUIRE_GPU" <<'EOF' || return 3
import sys
import jax, flax, optax, torch, torchvision
print("jax", jax.__version__, jax.devices(), "flax", flax.__version__,
      "torch", torch.__version__, "torchvision", torchvision.__version__,
      "torch.cuda", torch.cuda.is_available())
if sys.argv[1] == "1":
  assert jax.default_backend() == "gpu", f"JAX runs on {jax.default_backend()}"
  assert torch.cuda.is_available(), "PyTorch does not see the GPU"
EOF

CFG="${CFG:-edmdbn_jax/configs/edmdbn.py:paper}"
failed=()
for step in $STEPS; do
  case "$step" in
    bf16|fp32)
      dtype=$([ "$step" = bf16 ] && echo bfloat16 || echo float32)
      limit=$([ "$step" = bf16 ] && echo "${BF16_TIMEOUT:-300}" \
                                 || echo "${FP32_TIMEOUT:-300}")
      echo "run.sh: step $step (limit ${limit} s)"
      # JAX preallocates 75% of GPU memory by default; the PyTorch timings
      # run afterwards in the same process and need room of their own.
      XLA_PYTHON_CLIENT_MEM_FRACTION="${JAX_MEM_FRACTION:-0.6}" \
      timeout "$limit" "$PY" -m experiments.benchmark --config="$CFG" \
        --dtype="$dtype" --fold_parallel="$FOLDS" --torch \
        --sections=train,infer,torch --out="$OUT" ;;
    loso)
      limit="${LOSO_TIMEOUT:-250}"
      echo "run.sh: step loso (limit ${limit} s)"
      timeout "$limit" "$PY" -m experiments.benchmark --config="$CFG" \
        --dtype=bfloat16 --loso_epochs="${LOSO_EPOCHS:-60}" --sections=loso --out="$OUT" ;;
    *) echo "run.sh: unknown step $step (bf16 loso fp32)" >&2; false ;;
  esac
  rc=$?
  if [ "$rc" != 0 ]; then
    why=$([ "$rc" = 124 ] && echo "cut off by its limit" || echo "exit $rc")
    echo "run.sh: step $step did not finish ($why); going on" >&2
    failed+=("$step")
  fi
done
ls -l "$OUT/results"
if [ "${#failed[@]}" != 0 ]; then
  echo "run.sh: unfinished steps: ${failed[*]}" >&2
  return 1
fi
}

# Everything printed goes to $OUT/run.log too, unbuffered: a step killed by
# its limit keeps its lines.
main 2>&1 | tee -a "$OUT/run.log"
exit "${PIPESTATUS[0]}"
