"""`python -m experiments.benchmark` end to end on a tiny 64 px model.

Checks what the command writes (result file, table), that a subset of
sections updates an existing row, and its refusals. Speed itself is never
asserted here: figures come from the benchmark command, not from tests.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config=edmdbn_jax/configs/edmdbn.py:tiny",
        "--config.data.image_size=64", "--config.model.depths=(1,1,1)",
        "--config.model.embed_dim=16", "--steps=2", "--fold_parallel=2",
        "--name=t"]


def run_benchmark(*args, out, data_dir=None):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="true")
  if data_dir:
    env["TFDS_DATA_DIR"] = str(data_dir)
  return subprocess.run(
      [sys.executable, "-m", "experiments.benchmark", *TINY, f"--out={out}",
       *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def _row(out):
  return json.loads((out / "results" / "t.json").read_text())


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench")
  r = run_benchmark(out=out)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "clip-steps/s" in r.stdout and "ms/clip at batch 1" in r.stdout
  assert "TFLOP/s (peak of this device unknown)" in r.stdout
  return out


def test_writes_result_file_and_table(bench_out):
  row = _row(bench_out)
  assert row["complete"] and row["config"] == "tiny"
  assert row["dtype"] == "float32" and row["image_size"] == 64
  assert row["train_1fold"]["folds"] == 1 and row["train_folds"]["folds"] == 2
  for key in ("train_1fold", "train_folds"):
    assert row[key]["clip_steps_per_s"] > 0 and row[key]["compile_s"] > 0
    assert row[key]["flops_per_clip_step"] > 0
    assert row[key]["flops_method"] == "matmul"
    assert len(row[key]["seconds_each"]) == row[key]["repeats"] == 3
    # CPU also gives XLA's count of the lowered step: the same matrix
    # products plus the elementwise work.
    ratio = row[key]["xla_flops_per_clip_step"] / row[key]["flops_per_clip_step"]
    assert 1.0 < ratio < 1.5, ratio
  assert row["macs_per_clip"] > 0
  assert row["infer_b1"]["batch"] == 1 and row["infer_b64"]["batch"] == 64
  assert "torch" not in row and "loso" not in row
  table = (bench_out / "README.md").read_text()
  line = next(l for l in table.splitlines() if "| tiny | float32 |" in l)
  assert line.count("not run") == 4  # LOSO and the three PyTorch columns
  assert "(F=2)" in line and "(peak unknown)" in line
  # CPU reports no device peak: the cell gives XLA's buffers of the step,
  # which grow with the folds trained at once (a state per fold).
  assert (row["train_folds"]["xla_memory_bytes"]
          > row["train_1fold"]["xla_memory_bytes"] > 0)
  assert "XLA buffers of the 2-fold step" in line


def test_loso_section_updates_the_row(bench_out, tmp_path):
  before = _row(bench_out)
  # Two of the 26 folds (a smoke run, and labelled as one).
  r = run_benchmark("--sections=loso", "--loso_epochs=1",
                    "--loso_folds=s01,s02", "--loso_fold_parallel=2",
                    out=bench_out, data_dir=tmp_path / "tfds")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "LOSO, 1 epochs, 2 of 26 folds" in r.stdout
  assert "LOSO row: 2 folds, 2 at once (fold_parallel=2)" in r.stdout
  # Not a terminal: plain progress lines instead of a bar.
  assert "LOSO: " in r.stderr and "clip-epochs (100%)" in r.stderr
  row = _row(bench_out)
  assert row["train_1fold"] == before["train_1fold"]  # kept, not re-run
  loso = row["loso"]
  assert loso["subjects"] == 26 and loso["folds"] == 2 and loso["epochs"] == 1
  assert loso["folds_at_once"] == 2
  assert 200 <= loso["clips"] <= 300 and loso["wall_s"] > 0
  assert 0.0 <= loso["uf1_aggregated_fixed"] <= 1.0
  assert "s (1 ep, 2 of 26 folds)" in (bench_out / "README.md").read_text()


def test_torch_section_compares_like_with_like(bench_out):
  pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  r = run_benchmark("--sections=torch", "--torch", out=bench_out)
  assert r.returncode == 0, r.stderr[-3000:]
  tt = _row(bench_out)["torch"]
  assert tt["blocks"] == "torchvision" and tt["compared_with"] == "fp32"
  assert tt["train_fp32_clip_steps_per_s"] > 0
  assert tt["jax_folds_over_torch_train"] > 0
  assert "(torchvision)" in (bench_out / "README.md").read_text()
  # Run alone, the ratio uses the stored JAX figures, and says whose.
  assert tt["jax_figures"].startswith("stored row of 20")
  assert "JAX figures from the stored row of" in (
      bench_out / "README.md").read_text()
  assert set(_row(bench_out)["measured"]) >= {"train", "infer", "torch"}


@pytest.mark.parametrize("args,message", [
    (["--sections=train,bogus"], "unknown ['bogus']"),
    (["--sections=torch", "--torch"], "run train,infer first"),
    (["stray"], "Unexpected arguments"),
    (["--sections=loso", "--loso_epochs=1", "--config.data.image_size=32"],
     "no 5-class config at 32 px"),
    (["--sections=loso"], "needs --loso_epochs"),
    (["--sections=loso", "--loso_epochs=1", "--loso_folds=s99"],
     "unknown subjects ['s99']"),
])
def test_refusals(tmp_path, args, message):
  r = run_benchmark(*args, out=tmp_path)
  assert r.returncode != 0
  assert message in r.stderr, r.stderr[-2000:]
  assert not (tmp_path / "results" / "t.json").exists()


def test_subset_refuses_a_row_of_another_image_size(bench_out):
  r = run_benchmark("--sections=infer", "--config.data.image_size=32",
                    out=bench_out)
  assert r.returncode != 0
  assert "holds another config, dtype or image size" in r.stderr


def test_incomplete_rows_are_listed_not_tabulated(tmp_path):
  (tmp_path / "results").mkdir()
  (tmp_path / "results" / "x.json").write_text(json.dumps({
      "date": "2026-11-25", "device": "1 x NVIDIA H100", "config": "paper",
      "dtype": "bfloat16", "complete": False,
      "train_1fold": {"clip_steps_per_s": 1.0}}))
  # In a subprocess: the benchmark module defines its absl flags on import.
  r = subprocess.run(
      [sys.executable, "-c", "import sys; from experiments import benchmark; "
       "print(benchmark.write_table(sys.argv[1]))", str(tmp_path)],
      cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  text = (tmp_path / "README.md").read_text()
  assert "Incomplete result files" in text
  assert "1 x NVIDIA H100 paper bfloat16" in text
  assert "| 2026-11-25 |" not in text


def test_random_clips_move_in_both_branches():
  """Every frame a random convex mix of the stored frames: neither branch's
  motion is zero (the benchmark must not time zeros)."""
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  from edmdbn_jax.configs import edmdbn as configs  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config("tiny")
  data = benchmark.random_clips_data(cfg, n=4)
  w = np.asarray(data["weights"])
  np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-6)
  assert (w > 0).sum(-1).min() > 1
  # Adjacent output frames differ, so the detail branch sees motion.
  assert np.abs(np.diff(w, axis=1)).max() > 0.05


def test_train_flops_without_xla_cost_analysis(monkeypatch):
  """On the GPU (no lowered cost analysis) the FLOP rate still comes out,
  from the traced program's matrix products, the same count as on CPU."""
  from experiments import benchmark  # pylint: disable=g-import-not-at-top
  from edmdbn_jax import profiling  # pylint: disable=g-import-not-at-top
  from edmdbn_jax.configs import edmdbn as configs  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config("tiny")
  cfg.data.image_size = 32
  cfg.model.depths = (1, 1, 1)
  cfg.model.embed_dim = 16
  cpu = benchmark.bench_train(cfg, 1, 2, repeats=1)
  monkeypatch.setattr(profiling, "lowered_cost_available", lambda: False)
  gpu_like = benchmark.bench_train(cfg, 1, 2, repeats=1)
  assert cpu["xla_flops_per_clip_step"] > 0
  assert gpu_like["xla_flops_per_clip_step"] is None
  assert gpu_like["flops_per_clip_step"] == cpu["flops_per_clip_step"] > 0
  assert np.isfinite(gpu_like["achieved_flops"])
