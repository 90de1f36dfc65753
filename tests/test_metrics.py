"""LOSO metrics: hand-computed cases, scikit-learn, absent-class rules."""

import csv
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from edmdbn_jax.evaluators import metrics
from edmdbn_jax.evaluators import report


def _fr(subject, labels, preds, source="d"):
  labels, preds = np.asarray(labels), np.asarray(preds)
  return metrics.FoldResult(subject, labels, preds,
                            [f"{subject}_{i}" for i in range(len(labels))],
                            [source] * len(labels))


def test_hand_computed_pooled_case():
  # Pooled: labels 0,0,0,1,1,2 ; preds 0,0,1,1,2,2.
  cm = metrics.confusion_matrix([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2], 3)
  np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [0, 0, 1]])
  s = metrics.scores_from_confusion(cm)
  # F1: class0 2*2/(4+0+1)=0.8, class1 2/(2+1+1)=0.5, class2 2/(2+1+0)=2/3.
  assert s["uf1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
  # Recall: 2/3, 1/2, 1.
  assert s["uar"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
  assert s["accuracy"] == pytest.approx(4 / 6)


def test_agrees_with_sklearn_on_random_folds_missing_classes():
  rng = np.random.default_rng(0)
  folds = []
  for s in range(12):
    n = int(rng.integers(1, 8))
    labels = rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])
    preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, 4, n))
    folds.append(_fr(f"s{s}", labels, preds))
  agg = metrics.aggregated_scores(folds, 4)
  y = np.concatenate([f.labels for f in folds])
  p = np.concatenate([f.preds for f in folds])
  present = sorted(set(y.tolist()))
  assert agg["uf1"] == pytest.approx(
      skm.f1_score(y, p, average="macro", labels=present))
  assert agg["uar"] == pytest.approx(
      skm.recall_score(y, p, average="macro", labels=present))
  assert agg["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
  np.testing.assert_array_equal(agg["confusion"],
                                skm.confusion_matrix(y, p, labels=range(4)))
  # Per-fold 'skip' = sklearn restricted to each fold's present labels.
  want = np.mean([skm.f1_score(f.labels, f.preds, average="macro",
                               labels=sorted(set(f.labels.tolist())))
                  for f in folds])
  got = metrics.per_fold_scores(folds, 4, "skip")["uf1"]
  assert got == pytest.approx(want)
  # 'union' = sklearn's default labels (those in y_true or y_pred), which
  # is what torchmetrics 0.9's macro F1 / recall compute.
  for name, fn in (("uf1", skm.f1_score), ("uar", skm.recall_score)):
    want_u = np.mean([fn(f.labels, f.preds, average="macro",
                         zero_division=0) for f in folds])
    assert metrics.per_fold_scores(folds, 4, "union")[name] == (
        pytest.approx(want_u))
  # 'zero' = sklearn over all labels with zero_division=0.
  want0 = np.mean([skm.f1_score(f.labels, f.preds, average="macro",
                                labels=range(4), zero_division=0)
                   for f in folds])
  assert metrics.per_fold_scores(folds, 4, "zero")["uf1"] == pytest.approx(
      want0)


def test_absent_class_rules_on_a_constructed_fold():
  # 3 classes; the fold holds only class 0 (2 clips): one right, one
  # predicted as class 2 (absent from the fold).
  cm = metrics.confusion_matrix([0, 0], [0, 2], 3)
  skip = metrics.fold_scores(cm, "skip")
  zero = metrics.fold_scores(cm, "zero")
  one = metrics.fold_scores(cm, "one")
  f1_0 = 2 * 1 / (2 + 0 + 1)
  assert skip["uf1"] == pytest.approx(f1_0)
  assert skip["uar"] == pytest.approx(0.5)
  assert zero["uf1"] == pytest.approx(f1_0 / 3)
  assert zero["uar"] == pytest.approx(0.5 / 3)
  # 'one': class 1 never predicted -> 1; class 2 predicted though absent -> 0.
  assert one["uf1"] == pytest.approx((f1_0 + 1 + 0) / 3)
  assert one["uar"] == pytest.approx((0.5 + 1 + 1) / 3)
  # 'union': classes 0 and 2 (labelled or predicted); class 2 scores 0.
  union = metrics.fold_scores(cm, "union")
  assert union["uf1"] == pytest.approx(f1_0 / 2)
  assert union["uar"] == pytest.approx(0.5 / 2)


def test_early_stopping_selection_follows_lightning():
  sel = metrics.early_stopping_selection
  epochs = list(range(1, 11))
  # Ties are not improvements: the earliest best epoch is kept.
  assert sel([0.2, 0.5, 0.5, 0.4, 0.5, 0.3, 0.1, 0.1, 0.1, 0.1], epochs,
             patience=5) == (1, 7)
  # No improvement for `patience` epochs after the best: stop there, so a
  # better epoch later is never reached.
  assert sel([0.2, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1], epochs,
             patience=5) == (1, 7)
  # Patience 5 not used up: the later, better epoch is selected.
  assert sel([0.2, 0.6, 0.1, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1], epochs,
             patience=5) == (6, None)
  # A score above the threshold stops training at once (and is kept).
  assert sel([0.2, 0.995, 1.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], epochs,
             patience=5) == (1, 2)
  # 0.99 itself is not above the threshold (a strict test).
  assert sel([0.99, 1.0], [1, 2], patience=5) == (1, 2)
  # Epochs evaluated every 2: patience is counted in epochs.
  assert sel([0.5, 0.4, 0.4, 0.4], [2, 4, 6, 8], patience=4) == (0, 6)
  # Every 5 with patience 12.5: training ends after epoch 5 + 13 = 18, so
  # the better epoch 20 is never reached.
  assert sel([0.3, 0.2, 0.2, 0.9], [5, 10, 15, 20], patience=12.5) == (0, 18)
  # Above the threshold on the first epoch; a non-finite score stops too
  # (the checkpoint keeps the first epoch even when it is NaN).
  assert sel([0.995, 0.1], [1, 2], patience=5) == (0, 1)
  assert sel([0.5, float("nan"), 0.9], [1, 2, 3], patience=5) == (0, 2)
  assert sel([float("nan"), 0.9], [1, 2], patience=5) == (0, 1)
  with pytest.raises(ValueError):
    sel([], [], patience=5)


def test_per_source_and_summary_are_json(tmp_path):
  folds = [_fr("a/1", [0, 1], [0, 1], "a"), _fr("b/1", [2, 2, 0], [2, 0, 0],
                                                "b")]
  res = metrics.summarize(folds, 3, ["neg", "pos", "sur"], selection="fixed")
  json.dumps(res)
  assert res["per_source"]["a"]["uf1"] == pytest.approx(1.0)
  assert res["per_source"]["b"]["n"] == 3
  assert res["protocol"]["selection"] == "fixed"
  assert set(res["per_fold_mean"]) == {"skip", "zero", "one", "union"}


def test_reports_label_their_protocol(tmp_path):
  folds = [_fr("s1", [0, 1, 2], [0, 1, 1]), _fr("s2", [2, 0], [2, 0])]
  for f in folds:
    f.logits = np.eye(3)[f.preds] * 3.0
  for sel in ("fixed", "test_best", "released"):
    res = metrics.summarize(folds, 3, ["neg", "pos", "sur"], selection=sel)
    out = tmp_path / sel
    report.write_all(res, folds, str(out), ["neg", "pos", "sur"],
                     run="fake, config tiny, seed 0")
    md = (out / "results.md").read_text()
    # The confusion matrix names its protocol and its run (one csv line).
    with open(out / "confusion.csv", newline="") as f:
      corner = next(csv.reader(f))[0]
    assert corner.startswith("true \\ predicted (LOSO, 2 folds, aggregated")
    assert "UF1" in corner and "; fake, config tiny, seed 0)" in corner
    # Only the fixed budget is the MEGC protocol's headline; every
    # test-selected row says so.
    if sel == "fixed":
      assert ("aggregated over all folds (MEGC pooling, headline), fixed "
              "budget (last epoch)") in md
    else:
      assert "headline" not in md
      rows = [l for l in md.splitlines() if l.startswith("| ")
              and sel in l]
      assert len(rows) == 5 and all("SELECTED ON TEST" in l and
                                    "optimistic" in l for l in rows)
    assert "absent classes: zero" in md
    assert "absent classes: union" in md
    assert ("SELECTED ON TEST DATA" in md) == (sel != "fixed")
    import matplotlib.image as mpimg  # pylint: disable=g-import-not-at-top
    assert mpimg.imread(str(out / "confusion.png")).size > 0
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 6 and rows[0].startswith("fold,dataset,clip")
    assert rows[1].split(",")[5] == sel
    assert rows[1].split(",")[7] == "complete"
    log = (out / "megc_log.txt").read_text().splitlines()
    assert log[1].split("\t")[:5] == ["d", "s1", "s1_0", "0", "0"]
    assert log[1].split("\t")[-2:] == [sel, "complete"]
    # SAMM subjects as the official ground truth writes them.
    assert report.megc_subject("samm", "samm/006") == "6"
    assert report.megc_subject("casme2", "casme2/sub01") == "sub01"
    with open(out / "confusion.csv", newline="") as f:
      corner = next(csv.reader(f))[0]
    assert report.selection_label(sel) in corner
    assert "PARTIAL" not in corner
  # A partial run says so in every row and in the confusion title.
  res = metrics.summarize(folds, 3, ["neg", "pos", "sur"], selection="fixed")
  res["protocol"].update(complete=False, subjects_total=5)
  report.write_all(res, folds, str(tmp_path / "part"), ["neg", "pos", "sur"])
  md = (tmp_path / "part" / "results.md").read_text()
  rows = [l for l in md.splitlines() if l.startswith("| ") and "UF1" not in l
          and "---" not in l]
  assert rows and all("PARTIAL 2/5 subjects" in l for l in rows)
  assert "headline" not in md
  corner = (tmp_path / "part" / "confusion.csv").read_text().splitlines()[0]
  assert "PARTIAL 2/5 subjects" in corner
  pred = (tmp_path / "part" / "predictions.csv").read_text().splitlines()
  assert pred[1].split(",")[7] == "partial"
  log = (tmp_path / "part" / "megc_log.txt").read_text().splitlines()
  assert log[0].endswith("\tselection\tloso")
  assert all(l.endswith("\tpartial") for l in log[1:])


def test_epoch_curves_pool_every_fold_per_epoch(tmp_path):
  def rec(epoch, loss, preds=None):
    r = {"epoch": epoch, "loss": loss, "train_accuracy": 0.5}
    if preds is not None:
      r["logits"] = np.eye(3)[preds].tolist()
    return r
  labels = [np.array([0, 1]), np.array([2]), np.array([], int)]
  histories = [
      [rec(1, 2.0, [0, 0]), rec(2, 1.0), rec(3, 0.5, [0, 1])],
      [rec(1, 1.0, [2]), rec(2, 0.0), rec(3, 0.5, [1])],
      [rec(1, 3.0), rec(2, 2.0), rec(3, 1.5)],  # no held-out clips
  ]
  c = report.epoch_curves(histories, labels, 3)
  assert c["epoch"] == [1, 2, 3]
  assert c["train_loss"] == pytest.approx([2.0, 1.0, 2.5 / 3])
  assert c["folds_evaluated"] == [2, 0, 2]
  # Epoch 1 pools labels 0,1,2 / preds 0,0,2: F1 2/3, 0, 1.
  assert c["pooled_uf1"][0] == pytest.approx((2 / 3 + 0 + 1) / 3)
  assert c["pooled_uf1"][1] is None
  assert c["pooled_uar"][2] == pytest.approx((1 + 1 + 0) / 3)
  frs = {"fixed": [_fr("a", [0, 1], [0, 1]), _fr("b", [2], [1]),
                   _fr("c", [], [])]}
  frs["test_best"] = frs["fixed"]
  for f, e in zip(frs["fixed"], (3, 3, 3)):
    f.epoch = e
  report.write_curves(histories, frs, 3, str(tmp_path), title="t",
                      loso="partial")
  rows = (tmp_path / "curves.csv").read_text().splitlines()
  assert rows[0].startswith("epoch,mean_train_loss")
  assert rows[0].endswith(",loso")
  assert rows[2].split(",")[3:5] == ["", ""]
  assert all(r.endswith(",partial") for r in rows[1:])
  import matplotlib.image as mpimg  # pylint: disable=g-import-not-at-top
  assert mpimg.imread(str(tmp_path / "curves.png")).size > 0


def test_subject_bootstrap():
  perfect = [_fr(f"s{i}", [0, 1, 2], [0, 1, 2]) for i in range(4)]
  ci = metrics.subject_bootstrap(perfect, 3, resamples=200)
  assert ci["uf1"] == [1.0, 1.0] and ci["uar"] == [1.0, 1.0]
  # Fewer than 3 subjects: no interval, and results.md says why.
  mixed = [_fr("a", [0, 1], [0, 1]), _fr("b", [0, 1], [1, 0])]
  assert metrics.subject_bootstrap(mixed, 2) is None
  res = metrics.summarize(mixed, 2, ["x", "y"], selection="fixed")
  assert res["aggregated"]["interval"] is None
  assert "no subject-bootstrap interval (2 held-out subjects" in (
      report.markdown_table(res))
  # Subjects all right or all wrong: the interval spans the extremes
  # (resamples of only the wrong subject, or only right ones).
  mixed.append(_fr("c", [0, 1], [0, 1]))
  ci = metrics.subject_bootstrap(mixed, 2, resamples=400, seed=1)
  assert ci["uar"] == [0.0, 1.0]
  res = metrics.summarize(mixed, 2, ["x", "y"], selection="fixed")
  assert res["aggregated"]["interval"]["unit"] == "subject"
  assert ("95% percentile bootstrap over the 3 held-out subjects (2000 "
          "resamples): UF1 0.0000 to 1.0000") in report.markdown_table(res)
  # A rare class held by one subject: resamples without it are dropped
  # (scored over fewer classes they would read as a better model).
  rare = [_fr("s0", [0, 1, 2], [0, 1, 0])] + [
      _fr(f"s{i}", [0, 1], [0, 1]) for i in range(1, 10)]
  ci = metrics.subject_bootstrap(rare, 3, resamples=1000)
  assert ci["dropped"] > 200
  pooled = metrics.aggregated_scores(rare, 3)["uf1"]
  assert ci["uf1"][1] < 1.0 and ci["uf1"][0] <= pooled


def test_pixel_difference_baseline_learns_the_bright_corner():
  # experiments.baseline on clips whose apex carries a class-specific
  # corner (classes 0 and 1; class 2 has none): a fixed-budget LOSO score
  # with its subject interval, every absent-class rule reported.
  from experiments import baseline  # pylint: disable=g-import-not-at-top
  from tests.test_train import fake_clips  # pylint: disable=g-import-not-at-top
  clips = fake_clips(n_subjects=4, per_subject=6)
  res = baseline.run(clips, grid=4, steps=300, data="fake (3 classes, 8 px)")
  assert res["protocol"]["selection"] == "fixed"
  assert "dataset fake (3 classes, 8 px), 24 clips" in res["protocol"]["note"]
  assert res["protocol"]["folds"] == 4
  assert res["aggregated"]["n"] == 24
  # Every subject is classified perfectly, so every resample is too.
  assert res["aggregated"]["uf1"] == 1.0
  assert res["aggregated"]["interval"]["uf1"] == [1.0, 1.0]
  assert set(res["per_fold_mean"]) == set(metrics.ABSENT_RULES)
  assert "95% percentile bootstrap over the 4 subjects: UF1 1.000" in (
      baseline.describe(res, clips, "fake"))
  # Two subjects: no interval, and the summary says why (it used to raise).
  two = fake_clips(n_subjects=2, per_subject=6)
  res = baseline.run(two, grid=4, steps=50)
  assert res["aggregated"]["interval"] is None
  assert "no subject-bootstrap interval (2 subjects; it needs 3" in (
      baseline.describe(res, two, "fake"))
