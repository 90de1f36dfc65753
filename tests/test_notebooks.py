"""notebooks/real_datasets.ipynb, run on a fabricated CASME II look-alike.

The notebook needs licensed data, so nbmake does not collect it (setup.cfg);
this test runs every cell in its quick mode (EDMDBN_NOTEBOOK_QUICK=1, set by
conftest: the tiny model at 64 px, 1 epoch, one ablation) against a tree
that tests/fabricate.py writes, and checks what each section leaves behind.
"""

import json
import pathlib

import nbclient
import nbformat

from tests import fabricate

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_real_datasets_notebook_on_a_fabricated_casme2_tree(tmp_path,
                                                            monkeypatch):
  # The notebook's one manual directory holds each dataset's folder
  # (here only me_data/CASME2).
  fabricate.fabricate_casme2(tmp_path / "me_data")
  monkeypatch.setenv("EDMDBN_MANUAL_DIR", str(tmp_path / "me_data"))
  monkeypatch.setenv("EDMDBN_DATA_DIR", str(tmp_path / "tensorflow_datasets"))
  monkeypatch.setenv("EDMDBN_NOTEBOOK_QUICK", "1")
  nb = nbformat.read(REPO / "notebooks" / "real_datasets.ipynb", as_version=4)
  client = nbclient.NotebookClient(
      nb, timeout=900, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # Raises CellExecutionError naming the failing cell.

  printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.outputs)
  # 7 labelled clips of the 5 classes (tests/test_builders.py).
  assert "7 clips" in printed
  run = tmp_path / "runs" / "casme2_5class_tiny"
  res = json.loads((run / "results.json").read_text())
  assert res["protocol"]["folds"] == 4
  assert (run / "confusion.png").is_file() and (run / "curves.png").is_file()
  ablation = tmp_path / "runs" / "casme2_5class_tiny_noaa"
  assert json.loads((ablation / "config.json").read_text())[
      "model"]["accumulated_attention"] is False
  compare_md = (tmp_path / "runs" / "casme2_5class_tiny_ablations" /
                "compare.md").read_text()
  assert "casme2_5class_tiny_noaa" in compare_md
  panels = sorted((run / "gradcam").rglob("*.png"))
  assert any(p.name == "class_means.png" for p in panels) and len(panels) >= 2
