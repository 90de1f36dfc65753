"""Reports of a LOSO run: markdown, confusion matrices, per-clip predictions."""

import collections
import csv
import json
import os
from typing import Any, Dict, Sequence

import numpy as np

from edmdbn_jax.evaluators import metrics


def _f(x):
  return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else (
      f"{x:.4f}")


SELECTION_LABELS = {
    "fixed": "fixed budget (last epoch)",
    "test_best": "test_best (SELECTED ON TEST, optimistic)",
    "released": ("released (SELECTED ON TEST: the released code's early "
                 "stopping, optimistic)")}
# Selections that look at the held-out subject: every row says so.
TEST_SELECTED = ("test_best", "released")


def selection_label(selection: str) -> str:
  """How a row names its model selection (test selection always flagged)."""
  return SELECTION_LABELS.get(selection, selection)


def partial_label(protocol: Dict[str, Any]) -> str:
  """'' for a complete LOSO, else 'PARTIAL k/N subjects, '."""
  if protocol.get("complete", True):
    return ""
  return (f"PARTIAL {protocol['folds']}/{protocol['subjects_total']} "
          "subjects, ")


def markdown_table(results: Dict[str, Any]) -> str:
  p = results["protocol"]
  sel = selection_label(p["selection"])
  lines = []
  if not p.get("complete", True):
    lines.append(f"**Partial: {p['folds']} of {p['subjects_total']} subjects "
                 "held out so far; not a LOSO score of the dataset.**")
    lines.append("")
  if p["selection"] in TEST_SELECTED:
    lines.append("**Warning: " + metrics.SELECTION_NOTES[p["selection"]]
                 + ".**")
    lines.append("")
  lines += [
      f"LOSO over {p['folds']} subjects; model selection: "
      f"`{p['selection']}` ({metrics.SELECTION_NOTES[p['selection']]}).",
      f"{p.get('note', '')}", "",
      "| protocol | UF1 | UAR | accuracy |", "|---|---|---|---|"]
  a = results["aggregated"]
  # The MEGC protocol is pooling *and* a fixed budget: only a fixed-budget
  # row is the headline.
  part = partial_label(p)
  head = ", headline" if p["selection"] == "fixed" and not part else ""
  lines.append(f"| {part}aggregated over all folds (MEGC pooling{head}), "
               f"{sel} | {_f(a['uf1'])} | {_f(a['uar'])} | "
               f"{_f(a['accuracy'])} |")
  for rule, sc in results["per_fold_mean"].items():
    lines.append(f"| {part}mean over {sc['folds']} folds, absent classes: "
                 f"{rule}, {sel} | {_f(sc['uf1'])} | {_f(sc['uar'])} | "
                 f"{_f(sc['accuracy'])} |")
  for src, sc in results.get("per_source", {}).items():
    lines.append(f"| {part}aggregated, source {src} ({sc['n']} clips), "
                 f"{sel} | {_f(sc['uf1'])} | {_f(sc['uar'])} | "
                 f"{_f(sc['accuracy'])} |")
  for other in results.get("other_selections", {}).values():
    o = other["aggregated"]
    lab = selection_label(other["selection"])
    lines.append(f"| for comparison: {part}aggregated, {lab} | "
                 f"{_f(o['uf1'])} | {_f(o['uar'])} | {_f(o['accuracy'])} |")
    u = other["per_fold_mean"].get("union")
    if u:
      lines.append(f"| for comparison: {part}mean over {u['folds']} folds, "
                   f"absent classes: union, {lab} | {_f(u['uf1'])} | "
                   f"{_f(u['uar'])} | {_f(u['accuracy'])} |")
  names = results["class_names"]
  ci = a.get("interval")
  if ci:
    dropped = (f", {ci['dropped']} that lacked a class dropped"
               if ci.get("dropped") else "")
    lines += ["", f"Uncertainty of the aggregated {sel} scores: "
              f"{100 * ci['level']:g}% percentile bootstrap over the "
              f"{p['folds']} held-out subjects ({ci['resamples']} resamples"
              f"{dropped}): UF1 {_f(ci['uf1'][0])} to {_f(ci['uf1'][1])}, "
              f"UAR {_f(ci['uar'][0])} to {_f(ci['uar'][1])}."]
  elif "interval" in a:
    lines += ["", f"Uncertainty: no subject-bootstrap interval ("
              f"{p['folds']} held-out subjects; it needs "
              f"{metrics.MIN_BOOTSTRAP_SUBJECTS} or more, and resamples "
              "holding every class)."]
  lines += ["", "Per class (aggregated): " + ", ".join(
      f"{n} F1 {_f(f)} / recall {_f(r)} (n={s})" for n, f, r, s in zip(
          names, a["per_class_f1"], a["per_class_recall"], a["support"]))]
  if a.get("absent_classes"):
    lines.append("Classes with no clips (left out of UF1/UAR): " + ", ".join(
        names[i] for i in a["absent_classes"]))
  return "\n".join(lines) + "\n"


def plot_confusion(cm, class_names: Sequence[str], path: str, title: str):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  cm = np.asarray(cm)
  rows = cm.sum(1, keepdims=True)
  norm = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
  k = len(class_names)
  fig, ax = plt.subplots(figsize=(1.2 * k + 2.5, 1.2 * k + 2))
  im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
               label="fraction of the true class (row: recall)")
  for i in range(k):
    for j in range(k):
      ax.text(j, i, f"{cm[i, j]}\n{100 * norm[i, j]:.0f}%", ha="center",
              va="center", fontsize=8,
              color="white" if norm[i, j] > 0.5 else "black")
  ax.set_xticks(range(k), class_names, rotation=45, ha="right")
  ax.set_yticks(range(k), class_names)
  ax.set_xlabel("predicted (cells: clips, % of the row)")
  ax.set_ylabel("true")
  ax.set_title(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def save_confusion(cm, class_names, workdir, title):
  """confusion.png and confusion.csv; the csv's corner cell is `title`."""
  plot_confusion(cm, class_names, os.path.join(workdir, "confusion.png"),
                 title)
  with open(os.path.join(workdir, "confusion.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow([f"true \\ predicted ({'; '.join(title.splitlines())})"]
               + list(class_names))
    for name, row in zip(class_names, np.asarray(cm).tolist()):
      w.writerow([name] + row)


def epoch_curves(histories, fold_labels, num_classes: int) -> Dict[str, list]:
  """Per epoch: the folds' mean training loss and accuracy, and the held-out
  scores pooled over every fold at that epoch.

  Args:
    histories: each fold's per-epoch records (result.json 'history').
    fold_labels: each fold's held-out labels.
    num_classes: K.

  Returns:
    {'epoch', 'train_loss', 'train_accuracy', 'pooled_uf1', 'pooled_uar',
    'folds_evaluated'}: lists over epochs; the pooled scores are None at an
    epoch where some fold with held-out clips was not evaluated.
  """
  epochs = sorted({int(h["epoch"]) for hist in histories for h in hist})
  by_epoch = [{int(h["epoch"]): h for h in hist} for hist in histories]
  out = {k: [] for k in ("epoch", "train_loss", "train_accuracy",
                         "pooled_uf1", "pooled_uar", "folds_evaluated")}
  scored = [i for i, lab in enumerate(fold_labels) if len(lab)]
  for e in epochs:
    recs = [b[e] for b in by_epoch if e in b]
    out["epoch"].append(e)
    out["train_loss"].append(float(np.mean([r["loss"] for r in recs])))
    out["train_accuracy"].append(
        float(np.mean([r["train_accuracy"] for r in recs])))
    have = [i for i in scored if "logits" in by_epoch[i].get(e, {})]
    out["folds_evaluated"].append(len(have))
    if have and len(have) == len(scored):
      labels = np.concatenate([np.asarray(fold_labels[i]) for i in have])
      preds = np.concatenate([np.asarray(by_epoch[i][e]["logits"]).argmax(-1)
                              for i in have])
      sc = metrics.scores_from_confusion(
          metrics.confusion_matrix(labels, preds, num_classes))
      out["pooled_uf1"].append(sc["uf1"])
      out["pooled_uar"].append(sc["uar"])
    else:
      out["pooled_uf1"].append(None)
      out["pooled_uar"].append(None)
  return out


def write_curves(histories, fold_results_by_selection, num_classes: int,
                 workdir: str, *, loso: str, title: str = ""):
  """curves.csv and curves.png: training loss and pooled held-out UF1 / UAR
  by epoch, with the epochs each selection scored per fold. `loso`
  ('complete' or 'partial') fills curves.csv's loso column, as in
  predictions.csv.

  Returns the curves (`epoch_curves`).
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  any_frs = next(iter(fold_results_by_selection.values()))
  curves = epoch_curves(histories, [f.labels for f in any_frs], num_classes)
  with open(os.path.join(workdir, "curves.csv"), "w", newline="") as f:
    w = csv.writer(f)
    cols = ("epoch", "train_loss", "train_accuracy", "pooled_uf1",
            "pooled_uar", "folds_evaluated")
    w.writerow(["epoch", "mean_train_loss", "mean_train_accuracy",
                "pooled_heldout_uf1", "pooled_heldout_uar",
                "folds_evaluated", "loso"])
    for row in zip(*(curves[c] for c in cols)):
      w.writerow(["" if v is None else (f"{v:.6g}" if isinstance(v, float)
                                        else v) for v in row] + [loso])
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
  for hist in histories:
    ax0.plot([h["epoch"] for h in hist], [h["loss"] for h in hist],
             color="0.6", lw=0.6, alpha=0.6)
  ax0.plot(curves["epoch"], curves["train_loss"], color="k", lw=2,
           label="mean over folds")
  # A uniform guess scores ln K (exactly without class weights).
  ax0.axhline(np.log(num_classes), color="0.4", ls=":", lw=1,
              label=f"ln {num_classes} = {np.log(num_classes):.2f}: a uniform "
              "guess")
  ax0.set_xlabel("epoch")
  ax0.set_ylabel("training loss")
  ax0.set_title("training loss (grey: each fold)", fontsize=9)
  ax0.legend(fontsize=8)
  ep = [e for e, v in zip(curves["epoch"], curves["pooled_uf1"])
        if v is not None]
  if ep:
    ax1.plot(ep, [v for v in curves["pooled_uf1"] if v is not None], "o-",
             ms=3, label="UF1, pooled over folds")
    ax1.plot(ep, [v for v in curves["pooled_uar"] if v is not None], "s--",
             ms=3, label="UAR, pooled over folds")
  # The epochs the test-selected protocols took, one row each below the
  # curves, with how many folds took each epoch (folds taking one epoch
  # would otherwise draw one marker).
  markers = {"test_best": ("v", "tab:red", -0.05),
             "released": ("^", "tab:purple", -0.13)}
  for sel, frs in fold_results_by_selection.items():
    if sel not in markers:
      continue
    counts = collections.Counter(fr.epoch for fr in frs
                                 if fr.epoch is not None)
    m, c, y = markers[sel]
    ax1.plot(sorted(counts), np.full(len(counts), y), m, color=c, ms=5,
             ls="none", label=f"epoch each fold's {sel} took (SELECTED ON "
             "TEST; digits: folds at that epoch)")
    for e, n in counts.items():
      if n > 1:
        ax1.annotate(str(n), (e, y), xytext=(4, 1),
                     textcoords="offset points", fontsize=7, color=c,
                     va="center")
  ax1.axvline(curves["epoch"][-1] if curves["epoch"] else 0, color="0.3",
              ls=":", label="fixed budget (last epoch)")
  ax1.set_ylim(-0.18, 1.02)
  ax1.set_xlabel("epoch")
  ax1.set_ylabel("held-out score")
  ax1.set_title("held-out subjects by epoch budget (reading the best budget "
                "off this curve\nis selection on test data)", fontsize=9)
  ax1.legend(fontsize=7, loc="upper left")
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "curves.png"), dpi=110)
  plt.close(fig)
  return curves


def megc_subject(dataset: str, subject: str) -> str:
  """A subject as the official MEGC2019 ground truth names it: without the
  '<dataset>/' prefix, SAMM's without zero padding ('samm/006' -> '6')."""
  subj = subject.split("/", 1)[-1]
  if dataset == "samm" and subj.isdigit():
    return str(int(subj))
  return subj


def megc_prediction_log(fold_results, class_names, path, selection,
                        complete=True):
  """One line per clip: `dataset subject clip true_code pred_code true pred
  selection loso`.

  Codes are class indices (for the 3-class composite: 0 negative, 1
  positive, 2 surprise, the MEGC ground-truth codes). Subjects are written
  without the '<dataset>/' prefix, and SAMM's unpadded as the official
  MEGC2019 ground truth writes them (`6`, not `006`; `megc_subject`), fields
  tab-separated, with a header line;
  `selection` says which epoch's predictions these are (fixed: the last;
  test_best, released: chosen on the test subject); `loso` is 'complete'
  when every subject was held out, else 'partial'.
  """
  with open(path, "w") as f:
    f.write("dataset\tsubject\tclip\ttrue\tpredicted\ttrue_label\t"
            "predicted_label\tselection\tloso\n")
    for fr in fold_results:
      for clip, src, t, p in zip(fr.clips, fr.datasets, fr.labels, fr.preds):
        subj = megc_subject(src, fr.subject)
        f.write(f"{src}\t{subj}\t{clip}\t{int(t)}\t{int(p)}\t"
                f"{class_names[int(t)]}\t{class_names[int(p)]}\t"
                f"{selection}\t{'complete' if complete else 'partial'}\n")


def write_predictions(fold_results, class_names, path, selection,
                      complete=True):
  """One row per clip; `loso` says whether every subject was held out."""
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["fold", "dataset", "clip", "true", "predicted", "selection",
                "epoch", "loso"] + [f"p_{c}" for c in class_names])
    for fr in fold_results:
      probs = None
      if fr.logits is not None:
        z = np.asarray(fr.logits, np.float64)
        z = np.exp(z - z.max(-1, keepdims=True))
        probs = z / z.sum(-1, keepdims=True)
      for i, (clip, src) in enumerate(zip(fr.clips, fr.datasets)):
        row = [fr.subject, src, clip, class_names[int(fr.labels[i])],
               class_names[int(fr.preds[i])], selection, fr.epoch,
               "complete" if complete else "partial"]
        row += ([f"{p:.4f}" for p in probs[i]] if probs is not None
                else [""] * len(class_names))
        w.writerow(row)


def write_all(results, fold_results, workdir, class_names, run: str = ""):
  """results.json/.md, confusion.png/.csv, predictions.csv, megc_log.txt.

  `run` names the run in the confusion matrix's title (dataset, config,
  seed), as curves.png's title does.
  """
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown_table(results))
  a = results["aggregated"]
  p = results["protocol"]
  title = (f"{partial_label(p)}LOSO, {p['folds']} folds, aggregated, "
           f"{selection_label(p['selection'])}: UF1 {_f(a['uf1'])}, "
           f"UAR {_f(a['uar'])}" + (f"\n{run}" if run else ""))
  save_confusion(a["confusion"], class_names, workdir, title)
  write_predictions(fold_results, class_names,
                    os.path.join(workdir, "predictions.csv"), p["selection"],
                    complete=p.get("complete", True))
  megc_prediction_log(fold_results, class_names,
                      os.path.join(workdir, "megc_log.txt"), p["selection"],
                      complete=p.get("complete", True))
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
