"""LOSO training: schedule, masks, fold parallelism, resume, refused runs."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from edmdbn_jax import errors
from edmdbn_jax import input_pipeline
from edmdbn_jax import progress
from edmdbn_jax import provenance
from edmdbn_jax import train
from edmdbn_jax.configs import edmdbn as configs


def fake_clips(n_subjects=3, per_subject=5, size=32, k=3, seed=0):
  """Random clips whose apex carries a class-specific bright corner."""
  rng = np.random.default_rng(seed)
  examples = []
  sizes = (per_subject if isinstance(per_subject, (list, tuple))
           else [per_subject] * n_subjects)
  for s, size_s in enumerate(sizes):
    for c in range(size_s):
      label = (s + c) % k
      frames = rng.integers(0, 255, (6, size, size, 3)).astype(np.uint8)
      frames[3, :8, :8] = 255 * (label == 0)
      frames[3, -8:, -8:] = 255 * (label == 1)
      examples.append(dict(frames=frames, onset=0, apex=3, offset=5,
                           label=label, subject=f"fake/s{s}",
                           clip=f"s{s}_c{c}", dataset="fake"))
  return input_pipeline.from_examples(examples, ["a", "b", "c"][:k], "fake",
                                      progress=False)


def tiny_config(**train_overrides):
  cfg = configs.get_config("tiny,num_classes=3")
  cfg.data.image_size = 32
  cfg.model.depths = (1, 1, 1)
  cfg.model.embed_dim = 16
  cfg.train.epochs = 2
  cfg.train.warmup_epochs = 1
  cfg.train.progress = False
  cfg.train.update(train_overrides)
  return cfg


@pytest.fixture(scope="module")
def clips():
  return fake_clips()


def _histories(workdir, clips):
  out = {}
  for s in clips.subject_list():
    name = s.replace("/", "_")
    with open(workdir / "folds" / name / "result.json") as f:
      out[s] = json.load(f)["history"]
  return out


def _tensorboard(workdir):
  """{fold: {tag: [(step, value), ...]}} as TensorBoard loads the run (its
  plugin loader, which also purges text on a restart)."""
  from tensorboard.backend.event_processing import plugin_event_accumulator  # pylint: disable=g-import-not-at-top
  from tensorboard.util import tensor_util  # pylint: disable=g-import-not-at-top
  out = {}
  for fold in sorted(os.listdir(workdir / "tensorboard")):
    acc = plugin_event_accumulator.EventAccumulator(
        str(workdir / "tensorboard" / fold))
    acc.Reload()
    out[fold] = {}
    for tag in acc.Tags()["tensors"]:
      values = [(e.step, tensor_util.make_ndarray(e.tensor_proto))
                for e in acc.Tensors(tag)]
      if tag == "protocol/text_summary":
        out[fold]["text"] = [(step, bytes(v.item()).decode())
                             for step, v in values]
      else:
        out[fold][tag] = [(step, float(v)) for step, v in values]
  return out


def _check_tensorboard_like(cut, full):
  """A resumed run's TensorBoard shows each epoch once, as the full run's."""
  got, want = _tensorboard(cut), _tensorboard(full)
  assert got == want
  assert sorted(want) == ["fake_s0", "fake_s1", "fake_s2"]


def test_fold_ids_without_prefix_must_be_unambiguous():
  examples = [dict(frames=np.zeros((6, 8, 8, 3), np.uint8), onset=0, apex=3,
                   offset=5, label=i % 2, subject=subject, clip=f"c{i}",
                   dataset=subject.split("/")[0])
              for i, subject in enumerate(["a/s1", "b/s1", "b/s2", "a/s1"])]
  clips = input_pipeline.from_examples(examples, ["x", "y"], "two",
                                       progress=False)
  assert [f.subject for f in train.make_folds(clips, ["s2", "a/s1"])] == [
      "b/s2", "a/s1"]
  with pytest.raises(errors.ConfigError, match=r"--folds \['s1'\] name more "
                     r"than one subject \(\[\['a/s1', 'b/s1'\]\]\)"):
    train.make_folds(clips, ["s1"])


def test_schedule_matches_optax_warmup_cosine():
  spe, warm, epochs, peak = 7, 3, 10, 5e-5
  ref = optax.warmup_cosine_decay_schedule(0.0, peak, warm * spe,
                                           epochs * spe, 0.0)
  for step in range(0, epochs * spe + 1, 5):
    got = float(train.learning_rate(step, spe, peak=peak, warmup_epochs=warm,
                                    epochs=epochs))
    assert got == pytest.approx(float(ref(step)), rel=1e-5, abs=1e-12)
  assert float(train.learning_rate(warm * spe, spe, peak=peak,
                                   warmup_epochs=warm, epochs=epochs)) == (
                                       pytest.approx(peak))


def test_released_schedule():
  """The released CosineWarmupScheduler, written out per step: floor + peak *
  0.5 (1 + cos(pi s / S)) * min(s / W, 1), W = 10 epochs, S = 60 epochs."""
  spe, peak, floor = 7, 1e-4, 1e-8
  S, W = 60 * spe, 10 * spe
  for step in (0, 1, W // 2, W, W + 1, S // 2, S - 1, S):
    want = floor + peak * 0.5 * (1 + np.cos(np.pi * step / S)) * min(
        step / W, 1.0)
    got = float(train.learning_rate(step, spe, peak=peak, warmup_epochs=10,
                                    epochs=60, schedule="released",
                                    floor=floor))
    assert got == pytest.approx(want, rel=1e-5, abs=1e-10), step  # float32
  # Its peak, at the end of the ramp, is 0.933 of the nominal one.
  top = max(float(train.learning_rate(s, spe, peak=peak, warmup_epochs=10,
                                      epochs=60, schedule="released"))
            for s in range(S))
  assert top == pytest.approx(0.5 * (1 + np.cos(np.pi / 6)) * peak, rel=1e-4)


def _numpy_weighted_ce(logits, labels, w, mask, s):
  """PyTorch's definition, written out in NumPy."""
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  k = logits.shape[-1]
  num = 0.0
  den = 0.0
  for i, y in enumerate(labels):
    if not mask[i]:
      continue
    num += (1 - s) * w[y] * -logp[i, y] + s / k * np.sum(w * -logp[i])
    den += w[y]
  return num / den


def _loss_case():
  """(logits, labels, class weights, mask): 6 clips, the last padding."""
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((6, 4)).astype(np.float32) * 3
  labels = np.array([0, 1, 3, 3, 2, 1])
  w = np.array([0.5, 2.0, 1.0, 1.5], np.float32)
  mask = np.array([1, 1, 1, 1, 1, 0], np.float32)
  return logits, labels, w, mask


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_weighted_cross_entropy_with_label_smoothing(smoothing):
  logits, labels, w, mask = _loss_case()
  got = float(train.weighted_cross_entropy(logits, labels, w, mask,
                                           smoothing))
  want = _numpy_weighted_ce(logits, labels, w, mask, smoothing)
  assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_weighted_cross_entropy_equals_torch(smoothing):
  torch = pytest.importorskip("torch")
  logits, labels, w, mask = _loss_case()
  got = float(train.weighted_cross_entropy(logits, labels, w, mask,
                                           smoothing))
  ref = torch.nn.functional.cross_entropy(
      torch.tensor(logits[:5]), torch.tensor(labels[:5]),
      weight=torch.tensor(w), label_smoothing=smoothing)
  assert got == pytest.approx(float(ref), rel=1e-5)


def test_weight_decay_mask_matrices():
  cfg = tiny_config(weight_decay_mask="matrices")
  model = train.from_config(cfg.model)
  params = jax.eval_shape(
      lambda: model.init(jax.random.key(0), *[
          jnp.zeros(a.shape, a.dtype) for a in train.input_specs(cfg)]))[
              "params"]
  mask = train.decay_mask(params)
  flat = {"/".join(str(k.key) for k in path): v for path, v in
          jax.tree_util.tree_flatten_with_path(mask)[0]}
  assert flat["head/kernel"] and not flat["head/bias"]
  assert not any(v for k, v in flat.items() if k.endswith(("/scale", "/bias")))
  assert not any(v for k, v in flat.items()
                 if k.endswith("relative_position_bias_table"))
  assert any(v for k, v in flat.items() if k.endswith("qkv/kernel"))
  # Decay reaches only the masked-in leaves.
  tx = train.make_optimizer(tiny_config(weight_decay_mask="matrices",
                                        weight_decay=0.5))
  ones = jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), params)
  state = tx.init(ones)
  zeros = jax.tree.map(jnp.zeros_like, ones)
  updates, _ = tx.update(zeros, state, ones)
  moved = {"/".join(str(k.key) for k in path): bool(jnp.any(u != 0))
           for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]}
  assert moved == flat


def test_released_variant():
  cfg = configs.get_config("released")
  paper = configs.get_config("paper")
  assert cfg.model.init == "torch"
  assert {**cfg.model.to_dict(), "init": "paper"} == paper.model.to_dict()
  t = cfg.train
  assert (t.learning_rate, t.warmup_epochs, t.epochs, t.batch_size) == (
      1e-4, 10, 60, 4)
  assert (t.schedule, t.min_learning_rate, t.weight_decay,
          t.weight_decay_mask, t.label_smoothing, t.class_weights) == (
              "released", 1e-8, 1e-8, "matrices", 0.1, "none")
  assert cfg.data.temporal == "reference"
  train.validate(cfg)
  with pytest.raises(errors.ConfigError, match="schedule"):
    train.validate(configs.get_config("tiny,schedule=step"))
  with pytest.raises(errors.ConfigError, match="schedule"):
    train.learning_rate(0, 1, peak=1.0, warmup_epochs=0, epochs=1,
                        schedule="step")
  with pytest.raises(errors.ConfigError, match="weight_decay_mask"):
    train.validate(configs.get_config("tiny,weight_decay_mask=some"))
  with pytest.raises(errors.ConfigError, match="model.init"):
    train.validate(configs.get_config("tiny,init=xavier"))


def test_released_recipe_trains(clips, tmp_path):
  """The released recipe's parts on the tiny model: the logged learning
  rates are the released schedule's, the loss is finite."""
  cfg = tiny_config(epochs=3, schedule="released", min_learning_rate=1e-8,
                    weight_decay=1e-8, weight_decay_mask="matrices",
                    label_smoothing=0.1, learning_rate=1e-3)
  cfg.model.init = "torch"
  train.train_and_evaluate(cfg, str(tmp_path), clips=clips)
  h = _histories(tmp_path, clips)["fake/s0"]
  spe = 3  # 10 training clips in batches of 4
  for rec in h:
    want = float(train.learning_rate(rec["epoch"] * spe - 1, spe, peak=1e-3,
                                      warmup_epochs=1, epochs=3,
                                      schedule="released", floor=1e-8))
    assert rec["lr"] == pytest.approx(want, rel=1e-5)
    assert np.isfinite(rec["loss"])


def test_oversample_balances_each_fold(clips, tmp_path):
  fold = train.make_folds(clips)[0]
  y = clips.labels[fold.train_idx]
  counts = np.bincount(y, minlength=3)
  over = train.oversample(fold, clips.labels, seed=0)
  assert over.test_idx is fold.test_idx or np.array_equal(over.test_idx,
                                                          fold.test_idx)
  assert np.bincount(clips.labels[over.train_idx], minlength=3).tolist() == (
      [counts.max()] * 3)
  assert set(over.train_idx.tolist()) <= set(fold.train_idx.tolist())
  again = train.oversample(fold, clips.labels, seed=0)
  np.testing.assert_array_equal(over.train_idx, again.train_idx)
  # Through a LOSO run: the stored fold trained on the oversampled list,
  # and scoring (which checks the training fingerprint) accepts it.
  cfg = tiny_config(epochs=1, warmup_epochs=0, oversample="balanced")
  res = train.train_and_evaluate(cfg, str(tmp_path), clips=clips)
  assert res["protocol"]["complete"]
  import json as json_lib  # pylint: disable=g-import-not-at-top
  stored = json_lib.loads((tmp_path / "folds" / "fake_s0" / "result.json")
                          .read_text())
  assert stored["train_clips"] == 3 * counts.max()
  auto = configs.get_config("released")
  auto.data.dataset = "samm"
  assert train.resolve_oversample(auto) == "balanced"
  auto.data.dataset = "casme2"
  assert train.resolve_oversample(auto) == "none"
  with pytest.raises(errors.ConfigError, match="oversample"):
    train.validate(configs.get_config("tiny,oversample=smote"))


