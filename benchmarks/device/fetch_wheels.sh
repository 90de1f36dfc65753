#!/usr/bin/env bash
# Run HERE (a machine with PyPI), before asking for a GPU machine: builds
# .whl/ at the repository root with wheels, for the GPU machine's Python
# (3.12), of what the toolkit's benchmark and LOSO need that the GPU image
# lacks (ml_collections, tensorflow-datasets, array_record, tensorboardX and
# their missing dependencies). Packages already in the image
# (image_packages.txt) are left out, so .whl/ stays far under the 64 MiB that
# may travel with the working tree. Then, with the device tool:
#   run(command="bash benchmarks/device/run.sh", carry=[".whl"])
#
# PYTHON: a Python 3.12 interpreter (default: python3.12 on PATH).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-python3.12}"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version' \
  || { echo "fetch_wheels.sh: $PYTHON is not Python 3.12 (the GPU image's);" \
            "set PYTHON=/path/to/python3.12" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
# pip wheel builds wheels for sdist-only dependencies (promise) as well.
"$work/venv/bin/python" -m pip wheel --quiet -w "$work/all" \
  ml_collections tensorflow-datasets array_record tensorboardX
rm -rf .whl && mkdir .whl
norm() { tr 'A-Z_.' 'a-z--' ; }
grep -v '^#' benchmarks/device/image_packages.txt | norm | sort -u \
  > "$work/present"
for w in "$work"/all/*.whl; do
  name="$(basename "$w" | cut -d- -f1 | norm)"
  if ! grep -qx "$name" "$work/present"; then cp "$w" .whl/; fi
done
ls .whl
du -sh .whl
