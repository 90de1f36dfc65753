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
# Compile time dominates these tests: fast compiles, also in the CLI and
# notebook subprocesses, and one persistent compilation cache shared by the
# xdist workers and subprocesses, so a step that several tests compile (the
# tiny config at the same shapes) is compiled once per test run. Entries are
# keyed by the program and the compile options, so a hit is the same
# executable; the cache lives in .pytest_cache (git-ignored).
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(REPO, ".pytest_cache", "jax_compilation"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
_paths = [os.path.abspath(p) for p in
          os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [REPO] + [p for p in _paths if p != REPO])

import jax  # pylint: disable=g-import-not-at-top

jax.config.update("jax_disable_most_optimizations", True)
