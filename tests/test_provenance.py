"""edmdbn_jax.provenance: what a run records about its code and machine."""

import json
import pathlib
import shutil
import subprocess

import pytest

from edmdbn_jax import provenance

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_changed_files_parses_renames_and_spaces():
  out = " M README.md\0R  new name.md\0old name.md\0 D gone.py\0"
  assert provenance.changed_files(out) == ["README.md", "new name.md",
                                           "gone.py"]
  assert provenance.changed_files("") == []


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs the package's git checkout")
def test_git_state_is_the_checkout_the_package_comes_from():
  head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                        capture_output=True, text=True, check=True)
  state = provenance.git_state()
  assert state["commit"] == head.stdout.strip()
  assert state["dirty"] == bool(state["changed_files"])


def test_append_invocation_appends_one_line_per_call(tmp_path):
  provenance.append_invocation(str(tmp_path), folds_to_train=["a"])
  provenance.append_invocation(str(tmp_path), folds_to_train=[])
  log = provenance.read_invocations(str(tmp_path))
  assert [e["folds_to_train"] for e in log] == [["a"], []]
  for entry in log:
    assert entry["toolkit"] and entry["packages"]["jax"]
    assert entry["devices"]["count"] >= 1 and entry["python"]
    assert "JAX_PLATFORMS" in entry["env"]  # set by tests/conftest.py
  lines = (tmp_path / "invocations.jsonl").read_text().splitlines()
  assert [json.loads(l)["time"] for l in lines] == [e["time"] for e in log]