def test_class_weights():
  w = train.class_weights(np.array([0, 0, 0, 1]), 3, "balanced")
  np.testing.assert_allclose(w, [4 / 9, 4 / 3, 0.0])
  np.testing.assert_array_equal(train.class_weights(np.array([0]), 2, "none"),
                                [1, 1])
  # 'auto' (the paper config's): weighted cross entropy on SAMM only.
  for dataset in ("samm", "casme2", "smic_hs", "mmew", "megc2019_composite",
                  "synthetic"):
    c = configs.get_config("paper")
    c.data.dataset = dataset
    assert c.train.class_weights == "auto"
    assert train.resolve_class_weights(c) == (
        "balanced" if dataset == "samm" else "none"), dataset


def test_epoch_schedule_masks_and_inactive_steps(clips):
  folds = train.make_folds(clips)
  assert [f.subject for f in folds] == ["fake/s0", "fake/s1", "fake/s2"]
  f = folds[0]
  assert len(f.train_idx) == 10 and set(clips.subjects[f.test_idx]) == {
      "fake/s0"}
  idx, mask, active = train.epoch_schedule(f, 0, 4, 0, steps=4)
  assert idx.shape == (4, 4) and active.tolist() == [True, True, True, False]
  assert mask.sum() == 10 and not mask[3].any()
  assert sorted(idx[mask].tolist()) == sorted(f.train_idx.tolist())
  # Padding and inactive steps gather training clips only, never held-out.
  assert set(idx.ravel().tolist()) <= set(f.train_idx.tolist())
  assert not set(idx.ravel().tolist()) & set(f.test_idx.tolist())
  again, _, _ = train.epoch_schedule(f, 0, 4, 0, steps=4)
  np.testing.assert_array_equal(idx, again)
  other, _, _ = train.epoch_schedule(f, 1, 4, 0, steps=4)
  assert not np.array_equal(idx, other)


def test_loso_end_to_end_and_fold_parallel_equals_sequential(clips, tmp_path):
  res1 = train.train_and_evaluate(tiny_config(fold_parallel="1"),
                                  str(tmp_path / "seq"), clips=clips)
  res3 = train.train_and_evaluate(tiny_config(fold_parallel="3"),
                                  str(tmp_path / "par"), clips=clips)
  # 3 folds at most 2 at once: groups of 2 and 1, the second padded to 2
  # with a copy that is dropped.
  res2 = train.train_and_evaluate(tiny_config(fold_parallel="2"),
                                  str(tmp_path / "pad"), clips=clips)
  for res in (res1, res3, res2):
    assert res["protocol"]["selection"] == "fixed"
    assert sorted(res["other_selections"]) == ["released", "test_best"]
    assert 0.0 <= res["aggregated"]["uf1"] <= 1.0
  h1 = _histories(tmp_path / "seq", clips)
  h3 = _histories(tmp_path / "par", clips)
  h2 = _histories(tmp_path / "pad", clips)
  assert sorted(h2) == sorted(h1)
  for s in h1:
    assert len(h1[s]) == 2
    for other in (h3, h2):
      np.testing.assert_allclose(h1[s][-1]["logits"], other[s][-1]["logits"],
                                 rtol=1e-4, atol=1e-5)
      assert h1[s][-1]["loss"] == pytest.approx(other[s][-1]["loss"],
                                                rel=1e-4)
  for name in ("results.json", "results.md", "predictions.csv",
               "confusion.png", "confusion.csv", "megc_log.txt",
               "config.json", "curves.png", "curves.csv"):
    assert (tmp_path / "seq" / name).exists(), name
  # The last epoch's pooled held-out UF1 in curves.csv is the headline's.
  last = (tmp_path / "seq" / "curves.csv").read_text().splitlines()[-1]
  assert float(last.split(",")[3]) == pytest.approx(
      res1["aggregated"]["uf1"], abs=1e-5)
  # TensorBoard: a run per fold, each tag once per epoch, the stored
  # history's values.
  board = _tensorboard(tmp_path / "seq")
  assert sorted(board) == ["fake_s0", "fake_s1", "fake_s2"]
  for fold, tags in board.items():
    assert tags.pop("text") == [(0, progress.PROTOCOL_NOTE)]
    assert sorted(tags) == sorted(progress.TAGS.values())
    record = json.loads((tmp_path / "seq" / "folds" / fold /
                         "result.json").read_text())["history"]
    for key, tag in progress.TAGS.items():
      assert tags[tag] == [(h["epoch"], pytest.approx(h[key]))
                           for h in record], (fold, tag)
  # How the folds were grouped is recorded and said with the scores, and
  # every invocation's code, packages and device are logged.
  for run, size in (("seq", 1), ("par", 3), ("pad", 2)):
    stored = json.loads(
        (tmp_path / run / "folds" / "fake_s0" / "result.json").read_text())
    label = (f"{size} fold{'s' if size > 1 else ''} at a time on 1 cpu "
             "device")
    assert len(stored["trained_with"]) == 1, stored["trained_with"]
    assert stored["trained_with"][0].startswith(label)
    assert all(h["trained_with"] == stored["trained_with"][0]
               for h in stored["history"])
    note = json.loads((tmp_path / run / "results.json").read_text())[
        "protocol"]["note"]
    assert f"; trained {label}" in note and "not recorded" not in note, note
    log = provenance.read_invocations(str(tmp_path / run))
    assert len(log) == 1 and log[0]["fold_parallel"]["folds_at_once"] == size
    assert log[0]["packages"]["jax"] == jax.__version__
    assert log[0]["devices"]["platform"] == "cpu"
    assert log[0]["folds_to_train"] == ["fake_s0", "fake_s1", "fake_s2"]
  assert (tmp_path / "seq" / "folds" / "fake_s0" / "model").is_dir()
  _check_compare(tmp_path)
  # A finished fold keeps its model and result, not its resume state.
  for run in ("seq", "par", "pad"):
    for fold in ("fake_s0", "fake_s1", "fake_s2"):
      assert not (tmp_path / run / "folds" / fold / "train_state").exists()


