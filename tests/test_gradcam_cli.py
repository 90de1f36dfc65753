"""experiments.gradcam on a real (tiny) LOSO run of the synthetic dataset.

One 2-fold, 1-epoch LOSO run on the synthetic_me 'test' variant (4 subjects x
4 clips, 32 px) is shared by the module; then the panels, maps and errors of
`experiments.gradcam.run` and of its CLI are checked.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest

from edmdbn_jax import errors
from edmdbn_jax import train
from edmdbn_jax.configs import edmdbn as configs
from experiments import gradcam

REPO = pathlib.Path(__file__).resolve().parents[1]
FOLDS = ("synthetic/s01", "synthetic/s02")


def tiny_loso_config(data_dir):
  cfg = configs.get_config("tiny,num_classes=5")
  cfg.data.dataset = "synthetic"
  cfg.data.variant = "test"
  cfg.data.image_size = 32
  cfg.data.data_dir = str(data_dir)
  cfg.model.depths = (1, 1, 1)
  cfg.model.embed_dim = 16
  cfg.train.epochs = 1
  cfg.train.warmup_epochs = 0
  cfg.train.folds = FOLDS
  cfg.train.progress = False
  return cfg


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """(workdir, clips) of a finished 2-fold LOSO run."""
  root = tmp_path_factory.mktemp("gradcam")
  cfg = tiny_loso_config(root / "tfds")
  workdir = root / "run"
  train.train_and_evaluate(cfg, str(workdir))
  clips = train.load_data(cfg)
  return workdir, clips


def _held_out(clips, subject):
  return [str(c) for c in clips.clips[clips.subjects == subject]]


def _check_outputs(out_dir, names, k=5):
  for name in names:
    png = out_dir / f"{name}.png"
    assert png.stat().st_size > 1000, png
    img = mpimg.imread(str(png))
    assert img.ndim == 3 and img.shape[1] > img.shape[0]
    cams = np.load(out_dir / f"{name}_cams.npy")
    assert cams.ndim == 3 and cams.shape[0] == k
    assert np.isfinite(cams).all()
    assert cams.min() >= 0.0 and cams.max() <= 1.0 + 1e-6
    # The drawn maps are the signed ones, ReLU'd and scaled to their max.
    signed = np.maximum(np.load(out_dir / f"{name}_signed.npy"), 0)
    assert signed.shape == cams.shape
    peak = signed.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        cams, np.where(peak > 0, signed / np.where(peak > 0, peak, 1), 0),
        rtol=1e-5, atol=1e-6)
    with np.load(out_dir / f"{name}_attention.npz") as att:
      assert set(att.files) == {f"{b}_attention{i}" for b in
                                ("entire", "detail") for i in (1, 2, 3)}
      for key in att.files:
        assert np.isfinite(att[key]).all() and att[key].ndim == 2


def test_run_writes_panels_for_every_held_out_clip(run_dir):
  workdir, clips = run_dir
  names = _held_out(clips, "synthetic/s02")
  assert len(names) == 4
  # The fold may be named as the subject without its dataset prefix.
  paths = gradcam.run(str(workdir), fold_name="s02", progress=False)
  out_dir = workdir / "gradcam" / "synthetic_s02"
  assert sorted(paths) == sorted(
      [str(out_dir / f"{n}.png") for n in names]
      + [str(out_dir / "class_means.png")])
  _check_outputs(out_dir, names)
  assert sorted(os.listdir(out_dir)) == sorted(
      [f"{n}{s}" for n in names for s in (".png", "_cams.npy", "_signed.npy",
                                          "_attention.npz")]
      + ["class_means.png", "class_means.npz"])
  # Per class: the mean of its clips' true-class maps.
  labels = {str(c): int(l) for c, l in zip(clips.clips, clips.labels)}
  with np.load(out_dir / "class_means.npz") as means:
    assert means["counts"].sum() == 4
    for c in range(5):
      mine = [np.load(out_dir / f"{n}_cams.npy")[c] for n in names
              if labels[n] == c]
      assert means["counts"][c] == len(mine)
      assert means["empty"][c] == sum(not m.any() for m in mine)
      if mine:
        np.testing.assert_allclose(means["cams"][c], np.mean(mine, 0),
                                   rtol=1e-5, atol=1e-6)
    assert 0 <= means["correct"].sum() <= 4
  assert mpimg.imread(str(out_dir / "class_means.png")).size > 0


def test_all_folds_with_class_means_over_the_dataset(run_dir, tmp_path):
  workdir, clips = run_dir
  out = tmp_path / "all"
  paths = gradcam.run(str(workdir), fold_name="all", output=str(out),
                      progress=False)
  names = {f: _held_out(clips, f"synthetic/{f[-3:]}")
           for f in ("synthetic_s01", "synthetic_s02")}
  want = []
  for f in sorted(names):
    want += [str(out / f / f"{n}.png") for n in names[f]]
    want.append(str(out / f / "class_means.png"))
  assert paths == want + [str(out / "class_means.png")]
  for f, ns in names.items():
    _check_outputs(out / f, ns)
  with np.load(out / "class_means.npz") as means:
    assert means["counts"].sum() == sum(len(v) for v in names.values())
    # Each clip explained by the model that held it out (the last epoch's):
    # as many right as the run's fixed-budget confusion matrix says.
    scored = json.loads((workdir / "results.json").read_text())
    assert means["correct"].sum() == np.trace(
        scored["aggregated"]["confusion"])
  with pytest.raises(errors.ConfigError, match="leave out --clips"):
    gradcam.run(str(workdir), fold_name="all", clip_names=["x"])


def test_run_on_chosen_clips_and_targets(run_dir, tmp_path):
  workdir, clips = run_dir
  name = _held_out(clips, "synthetic/s01")[2]
  for target in ("entire", "detail"):
    out = tmp_path / target
    paths = gradcam.run(str(workdir), fold_name="synthetic_s01",
                        clip_names=[name], target=target, output=str(out),
                        progress=False)
    assert paths == [str(out / f"{name}.png"), str(out / "class_means.png")]
    _check_outputs(out, [name])
  # By default each target has its own folder: a branch's maps do not
  # overwrite the fused ones.
  paths = gradcam.run(str(workdir), fold_name="synthetic_s01",
                      clip_names=[name], target="entire", progress=False)
  assert paths[0] == str(workdir / "gradcam_entire" / "synthetic_s01" /
                         f"{name}.png")
  # Grad-CAM (the other method) has a folder of its own, and other maps.
  paths = gradcam.run(str(workdir), fold_name="synthetic_s01",
                      clip_names=[name], target="entire", progress=False,
                      method="gradcam")
  out = workdir / "gradcam_entire_method_gradcam" / "synthetic_s01"
  assert paths[0] == str(out / f"{name}.png")
  _check_outputs(out, [name])
  hires = np.load(workdir / "gradcam_entire" / "synthetic_s01" /
                  f"{name}_signed.npy")
  assert not np.allclose(np.load(out / f"{name}_signed.npy"), hires)


def test_fold_names_must_be_unambiguous():
  subjects = ["casme2/s1", "smic_hs/s1", "smic_hs/s2"]
  assert gradcam._find_subject(subjects, "s2") == "smic_hs/s2"
  assert gradcam._find_subject(subjects, "casme2_s1") == "casme2/s1"
  with pytest.raises(errors.ConfigError, match=r"--fold='s1' names more than "
                     r"one subject \(\['casme2/s1', 'smic_hs/s1'\]\)"):
    gradcam._find_subject(subjects, "s1")


def test_training_clips_come_from_the_model_provenance(run_dir):
  workdir, clips = run_dir
  model = str(workdir / "folds" / "synthetic_s01" / "model")
  trained = gradcam.training_clips(clips, model)
  s01 = set(np.flatnonzero(clips.subjects == "synthetic/s01").tolist())
  assert trained and not trained & s01
  assert trained | s01 == set(range(len(clips.labels)))
  # Trusted only for a model of this dataset: another one's record says
  # nothing about these clips.
  cfg = tiny_loso_config(workdir.parent / "tfds")
  assert gradcam.training_clips(clips, model, cfg) == trained
  cfg.data.dataset = "smic_hs"
  assert gradcam.training_clips(clips, model, cfg) is None


@pytest.mark.parametrize("kwargs,error,pattern", [
    (dict(fold_name="s07"), errors.ConfigError,
     r"--fold='s07' is not a subject of this run; subjects: \['synthetic/s01'"),
    (dict(fold_name="s03"), errors.CheckpointError,
     r"Fold synthetic/s03 has no model .* folds with a model: "
     r"\['synthetic_s01', 'synthetic_s02'\]"),
    (dict(fold_name="s01", clip_names=["nope"]), errors.ConfigError,
     r"Unknown clips \['nope'\]"),
    (dict(fold_name="s01", target="stage9"), errors.ConfigError, "target="),
    (dict(), errors.ConfigError, "Pass --fold"),
])
def test_run_refuses_bad_requests(run_dir, kwargs, error, pattern):
  workdir, _ = run_dir
  with pytest.raises(error, match=pattern):
    gradcam.run(str(workdir), progress=False, **kwargs)


def test_run_refuses_a_model_for_other_inputs(run_dir, tmp_path):
  workdir, _ = run_dir
  from edmdbn_jax import checkpoints  # pylint: disable=g-import-not-at-top
  fold_model = str(workdir / "folds" / "synthetic_s01" / "model")
  _, variables, cfg, names = checkpoints.load_model(fold_model)
  cfg.data.temporal = "uniform"  # same shapes, other frames chosen
  other = checkpoints.save_model(str(tmp_path / "other"),
                                 variables, cfg, names)
  with pytest.raises(errors.ConfigError, match=(
      r"made for other inputs than the run .*data.temporal: model "
      r"'uniform', run 'keyframes'")):
    gradcam.run(str(workdir), fold_name="s01", model_dir=other,
                progress=False)
  # A run directory passed as a model: its models are named.
  with pytest.raises(errors.CheckpointError, match=(
      r"holds no checkpoint steps. It holds model directories; pass one of "
      r"these: .*folds/synthetic_s01/model")):
    checkpoints.load_model(str(workdir))


def test_run_refuses_a_directory_without_config(tmp_path):
  with pytest.raises(errors.CheckpointError, match="no config.json"):
    gradcam.run(str(tmp_path))


def test_cli(run_dir, tmp_path):
  workdir, clips = run_dir
  names = _held_out(clips, "synthetic/s01")[:2]
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
             JAX_DISABLE_MOST_OPTIMIZATIONS="1")

  def cli(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.gradcam", *args], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

  out = tmp_path / "cli"
  runs = {
      "ok": cli(f"--workdir={workdir}", "--fold=synthetic/s01",
                f"--clips={','.join(names)}", f"--output={out}",
                "--method=hirescam"),
      "fold": cli(f"--workdir={workdir}", "--fold=nobody"),
      "clip": cli(f"--workdir={workdir}", "--fold=s01", "--clips=x_c999"),
      "workdir": cli(f"--workdir={tmp_path / 'empty'}", "--fold=s01"),
  }
  results = {k: p.communicate(timeout=300) + (p.returncode,)
             for k, p in runs.items()}
  stdout, stderr, rc = results["ok"]
  assert rc == 0, stderr
  assert stdout.split() == [str(out / f"{n}.png") for n in names] + [
      str(out / "class_means.png")]
  _check_outputs(out, names)
  for key, pattern in (("fold", "--fold='nobody' is not a subject"),
                       ("clip", r"Unknown clips \['x_c999'\]"),
                       ("workdir", "is not a LOSO run directory")):
    stdout, stderr, rc = results[key]
    assert rc == 2, (key, stderr)
    assert stderr.strip().splitlines()[-1].startswith("error: "), stderr
    assert re.search(pattern, stderr.strip().splitlines()[-1]), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("other", ["loso", "import_torch"])
def test_importable_next_to_other_experiments(other):
  """Importing an experiments module next to the others defines no clashing
  flags (gradcam/predict clashed on --workdir and --checkpoint with loso /
  import_torch; baseline, compare, benchmark, summary and preprocess on
  --dataset, --seed, --dtype and --fold_parallel): only loso and
  import_torch define theirs on import."""
  proc = subprocess.run(
      [sys.executable, "-c", f"import experiments.{other}, "
       "experiments.gradcam, experiments.predict, experiments.baseline, "
       "experiments.compare, experiments.benchmark, experiments.summary, "
       "experiments.preprocess"],
      env=dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr
