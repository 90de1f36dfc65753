"""LOSO scores, with the protocol of every number stated.

Definitions (K classes, confusion matrix rows = true, columns = predicted):
  TP_i, FP_i, FN_i per class; M_i = clips of class i; M = all clips.
  F1_i = 2 TP_i / (2 TP_i + FP_i + FN_i);  recall_i = TP_i / M_i.
  UF1 = mean_i F1_i, UAR = mean_i recall_i, accuracy = sum_i TP_i / M.

Aggregated (the MEGC rule, the headline): pool every fold's predictions into
one confusion matrix, then score it. A class with no clips in the pooled set
(M_i = 0) is left out of UF1 and UAR and listed under 'absent_classes' (this
only happens when a dataset lacks a class entirely).

Per-fold mean: score each held-out subject on its own, then average over
subjects. A subject rarely shows every class, and implementations differ on
classes absent from a subject's labels (M_i = 0 in that fold):
  'skip': average F1 / recall over the classes present in the fold's labels
          only (predicting an absent class is still an error: a false
          negative of the clip's true class);
  'zero': absent classes count F1 = recall = 0 (penalises every subject that
          misses a class);
  'one':  absent classes count F1 = recall = 1 if the model never predicted
          them in that fold, else F1 = 0 (recall 1: nothing to recall);
  'union': average over the classes in the fold's labels *or* predictions
          (TP + FP + FN > 0): a class predicted though absent counts
          F1 = recall = 0. This is scikit-learn's macro average with its
          default labels, and torchmetrics 0.9's `F1Score` / `Recall(average=
          'macro')`, which the authors' released code (pinned torchmetrics
          0.9.2) uses to score and select each fold.
All four are reported, so the spread is visible.
"""

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

ABSENT_RULES = ("skip", "zero", "one", "union")


@dataclasses.dataclass
class FoldResult:
  """One fold's held-out predictions."""
  subject: str
  labels: np.ndarray
  preds: np.ndarray
  clips: List[str]
  datasets: List[str]
  logits: Optional[np.ndarray] = None
  epoch: Optional[int] = None
  # Selection 'released': the epoch early stopping would have ended the
  # fold's training at (None: it would have run every epoch).
  stopped_epoch: Optional[int] = None


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
  """(K, K) int64 counts, rows true class, columns predicted class."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(preds, np.int64)), 1)
  return cm


def scores_from_confusion(cm: np.ndarray) -> Dict[str, Any]:
  """Accuracy, UAR and UF1 of one confusion matrix (absent classes left out)."""
  cm = np.asarray(cm, np.float64)
  tp = np.diag(cm)
  support = cm.sum(1)
  predicted = cm.sum(0)
  fp = predicted - tp
  fn = support - tp
  present = support > 0
  denom = 2 * tp + fp + fn
  f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), 0.0)
  recall = np.where(present, tp / np.where(present, support, 1), 0.0)
  total = cm.sum()
  return {
      "accuracy": float(tp.sum() / total) if total else float("nan"),
      "uar": float(recall[present].mean()) if present.any() else float("nan"),
      "uf1": float(f1[present].mean()) if present.any() else float("nan"),
      "per_class_f1": f1.tolist(),
      "per_class_recall": recall.tolist(),
      "support": support.astype(int).tolist(),
      "absent_classes": np.flatnonzero(~present).tolist(),
      "n": int(total),
  }


def fold_scores(cm: np.ndarray, absent: str) -> Dict[str, float]:
  """One fold's accuracy, UAR and UF1 under an absent-class rule."""
  if absent not in ABSENT_RULES:
    raise ValueError(f"absent={absent!r}; choose from {ABSENT_RULES}")
  s = scores_from_confusion(cm)
  f1 = np.asarray(s["per_class_f1"])
  recall = np.asarray(s["per_class_recall"])
  present = np.asarray(s["support"]) > 0
  if absent == "skip":
    f1, recall = f1[present], recall[present]
  elif absent == "zero":
    f1 = np.where(present, f1, 0.0)
    recall = np.where(present, recall, 0.0)
  elif absent == "union":
    seen = present | (np.asarray(cm).sum(0) > 0)
    f1, recall = f1[seen], recall[seen]
  else:  # 'one'
    never_predicted = np.asarray(cm).sum(0) == 0
    f1 = np.where(present, f1, np.where(never_predicted, 1.0, 0.0))
    recall = np.where(present, recall, 1.0)
  return {"accuracy": s["accuracy"], "uar": float(recall.mean()),
          "uf1": float(f1.mean()), "n": s["n"]}


def aggregated_scores(fold_results: Sequence[FoldResult],
                      num_classes: int) -> Dict[str, Any]:
  labels = np.concatenate([f.labels for f in fold_results])
  preds = np.concatenate([f.preds for f in fold_results])
  cm = confusion_matrix(labels, preds, num_classes)
  out = scores_from_confusion(cm)
  out["confusion"] = cm.tolist()
  return out


# Fewer held-out subjects than this: no subject-bootstrap interval.
MIN_BOOTSTRAP_SUBJECTS = 3


def bootstrap_draws(cms: np.ndarray, resamples: int, seed: int):
  """Subject resamples that hold every class the pooled set holds.

  Args:
    cms: (S, K, K) per-subject confusion matrices.
    resamples: draws to make.
    seed: RNG seed.

  Returns:
    (draws (R, S) of subject indices, kept only where every class with
    clips in the full set has clips in the draw; the number dropped). A
    draw without a rare class would be scored over fewer classes (UF1
    averages over the classes present) and read as a better model.
  """
  rng = np.random.default_rng(seed)
  draws = rng.integers(0, len(cms), (resamples, len(cms)))
  support = cms.sum(2)                       # (S, K) clips per true class
  present = support.sum(0) > 0
  held = (support[draws].sum(1) > 0)[:, present].all(1)
  return draws[held], int((~held).sum())


def percentile_interval(values, level: float) -> List[float]:
  """[lo, hi]: the central `level` percentile interval of `values`."""
  lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
  return [float(np.percentile(values, lo)), float(np.percentile(values, hi))]


def subject_bootstrap(fold_results: Sequence[FoldResult], num_classes: int,
                      resamples: int = 2000, seed: int = 0,
                      level: float = 0.95) -> Optional[Dict[str, Any]]:
  """Percentile intervals of the pooled UF1 and UAR over subjects.

  Each resample draws the held-out subjects with replacement and pools
  their predictions; resamples missing a class of the full set are dropped
  (`bootstrap_draws`) and counted. Subjects, not clips, are the unit LOSO
  holds out. None with fewer than MIN_BOOTSTRAP_SUBJECTS subjects, or when
  no resample holds every class.
  """
  if len(fold_results) < MIN_BOOTSTRAP_SUBJECTS:
    return None
  cms = np.stack([confusion_matrix(f.labels, f.preds, num_classes)
                  for f in fold_results])
  draws, dropped = bootstrap_draws(cms, resamples, seed)
  if not len(draws):
    return None
  reps = [scores_from_confusion(cms[d].sum(0)) for d in draws]
  out = {"resamples": resamples, "dropped": dropped, "seed": seed,
         "level": level, "unit": "subject"}
  for key in ("uf1", "uar"):
    out[key] = percentile_interval([r[key] for r in reps], level)
  return out


def per_fold_scores(fold_results: Sequence[FoldResult], num_classes: int,
                    absent: str = "skip") -> Dict[str, Any]:
  """Mean over folds of each fold's scores under `absent`."""
  rows = [fold_scores(confusion_matrix(f.labels, f.preds, num_classes),
                      absent) for f in fold_results if len(f.labels)]
  mean = {k: float(np.mean([r[k] for r in rows]))
          for k in ("accuracy", "uar", "uf1")}
  mean["folds"] = len(rows)
  return mean


def per_source_scores(fold_results: Sequence[FoldResult],
                      num_classes: int) -> Dict[str, Dict[str, Any]]:
  """Aggregated scores restricted to each source dataset (composite data)."""
  labels = np.concatenate([f.labels for f in fold_results])
  preds = np.concatenate([f.preds for f in fold_results])
  sources = np.concatenate([np.asarray(f.datasets) for f in fold_results])
  out = {}
  for s in sorted(set(sources.tolist())):
    m = sources == s
    sc = scores_from_confusion(confusion_matrix(labels[m], preds[m],
                                                num_classes))
    out[s] = {k: sc[k] for k in ("accuracy", "uar", "uf1", "n",
                                 "absent_classes")}
  return out