def _check_compare(tmp_path):
  """experiments.compare on the runs of the end-to-end test."""
  from edmdbn_jax.evaluators import compare  # pylint: disable=g-import-not-at-top
  runs = [compare.load_run(str(tmp_path / r)) for r in ("seq", "par")]
  # Another "seed": the same predictions but a config that differs.
  other = tmp_path / "seed1"
  shutil.copytree(tmp_path / "seq", other)
  cfg = json.loads((other / "config.json").read_text())
  cfg["train"]["seed"] = 1
  (other / "config.json").write_text(json.dumps(cfg))
  # A fold result results.json does not score (left from another plan) is
  # left out.
  stray = other / "folds" / "stale"
  shutil.copytree(sorted((other / "folds").iterdir())[0], stray)
  stored = json.loads((stray / "result.json").read_text())
  stored["subject"] = "fake/stale"
  (stray / "result.json").write_text(json.dumps(stored))
  runs.append(compare.load_run(str(other)))
  assert runs[-1].subjects == runs[0].subjects
  res = compare.compare(runs, bootstrap=200)
  seq, par, seed1 = res["runs"]
  # Its scores are the run's own reports'.
  scored = json.loads((tmp_path / "seq" / "results.json").read_text())
  for sel in ("fixed", "test_best", "released"):
    agg = (scored if sel == "fixed" else
           scored["other_selections"][sel])["aggregated"]
    for key in ("uf1", "uar", "accuracy"):
      assert seq["selections"][sel][key] == pytest.approx(agg[key])
  # fold_parallel schedules the work: the same computation with other
  # float rounding (which compounds over long runs), said as such.
  kind = jax.devices()[0].device_kind
  assert par["config_differences"] == {
      "fold grouping / device (float rounding)": [
          f"1 fold at a time on 1 cpu device ({kind}; mesh fold 1 x data 1)",
          f"3 folds at a time on 1 cpu device ({kind}; mesh fold 1 x data "
          "1)"]}
  assert seed1["config_differences"] == {"train.seed": [0, 1]}
  for sel in ("fixed", "test_best", "released"):
    d = seed1["selections"][sel]
    assert d["uf1"] == pytest.approx(seq["selections"][sel]["uf1"])
    assert d["delta_uf1"] == 0 and d["delta_uf1_interval"] == [0.0, 0.0]
    assert d["subjects_equal"] == 3
    lo, hi = seq["selections"][sel]["uf1_interval"]
    assert lo <= seq["selections"][sel]["uf1"] <= hi
  md = compare.markdown(res)
  assert "train.seed=1" in md and "SELECTED ON TEST DATA" in md
  assert "per-fold mean UF1 (absent classes: skip)" in md
  # Grouped by seed: seq and par are replicates (one config and seed), not
  # two seeds.
  with pytest.raises(errors.ConfigError, match="replicates, not seeds"):
    compare.compare(runs, bootstrap=100, group_seeds=True)
  # Seeds 0 and 1 of the reference config, and seeds 0 and 1 of a
  # "concat" config (copies: the same predictions): two rows.
  concat = []
  for src, s in ((tmp_path / "seq", 0), (other, 1)):
    dst = tmp_path / f"concat{s}"
    shutil.copytree(src, dst)
    c = json.loads((dst / "config.json").read_text())
    c["model"]["fusion"] = "concat"
    (dst / "config.json").write_text(json.dumps(c))
    concat.append(compare.load_run(str(dst)))
  grouped = compare.compare([runs[0], runs[2]] + concat, bootstrap=100,
                            group_seeds=True)
  ref_row, row = grouped["runs"]
  assert ref_row["seeds"] == [0, 1] and row["seeds"] == [0, 1]
  assert row["config_differences"] == {"model.fusion": ["add", "concat"]}
  fixed = row["selections"]["fixed"]
  assert fixed["uf1_per_seed"] == pytest.approx(
      ref_row["selections"]["fixed"]["uf1_per_seed"])
  assert fixed["delta_uf1"] == pytest.approx(0.0)
  assert fixed["delta_uf1_interval"] == pytest.approx([0.0, 0.0])
  assert (fixed["subjects_better"], fixed["subjects_equal"]) == (0, 3)
  assert "2 seeds [0, 1]" in compare.markdown(grouped)
  compare.plot(grouped, str(tmp_path / "grouped.png"))
  paths = compare.write(res, str(tmp_path / "cmp"))
  assert all(os.path.getsize(p) > 0 for p in paths)
  # The command line gives the same table.
  cli = subprocess.run(
      [sys.executable, "-m", "experiments.compare", str(tmp_path / "seq"),
       str(other), "--bootstrap=200", f"--output={tmp_path / 'cli'}"],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True,
      text=True, timeout=300)
  assert cli.returncode == 0, cli.stderr[-3000:]
  assert "train.seed=1" in cli.stdout
  assert (tmp_path / "cli" / "compare.json").exists()
  # A run that held out other labels is refused, by name.
  fold = sorted((other / "folds").iterdir())[0] / "result.json"
  stored = json.loads(fold.read_text())
  label = stored["test_labels"][0]
  stored["test_labels"][0] = (label + 1) % 3
  fold.write_text(json.dumps(stored))
  with pytest.raises(errors.DataError, match="holds other clips or labels"):
    compare.compare([runs[0], compare.load_run(str(other))])
  # Another build's training clips under the same held-out clips: named.
  stored["test_labels"][0] = label
  stored["train_fingerprint"] = "0" * 64
  fold.write_text(json.dumps(stored))
  diff = compare.config_differences(runs[0], compare.load_run(str(other)))
  assert "1 of 3 folds" in diff["training data"][1]
  shutil.rmtree(fold.parent)
  with pytest.raises(errors.CheckpointError, match="result.json is gone"):
    compare.load_run(str(other))
  with pytest.raises(errors.ConfigError, match="not scored yet"):
    (other / "results.json").unlink()
    compare.load_run(str(other))


