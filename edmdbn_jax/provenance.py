"""What a run was made with: code, packages, device, command line.

`append_invocation` adds one JSON line per `train_and_evaluate` call to
`<workdir>/invocations.jsonl` (append-only: a resumed run lists every call
that trained part of it), so a published number can be traced to the code
and environment that produced it. Results depend on more than the config:
float rounding differs between devices, XLA options and fold groupings
(fold_parallel), and compounds over training.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from typing import Any, Dict, Optional

import jax

import edmdbn_jax

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
            "tensorflow-datasets", "opencv-python-headless", "dlib-bin",
            "ml-collections")


def _version(name: str) -> Optional[str]:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def git_state() -> Optional[Dict[str, Any]]:
  """{'commit', 'dirty'} of the checkout the package is imported from;
  None when it is not a git checkout (an installed wheel) or git is
  missing."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(
      edmdbn_jax.__file__)))

  def git(*args):
    return subprocess.run(["git", "-C", root, *args], capture_output=True,
                          text=True, timeout=10)
  try:
    top = git("rev-parse", "--show-toplevel")
    # The package's own checkout only: a copy installed inside some other
    # repository (a virtual environment in a project) is not this code's.
    if top.returncode or os.path.realpath(top.stdout.strip()) != (
        os.path.realpath(root)):
      return None
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "-z", "--untracked-files=no")
  except (OSError, subprocess.SubprocessError):
    return None
  if commit.returncode or status.returncode:
    return None
  changed = changed_files(status.stdout)
  return {"commit": commit.stdout.strip(), "dirty": bool(changed),
          "changed_files": changed[:20]}


def changed_files(porcelain_z: str) -> list:
  """Paths from `git status --porcelain -z`: 'XY path' entries separated
  by NUL; a rename or copy adds its source path as the next entry."""
  changed, entries = [], porcelain_z.split("\0")
  i = 0
  while i < len(entries):
    entry = entries[i]
    if len(entry) > 3:
      changed.append(entry[3:])
      if entry[0] in "RC":
        i += 1
    i += 1
  return changed


def environment() -> Dict[str, Any]:
  """Toolkit version and checkout, package versions, Python, devices and
  the JAX/XLA environment variables in effect."""
  devices = jax.devices()
  return {
      "toolkit": edmdbn_jax.__version__,
      "git": git_state(),
      "packages": {p: _version(p) for p in PACKAGES},
      "python": platform.python_version(),
      "platform": platform.platform(),
      "devices": {"count": len(devices), "platform": devices[0].platform,
                  "kind": devices[0].device_kind},
      "env": {k: v for k, v in sorted(os.environ.items())
              if k.startswith(("JAX_", "XLA_", "TF_CPP", "CUDA_VISIBLE",
                               "TFDS_DATA_DIR"))},
      "jax_flags": {k: str(jax.config.values.get(k)) for k in (
          "jax_disable_most_optimizations", "jax_default_matmul_precision",
          "jax_enable_x64") if k in jax.config.values},
  }


def training_label(folds_at_once: int, mesh) -> str:
  """How a fold's epochs were computed, e.g. '3 folds at a time on 1 cpu
  device (cpu; mesh fold 1 x data 1)': the fold grouping (fold_parallel),
  the devices and how the mesh splits them change the float rounding,
  which compounds over training."""
  devices = mesh.devices.flatten()
  d = devices[0]
  n = len(devices)
  return (f"{folds_at_once} fold{'s' if folds_at_once != 1 else ''} at a "
          f"time on {n} {d.platform} device{'s' if n != 1 else ''} "
          f"({d.device_kind}; mesh fold {mesh.shape['fold']} x data "
          f"{mesh.shape['data']})")


def append_invocation(workdir: str, **facts) -> str:
  """Appends one line (time, command line, `environment()`, `facts`) to
  `<workdir>/invocations.jsonl`; returns its path."""
  path = os.path.join(workdir, "invocations.jsonl")
  entry = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "argv": list(sys.argv), **environment(), **facts}
  with open(path, "a", encoding="utf-8") as f:
    f.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
  return path


def read_invocations(workdir: str) -> list:
  path = os.path.join(workdir, "invocations.jsonl")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