SELECTION_NOTES = {
    "fixed": ("fixed training budget: every fold is scored with the model "
              "after its last epoch (the MEGC rule; nothing is chosen on the "
              "test subject)"),
    "test_best": ("SELECTED ON TEST DATA: for every fold the epoch that "
                  "scored best on its held-out subject is kept (UF1 over "
                  "the classes in its labels, then accuracy, the earliest "
                  "on ties). Optimistic; not comparable with fixed-budget "
                  "numbers"),
    "released": ("SELECTED ON TEST DATA, the authors' released code's "
                 "protocol, replayed on the stored per-epoch predictions: "
                 "for every fold the earliest epoch with the highest UF1 on "
                 "its held-out subject ('union' rule: torchmetrics 0.9 "
                 "macro F1) among the epochs before early stopping would "
                 "have ended training (no strict improvement for half the "
                 "epoch budget, or UF1 > 0.99; Lightning 1.9 semantics). "
                 "Optimistic; not comparable with fixed-budget numbers"),
}

# Lightning EarlyStopping(stopping_threshold=0.99) in the released code.
RELEASED_STOPPING_THRESHOLD = 0.99


def early_stopping_selection(scores: Sequence[float], epochs: Sequence[int],
                             patience: float,
                             threshold: float = RELEASED_STOPPING_THRESHOLD):
  """Replays ModelCheckpoint + EarlyStopping (mode 'max') on a fold.

  Lightning 1.9 semantics, as the released code configures them: a score is
  an improvement only if strictly greater than the best so far (so the
  earliest of tied epochs is kept); training stops after the epoch whose
  score exceeds `threshold`, or once `patience` epochs have passed since the
  best one without a strict improvement; the stopping epoch is still a
  candidate for the checkpoint.

  Args:
    scores: the monitored score of each evaluated epoch, in order.
    epochs: those epochs' numbers (1-based).
    patience: epochs without improvement before stopping (the released
      code: half the epoch budget, validating every epoch).
    threshold: the stopping threshold.

  Returns:
    (index of the selected epoch in `scores`, the epoch training stops
    after, or None when it would have run to the end).

  With epochs evaluated every k > 1 (the released code validates every
  epoch), the epochs in between are taken as no improvement: training stops
  `ceil(patience)` epochs after the best, and a later evaluated epoch is
  never reached.
  """
  best = None
  for i, (score, epoch) in enumerate(zip(scores, epochs)):
    if best is not None:
      stop = int(epochs[best]) + math.ceil(patience)
      if epoch > stop:
        return best, stop
    if not np.isfinite(score):
      return (best if best is not None else i), int(epoch)
    if best is None or score > scores[best]:
      best = i
    if score > threshold or epoch - epochs[best] >= patience:
      return best, int(epoch)
  if best is None:
    raise ValueError("No evaluated epoch to select from.")
  return best, None


def summarize(fold_results: Sequence[FoldResult], num_classes: int,
              class_names: Sequence[str], *, selection: str,
              protocol_note: str = "") -> Dict[str, Any]:
  """Every score of a LOSO run, each labelled with its protocol (JSON-ready)."""
  if selection not in SELECTION_NOTES:
    raise ValueError(f"selection={selection!r}")
  per_fold = []
  for f in fold_results:
    cm = confusion_matrix(f.labels, f.preds, num_classes)
    row = {"subject": f.subject, "n": int(len(f.labels)), "epoch": f.epoch,
           "labels_present": sorted(set(np.asarray(f.labels).tolist()))}
    if selection == "released":
      row["stopped_epoch"] = f.stopped_epoch
    for rule in ABSENT_RULES:
      sc = fold_scores(cm, rule)
      row[f"uf1_{rule}"] = sc["uf1"]
      row[f"uar_{rule}"] = sc["uar"]
    row["accuracy"] = scores_from_confusion(cm)["accuracy"]
    per_fold.append(row)
  sources = sorted({d for f in fold_results for d in f.datasets})
  return {
      "protocol": {
          "split": "leave-one-subject-out",
          "folds": len(fold_results),
          "selection": selection,
          "selection_note": SELECTION_NOTES[selection],
          "aggregation_note": (
              "'aggregated' pools all folds' predictions (MEGC pooling; the "
              "headline with selection 'fixed'); 'per_fold_mean' averages "
              "per-subject scores under "
              "the stated rule for classes absent from a subject"),
          "note": protocol_note,
      },
      "class_names": list(class_names),
      "aggregated": {
          **aggregated_scores(fold_results, num_classes),
          "interval": subject_bootstrap(fold_results, num_classes)},
      "per_fold_mean": {rule: per_fold_scores(fold_results, num_classes, rule)
                        for rule in ABSENT_RULES},
      "per_fold": per_fold,
      "per_source": (per_source_scores(fold_results, num_classes)
                     if len(sources) > 1 else {}),
  }
