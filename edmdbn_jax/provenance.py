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
  try:
    commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"],
                            capture_output=True, text=True, timeout=10)
    if commit.returncode:
      return None
    status = subprocess.run(
        ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return {"commit": commit.stdout.strip(),
          "dirty": bool(status.stdout.strip()),
          "changed_files": status.stdout.split()[1::2][:20]}


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