def test_resume_after_interruption_equals_uninterrupted(clips, tmp_path,
                                                        monkeypatch):
  cfg = tiny_config(epochs=3)
  full = train.train_and_evaluate(cfg, str(tmp_path / "full"), clips=clips)

  calls = {"n": 0}
  original = progress.LosoProgress.epoch_done

  def interrupt(self, group, epoch, histories):
    original(self, group, epoch, histories)
    calls["n"] += 1
    if calls["n"] == 5:  # fold 1 finished, fold 2 saved its epoch 2
      raise KeyboardInterrupt

  monkeypatch.setattr(progress.LosoProgress, "epoch_done", interrupt)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  monkeypatch.setattr(progress.LosoProgress, "epoch_done", original)
  first = tmp_path / "cut" / "folds" / "fake_s0" / "result.json"
  assert first.exists()
  stamp = first.stat().st_mtime_ns
  resumed = train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  assert first.stat().st_mtime_ns == stamp  # a finished fold is not retrained
  hf = _histories(tmp_path / "full", clips)
  hc = _histories(tmp_path / "cut", clips)
  for s in hf:
    np.testing.assert_array_equal(hf[s][-1]["logits"], hc[s][-1]["logits"])
  assert resumed["aggregated"] == full["aggregated"]



def test_a_fold_resumed_with_another_grouping_records_both(clips, tmp_path,
                                                           monkeypatch):
  calls = {"n": 0}
  original = progress.LosoProgress.epoch_done

  def interrupt(self, group, epoch, histories):
    original(self, group, epoch, histories)
    calls["n"] += 1
    if calls["n"] == 2:  # all 3 folds, trained at once, saved epoch 2
      raise KeyboardInterrupt

  monkeypatch.setattr(progress.LosoProgress, "epoch_done", interrupt)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(tiny_config(epochs=3, fold_parallel="3"),
                             str(tmp_path / "run"), clips=clips)
  monkeypatch.setattr(progress.LosoProgress, "epoch_done", original)
  # Resumed one fold at a time: epoch 3 of each fold ran alone.
  res = train.train_and_evaluate(tiny_config(epochs=3, fold_parallel="1"),
                                 str(tmp_path / "run"), clips=clips)
  stored = json.loads((tmp_path / "run" / "folds" / "fake_s1" /
                       "result.json").read_text())
  assert [w.split(" on ")[0] for w in stored["trained_with"]] == [
      "3 folds at a time", "1 fold at a time"]
  assert [h["trained_with"].split(" on ")[0] for h in stored["history"]] == [
      "3 folds at a time", "3 folds at a time", "1 fold at a time"]
  assert "; trained 3 folds at a time" in res["protocol"]["note"]
  assert " / 1 fold at a time" in res["protocol"]["note"]
  log = provenance.read_invocations(str(tmp_path / "run"))
  assert [e["fold_parallel"]["folds_at_once"] for e in log] == [3, 1]
  # Folds trained before the record: said, not spoken for.
  assert train.grouping_label([{}, {}, {"trained_with": ["x"]}]) == (
      "trained x (2 folds not recorded)")
  assert train.grouping_label([{}, {}]).startswith(
      "fold grouping and device not recorded")
  assert train.grouping_label([]) == ""


def test_resume_refused_when_the_data_changed(clips, tmp_path, monkeypatch):
  """Resume state records the data it was trained on: a fold half-trained on
  one build is not finished on another (its result.json would carry the new
  build's fingerprint, so scoring could not tell)."""
  cfg = tiny_config(epochs=3)
  original = progress.LosoProgress.epoch_done

  def interrupt(self, group, epoch, histories):
    original(self, group, epoch, histories)
    if epoch == 2:  # fold fake/s0 saved its epoch 2; no fold finished
      raise KeyboardInterrupt

  monkeypatch.setattr(progress.LosoProgress, "epoch_done", interrupt)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  monkeypatch.setattr(progress.LosoProgress, "epoch_done", original)

  def changed(subject):
    out = input_pipeline.Clips(**{**clips.__dict__,
                                  "frames": clips.frames.copy()})
    i = np.flatnonzero(out.subjects == subject)[0]
    out.frames[i] = 255 - out.frames[i]
    return out

  with pytest.raises(errors.DataError, match=(
      r"resume state in .*fake_s0.*train_state was saved while fold fake/s0 "
      r"trained on other training clips.*Delete .*folds/fake_s0")):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=changed(
        "fake/s2"))
  with pytest.raises(errors.DataError, match=r"other held-out clips"):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=changed(
        "fake/s0"))
  # The data it was trained on: resumed, and finished folds record what
  # they were evaluated on, so a finished fold is refused before any other
  # fold trains.
  train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  stored = json.loads((tmp_path / "cut" / "folds" / "fake_s0" /
                       "result.json").read_text())
  assert stored["heldout_fingerprint"] == train.heldout_fingerprint(
      train.plan_folds(cfg, clips)[0], clips)
  # ... also when a --folds subset leaves the changed fold out: scoring
  # would refuse it after the subset had trained.
  shutil.rmtree(tmp_path / "cut" / "folds" / "fake_s2")
  with pytest.raises(errors.DataError, match=(
      r"fake_s0.*result.json was evaluated on other frames of subject "
      r"fake/s0's clips")):
    train.train_and_evaluate(tiny_config(epochs=3, folds=("s2",)),
                             str(tmp_path / "cut"), clips=changed("fake/s0"))
  assert not (tmp_path / "cut" / "folds" / "fake_s2").exists()


