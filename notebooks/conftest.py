"""Notebook runs (nbmake) get the tests' environment (tests/conftest.py).

So `pytest notebooks/quickstart.ipynb` alone runs the notebook in quick mode
with the repository importable, as the full `pytest -n 2` run does.
"""

import pathlib
import runpy

runpy.run_path(str(pathlib.Path(__file__).resolve().parents[1] / "tests" /
                   "conftest.py"))
