"""Test-wide settings: CPU, fast compiles (the tests use tiny models).

The environment set here is inherited by subprocesses, including the Jupyter
kernel nbmake starts for notebooks/quickstart.ipynb: EDMDBN_NOTEBOOK_QUICK=1
makes the notebook use its quick settings, and the repository root goes on
PYTHONPATH (as an absolute path: the kernel runs in notebooks/).
"""

import os
import pathlib

REPO = str(pathlib.Path(__file__).resolve().parents[1])

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("EDMDBN_NOTEBOOK_QUICK", "1")
_paths = [os.path.abspath(p) for p in
          os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO] + [p for p in _paths if p != REPO])

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_disable_most_optimizations", True)