def test_folds_of_unequal_size_compile_the_steps_once(tmp_path, monkeypatch):
  """Subjects of 2, 5 and 17 clips: folds of 6, 5 and 2 steps per epoch and
  test subjects of 1 to 3 eval batches (of 8) share one train and one eval shape;
  the inactive padding steps change nothing (== all folds at once)."""
  uneven = fake_clips(per_subject=[2, 5, 17], seed=1)
  cfg = tiny_config(fold_parallel="1")
  monkeypatch.setattr(train, "EVAL_BATCH", 8)
  # Fresh jitted steps: other tests in this process share the cached ones.
  monkeypatch.setattr(train, "_STEP_CACHE", {})
  seq = train.train_and_evaluate(cfg, str(tmp_path / "seq"), clips=uneven)
  mesh = train.make_mesh(1, int(cfg.train.batch_size))
  model = train.from_config(cfg.model)
  _, jit_train, jit_eval = train.make_steps(
      model, train.make_optimizer(cfg), cfg, mesh)
  assert jit_train._cache_size() == 1
  assert jit_eval._cache_size() == 1
  par = train.train_and_evaluate(tiny_config(fold_parallel="3"),
                                 str(tmp_path / "par"), clips=uneven)
  hs, hp = _histories(tmp_path / "seq", uneven), _histories(tmp_path / "par",
                                                            uneven)
  for s in hs:
    np.testing.assert_allclose(hs[s][-1]["logits"], hp[s][-1]["logits"],
                               rtol=1e-4, atol=1e-5)
  assert seq["aggregated"]["uf1"] == pytest.approx(par["aggregated"]["uf1"])


@pytest.mark.parametrize("damage", ["one_fold_a_step_behind",
                                    "one_fold_without_a_step"])
def test_resume_when_folds_of_a_group_stopped_apart(clips, tmp_path,
                                                    monkeypatch, damage):
  """A kill between two folds' (asynchronous) saves leaves them apart.

  The group resumes from the oldest common step (or from scratch) and ends
  exactly where an uninterrupted run does.
  """
  cfg = tiny_config(epochs=3, fold_parallel="3")
  full = train.train_and_evaluate(cfg, str(tmp_path / "full"), clips=clips)
  original = progress.LosoProgress.epoch_done

  def interrupt(self, group, epoch, histories):
    original(self, group, epoch, histories)
    if epoch == 2:  # the saves of epochs 1 and 2 were started
      raise KeyboardInterrupt

  monkeypatch.setattr(progress.LosoProgress, "epoch_done", interrupt)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  monkeypatch.setattr(progress.LosoProgress, "epoch_done", original)
  states = tmp_path / "cut" / "folds"
  for fold in ("fake_s0", "fake_s1", "fake_s2"):  # interrupted saves finished
    assert (states / fold / "train_state" / "2").is_dir()
  if damage == "one_fold_a_step_behind":
    shutil.rmtree(states / "fake_s1" / "train_state" / "2")
  else:
    shutil.rmtree(states / "fake_s1" / "train_state")
  resumed = train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  hf = _histories(tmp_path / "full", clips)
  hc = _histories(tmp_path / "cut", clips)
  for s in hf:
    assert [h["epoch"] for h in hc[s]] == [1, 2, 3]
    np.testing.assert_array_equal(hf[s][-1]["logits"], hc[s][-1]["logits"])
  assert resumed["aggregated"] == full["aggregated"]
  # The epochs the killed run wrote and the resume re-ran show once.
  _check_tensorboard_like(tmp_path / "cut", tmp_path / "full")


def _interrupt_at(monkeypatch, at_epoch):
  original = progress.LosoProgress.epoch_done

  def interrupt(self, group, epoch, histories):
    original(self, group, epoch, histories)
    if epoch == at_epoch:
      raise KeyboardInterrupt

  monkeypatch.setattr(progress.LosoProgress, "epoch_done", interrupt)
  return lambda: monkeypatch.setattr(progress.LosoProgress, "epoch_done",
                                     original)


def test_resume_when_folds_hold_no_common_step(clips, tmp_path, monkeypatch):
  """Run 1 (3 folds at once) stops at epoch 3: every fold holds steps 2, 3.
  Run 2 (one fold) takes s1 to epoch 6 and stops: it holds 4, 5. Run 3 (3 at
  once again) has no step all folds hold: it restarts the group and ends
  where an uninterrupted run does."""
  cfg = tiny_config(epochs=6, fold_parallel="3")
  full = train.train_and_evaluate(cfg, str(tmp_path / "full"), clips=clips)
  restore = _interrupt_at(monkeypatch, 3)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  restore()
  restore = _interrupt_at(monkeypatch, 6)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(tiny_config(epochs=6, fold_parallel="1",
                                         folds=("fake/s1",)),
                             str(tmp_path / "cut"), clips=clips)
  restore()
  states = tmp_path / "cut" / "folds"
  held = {f: sorted(int(p.name) for p in (states / f / "train_state").iterdir()
                    if p.name.isdigit())
          for f in ("fake_s0", "fake_s1", "fake_s2")}
  assert held == {"fake_s0": [2, 3], "fake_s1": [4, 5], "fake_s2": [2, 3]}
  resumed = train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  hf = _histories(tmp_path / "full", clips)
  hc = _histories(tmp_path / "cut", clips)
  for s in hf:
    assert [h["epoch"] for h in hc[s]] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(hf[s][-1]["logits"], hc[s][-1]["logits"])
  assert resumed["aggregated"] == full["aggregated"]
  _check_tensorboard_like(tmp_path / "cut", tmp_path / "full")


def test_stop_between_fold_models_and_results_resumes(clips, tmp_path,
                                                      monkeypatch):
  """Killed after the group's models were saved but before result.json:
  the fold retrains and its model is rewritten (not refused)."""
  cfg = tiny_config(epochs=1, warmup_epochs=0, fold_parallel="3")
  full = train.train_and_evaluate(cfg, str(tmp_path / "full"), clips=clips)
  real = train.write_json
  written = []

  def die_on_second_result(path, obj, **kw):
    if path.endswith("result.json"):
      written.append(path)
      if len(written) == 2:
        raise KeyboardInterrupt
    real(path, obj, **kw)

  monkeypatch.setattr(train, "write_json", die_on_second_result)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  monkeypatch.setattr(train, "write_json", real)
  second = tmp_path / "cut" / "folds" / "fake_s1"
  assert (second / "model").is_dir() and not (second / "result.json").exists()
  assert not (second / "result.json.tmp").exists()
  resumed = train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  assert resumed["aggregated"] == full["aggregated"]
  # A truncated result file is named, with what to do.
  (second / "result.json").write_text('{"subject": ')
  with pytest.raises(errors.CheckpointError,
                     match=r"fake_s1/result.json is unreadable.*delete it"):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)


