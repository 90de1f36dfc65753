"""`python -m experiments.loso` end to end on tiny synthetic data."""

import json
import os
import subprocess
import sys

import pytest

from edmdbn_jax import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_loso(*args, data_dir, workdir=None, dataset="synthetic"):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="true")
  cmd = [sys.executable, "-m", "experiments.loso"]
  cmd += [f"--dataset={dataset}"] if dataset else []
  cmd += ["--config.data.variant=test", "--config.data.image_size=32",
         "--config.model.depths=(1,1,1)", "--config.model.embed_dim=16",
         "--config.train.progress=False", f"--data_dir={data_dir}"]
  if workdir:
    cmd.append(f"--workdir={workdir}")
  return subprocess.run(cmd + list(args), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def test_two_fold_run_writes_labelled_results(data_dir, tmp_path):
  work = tmp_path / "run"
  r = run_loso("--folds=s01,s02", "--epochs=2", "--warmup_epochs=1",
               "--num_classes=3", data_dir=data_dir, workdir=work)
  assert r.returncode == 0, r.stderr[-3000:]
  assert ("PARTIAL 2/" in r.stdout and "aggregated over all folds (MEGC "
          "pooling), fixed budget (last epoch)" in r.stdout)
  res = json.loads((work / "results.json").read_text())
  assert res["protocol"]["folds"] == 2
  total = res["protocol"]["subjects_total"]
  assert total > 2 and res["protocol"]["complete"] is False
  assert f"Partial: 2 of {total} subjects" in r.stdout
  assert res["protocol"]["selection"] == "fixed"
  assert res["class_names"] == ["negative", "positive", "surprise"]
  cfg = json.loads((work / "config.json").read_text())
  assert cfg["train"]["epochs"] == 2 and cfg["model"]["num_classes"] == 3
  assert cfg["data"]["dataset"] == "synthetic"
  # Re-running the same command finds both folds finished.
  again = run_loso("--folds=s01,s02", "--epochs=2", "--warmup_epochs=1",
                   "--num_classes=3", data_dir=data_dir, workdir=work)
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads((work / "results.json").read_text())["aggregated"] == (
      res["aggregated"])
  # The same directory with another setting is refused, naming the field.
  other = run_loso("--folds=s01,s02", "--epochs=2", "--warmup_epochs=1",
                   "--num_classes=3", "--noaccumulated_attention",
                   data_dir=data_dir, workdir=work)
  assert other.returncode == 2
  assert "model.accumulated_attention" in other.stderr


def test_contradictory_and_impossible_settings_fail_early(data_dir, tmp_path):
  r = run_loso("--epochs=3", "--config.train.epochs=5", data_dir=data_dir,
               workdir=tmp_path / "a")
  assert r.returncode == 2 and "contradicts" in r.stderr
  # Also where the --config.* value equals the variant's default (tiny: 12).
  r = run_loso("--epochs=5", "--config.train.epochs=12", data_dir=data_dir,
               workdir=tmp_path / "a2")
  assert r.returncode == 2 and "contradicts" in r.stderr
  # An explicit class count is kept, and refused where the dataset lacks it.
  r = run_loso("--dataset=smic_hs", "--config.model.num_classes=5",
               data_dir=data_dir, workdir=tmp_path / "a3")
  assert r.returncode == 2 and "no 5-class config" in r.stderr
  r = run_loso("--epochs=2", "--warmup_epochs=4", data_dir=data_dir,
               workdir=tmp_path / "b")
  assert r.returncode == 2 and "warmup_epochs" in r.stderr
  r = run_loso("--folds=s99", "--epochs=1", "--warmup_epochs=0",
               data_dir=data_dir, workdir=tmp_path / "c")
  assert r.returncode == 2 and "s99" in r.stderr
  assert not (tmp_path / "c").exists()  # no stub run directory left
  r = run_loso("--num_classes=4", data_dir=data_dir, workdir=tmp_path / "d")
  assert r.returncode == 2 and "4-class" in r.stderr
  r = run_loso("--branches=three", data_dir=data_dir, workdir=tmp_path / "e")
  assert r.returncode != 0 and "branches" in r.stderr
  r = run_loso("--config.data.dataset=casme", data_dir=data_dir,
               workdir=tmp_path / "f", dataset=None)
  assert r.returncode == 2 and "Unknown dataset 'casme'" in r.stderr
  assert "Traceback" not in r.stderr


def test_final_model_is_saved_and_loadable(data_dir, tmp_path):
  work = tmp_path / "final"
  r = run_loso("--final_model", "--epochs=1", "--warmup_epochs=0",
               "--selection=test_best", data_dir=data_dir, workdir=work)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Final model (trained on all subjects) on synthetic" in r.stdout
  assert "--selection=test_best applies to LOSO scoring only" in r.stdout
  model, variables, config, names = checkpoints.load_model(
      str(work / "final_model"))
  assert len(names) == 5 and config.train.final_model
  assert "params" in variables and model.num_classes == 5


def test_default_workdir_names_seed_and_dtype():
  from experiments import loso  # pylint: disable=g-import-not-at-top
  from edmdbn_jax.configs import edmdbn as configs  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config("tiny")
  cfg.data.dataset = "synthetic"
  assert loso.default_workdir(cfg) == os.path.join(
      "runs", "synthetic_5class_tiny")
  # A seed or dtype sweep gets its own directory (a run directory refuses
  # another config).
  cfg.train.seed = 1
  cfg.model.dtype = "bfloat16"
  cfg.model.accumulated_attention = False
  assert loso.default_workdir(cfg) == os.path.join(
      "runs", "synthetic_5class_tiny_noaa_bf16_seed1")
  # Any other setting that changes what is computed is named too (a quick
  # 1-epoch try must not take over the real run's directory); settings
  # that only schedule the work are not.
  cfg.train.epochs = 1
  cfg.train.fold_parallel = "2"
  assert loso.default_workdir(cfg) == os.path.join(
      "runs", "synthetic_5class_tiny_noaa_bf16_seed1_epochs1")
  cfg.model.depths = (1, 1, 1)
  cfg.data.image_size = 32
  cfg.train.learning_rate = 3e-4
  name = os.path.basename(loso.default_workdir(cfg))
  assert name.startswith("synthetic_5class_tiny_noaa_bf16_seed1_cfg")
  cfg.train.learning_rate = 2e-4
  assert os.path.basename(loso.default_workdir(cfg)) != name
  # Ablations are named against the variant's own defaults: the released
  # recipe's temporal 'reference' is not one, 'keyframes' is.
  rel = configs.get_config("released")
  rel.data.dataset = "casme2"
  assert loso.default_workdir(rel) == os.path.join(
      "runs", "casme2_5class_released")
  rel.data.temporal = "keyframes"
  assert loso.default_workdir(rel) == os.path.join(
      "runs", "casme2_5class_released_keyframes")


def test_bad_settings_are_one_line_errors(data_dir, tmp_path):
  cases = [
      (["--config=edmdbn_jax/configs/edmdbn.py:huge"], "variant"),
      (["--config.model.fusoin=concat"], "fusoin"),
      (["--seed=-1"], "train.seed=-1: must be >= 0"),
      (["--final_model", "--folds=s01"], "leave out --folds"),
  ]
  for args, message in cases:
    r = run_loso(*args, data_dir=data_dir, workdir=tmp_path / "w")
    assert r.returncode == 2, (args, r.stderr[-2000:])
    assert message in r.stderr and "Traceback" not in r.stderr, (
        args, r.stderr[-2000:])
  assert not (tmp_path / "w").exists()  # refused before any work
  # An override in the --config string applies as written, also where it
  # equals the 'auto' defaults (paper's 60 epochs on the tiny variant), and
  # the default run directory says so.
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  r = subprocess.run(
      [sys.executable, "-m", "experiments.loso",
       "--config=edmdbn_jax/configs/edmdbn.py:auto,epochs=60",
       "--dataset=synthetic", "--config.data.variant=test",
       "--config.data.image_size=32", f"--data_dir={data_dir}",
       "--folds=nobody"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  assert r.returncode == 2, r.stderr[-2000:]
  assert "; 60 epochs" in r.stdout and "unknown subjects" in r.stderr


def test_loso_on_a_fabricated_casme2_tree(tmp_path):
  # The README's licensed-data command end to end on a look-alike tree:
  # build from the manual directory, LOSO, score; rerun; a changed sheet.
  from tests import fabricate  # pylint: disable=g-import-not-at-top
  manual = tmp_path / "manual"
  fabricate.fabricate_casme2(manual)
  work = tmp_path / "run"
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="true")
  cmd = [sys.executable, "-m", "experiments.loso", "--dataset=casme2",
         "--config=edmdbn_jax/configs/edmdbn.py:tiny",
         f"--manual_dir={manual}", f"--data_dir={tmp_path / 'tfds'}",
         "--config.model.depths=(1,1,1)", "--config.model.embed_dim=16",
         "--epochs=2", "--warmup_epochs=1", "--config.train.progress=False",
         f"--workdir={work}"]

  def loso():
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)

  r = loso()
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads((work / "results.json").read_text())
  # 7 clips of 4 subjects (tests/test_builders.py: test_casme2_5class).
  assert res["protocol"]["complete"] and res["protocol"]["folds"] == 4
  assert res["aggregated"]["n"] == 7
  assert res["class_names"] == ["happiness", "repression", "surprise",
                                "disgust", "others"]
  assert "dataset casme2 (7 clips, 5 classes" in res["protocol"]["note"]
  assert sorted(os.listdir(work / "folds")) == [
      "casme2_sub01", "casme2_sub02", "casme2_sub04", "casme2_sub05"]
  # Each fold model records how its training frames were prepared, for
  # experiments.predict: the official crops, only resized.
  from edmdbn_jax import checkpoints  # pylint: disable=g-import-not-at-top
  prep = checkpoints.load_meta(str(work / "folds" / "casme2_sub01" / "model"))[
      "provenance"]["preprocessing"]
  assert prep["alignment"] == {"casme2": {"aligned": 0, "not_aligned": 7}}
  assert prep["greyscale"] == {"casme2": False}
  assert prep["max_stored_frames"] == 33
  assert "Cropped" in prep["frame_sources"]["casme2"]
  # Rerun: nothing retrained, the same scores.
  again = loso()
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads((work / "results.json").read_text())["aggregated"] == (
      res["aggregated"])
  # The 2019 sheet replaced by the 2014 one since the build: the prepared
  # dataset is refused, naming what changed and how to rebuild.
  (manual / "CASME2" / "CASME2-coding-20190701.xlsx").unlink()
  fabricate.fabricate_casme2(manual, sheets=("2014",))
  changed = loso()
  assert changed.returncode == 2, changed.stderr[-3000:]
  assert "no longer matches the manual directory" in changed.stderr
  assert "CASME2-coding-20190701.xlsx: read when it was built" in (
      changed.stderr)
  assert "CASME2-coding-20140508.xlsx: read now" in changed.stderr
  assert ("Rebuild it: python -m edmdbn_jax.datasets.build casme2 "
          "--config=5class_64 ") in changed.stderr


def test_baseline_cli(data_dir):
  # Every flag reaches the run (a flag defined but not read broke the CLI).
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  r = subprocess.run(
      [sys.executable, "-m", "experiments.baseline", "--variant=test",
       "--image_size=32", f"--data_dir={data_dir}", "--grid=4", "--l2=0.1",
       "--steps=20"], cwd=ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "LOSO, aggregated over folds, fixed budget: UF1" in r.stdout
  assert "percentile bootstrap over the" in r.stdout