def test_checkpoint_cadence_in_epochs_and_minutes():
  due = train.checkpoint_due
  assert [due(d, 6, 2, 0.0, 0.0) for d in range(1, 7)] == [
      False, True, False, True, False, False]  # never after the last epoch
  assert not due(2, 6, 1, 10.0, 599.0)
  assert due(2, 6, 1, 10.0, 600.0)
  assert not due(3, 6, 2, 10.0, 3600.0)  # not a multiple of every_epochs
  assert configs.get_config("paper").train.checkpoint_every_minutes == 10.0


def test_group_killed_before_its_first_checkpoint_restarts(clips, tmp_path,
                                                           monkeypatch):
  """With a time floor no epoch reaches, no resume state is written; the
  killed group trains again from its first epoch to the same result."""
  cfg = tiny_config(epochs=3, fold_parallel="3", checkpoint_every_minutes=60.0)
  full = train.train_and_evaluate(cfg, str(tmp_path / "full"), clips=clips)
  original = progress.LosoProgress.epoch_done

  def interrupt(self, group, epoch, histories):
    original(self, group, epoch, histories)
    if epoch == 2:
      raise KeyboardInterrupt

  monkeypatch.setattr(progress.LosoProgress, "epoch_done", interrupt)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  monkeypatch.setattr(progress.LosoProgress, "epoch_done", original)
  for fold in ("fake_s0", "fake_s1", "fake_s2"):
    state = tmp_path / "cut" / "folds" / fold / "train_state"
    assert not state.exists() or not any(p.name.isdigit()
                                         for p in state.iterdir())
  resumed = train.train_and_evaluate(cfg, str(tmp_path / "cut"), clips=clips)
  hf = _histories(tmp_path / "full", clips)
  hc = _histories(tmp_path / "cut", clips)
  for s in hf:
    assert [h["epoch"] for h in hc[s]] == [1, 2, 3]
    np.testing.assert_array_equal(hf[s][-1]["logits"], hc[s][-1]["logits"])
  assert resumed["aggregated"] == full["aggregated"]
  # The epochs the killed run wrote and the resume re-ran show once.
  _check_tensorboard_like(tmp_path / "cut", tmp_path / "full")


def test_a_fold_subset_adds_to_a_run_and_scores_are_checked(clips, tmp_path):
  cfg = tiny_config(epochs=1, warmup_epochs=0, fold_parallel="3")
  work = str(tmp_path / "run")
  part = train.train_and_evaluate(
      tiny_config(epochs=1, warmup_epochs=0, folds=("s0", "fake/s0")), work,
      clips=clips)
  # One fold, once: the same subject named twice is one fold.
  assert part["protocol"]["folds"] == 1
  assert part["protocol"]["complete"] is False
  assert "PARTIAL: 1 of 3 subjects" in part["protocol"]["note"]
  assert "Partial: 1 of 3" in (tmp_path / "run" / "results.md").read_text()
  full = train.train_and_evaluate(cfg, work, clips=clips)
  assert full["protocol"]["folds"] == 3 and full["protocol"]["complete"]
  # A later subset run scores every finished fold, not just its own.
  again = train.train_and_evaluate(
      tiny_config(epochs=1, warmup_epochs=0, folds=("s1",)), work,
      clips=clips)
  assert again["protocol"]["folds"] == 3
  assert again["aggregated"] == full["aggregated"]
  # Scoring against a dataset whose clips changed is refused, by name.
  relabelled = input_pipeline.Clips(**{**clips.__dict__,
                                       "labels": clips.labels.copy()})
  first = np.flatnonzero(relabelled.subjects == "fake/s1")[0]
  relabelled.labels[first] = (relabelled.labels[first] + 1) % 3
  with pytest.raises(errors.DataError,
                     match=rf"{relabelled.clips[first]}: label"):
    train.train_and_evaluate(cfg, work, clips=relabelled)
  # Same clip names and labels, but one clip's frames changed (a rebuilt
  # dataset): the fold that held it out is refused, and (checked second) so
  # are the folds that trained on it.
  rebuilt = input_pipeline.Clips(**{**clips.__dict__,
                                    "frames": clips.frames.copy()})
  rebuilt.frames[first] = 255 - rebuilt.frames[first]
  with pytest.raises(errors.DataError, match=r"fake_s1.*evaluated on other "
                     r"frames of subject fake/s1's clips"):
    train.train_and_evaluate(cfg, work, clips=rebuilt)
  s1 = tmp_path / "run" / "folds" / "fake_s1" / "result.json"
  kept = s1.read_text()
  older = json.loads(kept)
  del older["heldout_fingerprint"]  # as runs before 2026-12-02 wrote it
  s1.write_text(json.dumps(older))
  with pytest.raises(errors.DataError,
                     match=r"fake_s0.*trained on other training clips"):
    train.train_and_evaluate(cfg, work, clips=rebuilt)
  s1.write_text(kept)
  # The headline selection may change: both come from the same training.
  best = train.train_and_evaluate(
      tiny_config(epochs=1, warmup_epochs=0, fold_parallel="3",
                  selection="test_best"), work, clips=clips)
  assert best["protocol"]["selection"] == "test_best"
  assert best["other_selections"]["fixed"]["aggregated"] == full["aggregated"]


def test_select_epoch_protocols():
  # One fold, labels [0, 0, 1], 3 classes, 4 epochs (released patience 2).
  labels = np.array([0, 0, 1])

  def rec(epoch, preds, loss=1.0):
    logits = np.eye(3)[preds] * 2.0
    cm = np.zeros((3, 3), int)
    np.add.at(cm, (labels, preds), 1)
    from edmdbn_jax.evaluators import metrics  # pylint: disable=g-import-not-at-top
    sc = metrics.scores_from_confusion(cm)
    return {"epoch": epoch, "loss": loss, "logits": logits.tolist(),
            "test_uf1": sc["uf1"], "test_accuracy": sc["accuracy"]}

  # Union UF1 (classes labelled or predicted): epoch 1 (2/3 + 1 + 0) / 3 =
  # 0.56, epoch 2 0.33, epoch 4 (2/3 + 2/3) / 2 = 0.67 (under 0.99).
  history = [rec(1, [0, 2, 1]), rec(2, [2, 2, 1]), {"epoch": 3, "loss": 1.0},
             rec(4, [0, 1, 1])]
  kw = dict(labels=labels, num_classes=3, epochs=4)
  assert train.select_epoch(history, "fixed", **kw) == (history[3], None)
  # test_best's UF1 (classes labelled): epoch 1 (2/3 + 1) / 2 is the best.
  assert train.select_epoch(history, "test_best", **kw) == (history[0], None)
  # Released, patience 2 epochs: epoch 1 is the best seen, epoch 2 worse,
  # epoch 3 not evaluated (taken as no improvement): training stops after
  # epoch 3, and the better epoch 4 is never reached.
  assert train.select_epoch(history, "released", **kw) == (history[0], 3)
  # With 6 epochs (patience 3), training reaches epoch 4, which is better
  # and kept, and runs on (no stop within the history).
  kw["epochs"] = 6
  assert train.select_epoch(history, "released", **kw) == (history[3], None)
  kw["epochs"] = 4
  # With 2 epochs of patience used up before the better epoch, it is never
  # reached: training stops after epoch 3.
  history = [rec(1, [0, 2, 1]), rec(2, [2, 2, 1]), rec(3, [2, 2, 1]),
             rec(4, [0, 0, 1])]
  assert train.select_epoch(history, "released", **kw) == (history[0], 3)
  assert train.select_epoch(history, "test_best", **kw) == (history[3], None)
  # Released monitors UF1 over the classes labelled or predicted (the
  # torchmetrics 0.9 rule): predicting the absent class 2 costs more there.
  history = [rec(1, [0, 2, 1]), rec(2, [0, 1, 1])]
  kw["epochs"] = 10
  # 'skip' UF1: epoch 1 (2/3 + 1) / 2 = 0.83 > epoch 2 (0.8 + 0.67) / 2.
  assert train.select_epoch(history, "test_best", **kw)[0] is history[0]
  # 'union': epoch 1 (2/3 + 1 + 0) / 3 = 0.56 < epoch 2 0.73.
  assert train.select_epoch(history, "released", **kw)[0] is history[1]


def test_refuses_a_workdir_made_with_another_config(clips, tmp_path):
  cfg = tiny_config(epochs=1, warmup_epochs=0)
  train.check_workdir(cfg, str(tmp_path))
  other = tiny_config(epochs=1, warmup_epochs=0)
  other.model.fusion = "concat"
  # Nothing trained yet: a corrected config may take the directory over.
  train.check_workdir(other, str(tmp_path))
  train.check_workdir(cfg, str(tmp_path))
  (tmp_path / "folds" / "fake_s0").mkdir(parents=True)
  with pytest.raises(errors.ConfigError, match="model.fusion"):
    train.train_and_evaluate(other, str(tmp_path), clips=clips)
  # Scheduling-only settings may change.
  same = tiny_config(epochs=1, warmup_epochs=0, fold_parallel="2")
  train.check_workdir(same, str(tmp_path))


def test_lost_config_json_is_checked_against_a_fold_model(clips, tmp_path):
  cfg = tiny_config(epochs=1, warmup_epochs=0, folds=("s0",))
  train.train_and_evaluate(cfg, str(tmp_path), clips=clips)
  (tmp_path / "config.json").unlink()
  other = tiny_config(epochs=1, warmup_epochs=0, folds=("s0",))
  other.model.fusion = "concat"
  with pytest.raises(errors.ConfigError,
                     match=r"(?s)Differences from .*fake_s0/model.*fusion"):
    train.train_and_evaluate(other, str(tmp_path), clips=clips)
  res = train.train_and_evaluate(cfg, str(tmp_path), clips=clips)
  assert res["protocol"]["folds"] == 1 and (tmp_path / "config.json").exists()


@pytest.mark.parametrize("field,value,match", [
    ("warmup_epochs", 5, "warmup_epochs"),
    ("selection", "best", "selection"),
    ("class_weights", "inverse", "class_weights"),
    ("fold_parallel", "many", "fold_parallel"),
])
def test_bad_settings_fail_before_work(clips, tmp_path, field, value, match):
  cfg = tiny_config(**{field: value})
  with pytest.raises(errors.ConfigError, match=match):
    train.train_and_evaluate(cfg, str(tmp_path / "x"), clips=clips)
  assert not (tmp_path / "x").exists()


def test_padding_does_not_change_metrics(clips, tmp_path, monkeypatch):
  """Eval batches of 16 (11 padded rows per fold) vs 2 (1 padded row)."""
  idx, mask = train.eval_schedule(np.array([3, 7]), 2, 4)
  assert idx.shape == (2, 4) and idx[mask].tolist() == [3, 7]
  assert set(idx[~mask].tolist()) == {3}  # Padding repeats a held-out clip.
  cfg = tiny_config(epochs=1, warmup_epochs=0)
  big = train.train_and_evaluate(cfg, str(tmp_path / "b16"), clips=clips)
  monkeypatch.setattr(train, "EVAL_BATCH", 2)
  small = train.train_and_evaluate(cfg, str(tmp_path / "b2"), clips=clips)
  hb = _histories(tmp_path / "b16", clips)
  hs = _histories(tmp_path / "b2", clips)
  for s in hb:
    assert len(hb[s][-1]["logits"]) == 5
    np.testing.assert_allclose(hb[s][-1]["logits"], hs[s][-1]["logits"],
                               rtol=1e-5, atol=1e-5)
  assert big["aggregated"] == small["aggregated"]
