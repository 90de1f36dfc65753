"""Comparing LOSO runs (ablations, seeds, recipes) on the same held-out clips.

Each run directory's folds are read from `folds/*/result.json` (the per-epoch
held-out logits), so every selection protocol is available for every run.
Runs are compared only when they held out the same subjects with the same
clips and labels; the first run is the reference.

Uncertainty comes from the subjects, the unit LOSO holds out: a bootstrap
that resamples subjects with replacement (and, for a difference between two
runs, the same subjects for both, i.e. paired) gives a percentile interval
for the pooled UF1 and for its difference from the reference. Per subject,
wins / ties / losses count the subjects whose own UF1 (classes in the
subject's labels, the 'skip' rule) is higher, equal or lower than the
reference's. Resamples that lack a class of the full set are dropped
(`metrics.bootstrap_draws`; UF1 would be averaged over fewer classes) and
counted. With grouped seeds the intervals hold the seeds fixed.
"""

import dataclasses
import glob
import json
import os
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import numpy as np

from edmdbn_jax import errors
from edmdbn_jax import train
from edmdbn_jax.configs import edmdbn as edmdbn_config
from edmdbn_jax.evaluators import metrics
from edmdbn_jax.evaluators import report

SELECTIONS = train.SELECTIONS


@dataclasses.dataclass
class Run:
  """One scored LOSO run directory."""
  path: str
  config: Dict[str, Any]
  class_names: List[str]
  subjects: List[str]                      # held-out subjects, sorted
  clips: Dict[str, List[str]]              # subject -> held-out clips
  labels: Dict[str, np.ndarray]            # subject -> held-out labels
  preds: Dict[str, Dict[str, np.ndarray]]  # selection -> subject -> preds
  fingerprints: Dict[str, Optional[str]]   # subject -> training-data digest
  complete: bool
  subjects_total: Optional[int]
  # subject -> how its fold trained (`trained_with`: fold grouping and
  # devices, one entry per setting it ran under; None for folds trained
  # before it was recorded).
  training: Dict[str, Any] = dataclasses.field(default_factory=dict)


def load_run(path: str) -> Run:
  """Reads a run directory's config, results and folds."""
  cfg_path = os.path.join(path, "config.json")
  res_path = os.path.join(path, "results.json")
  for p, what in ((cfg_path, "is it a run directory of experiments.loso?"),
                  (res_path, "the run is not scored yet: run "
                   "experiments.loso on it again (finished folds are not "
                   "retrained) to score it.")):
    if not os.path.exists(p):
      raise errors.ConfigError(f"{p} does not exist: {what}")
  config = train.read_json(cfg_path, "delete it and score the run again.")
  results = train.read_json(res_path, "score the run again (run "
                            "experiments.loso on it).")
  k = int(config["model"]["num_classes"])
  epochs = int(config["train"]["epochs"])
  # The subjects the run was scored on (results.json), not every fold
  # directory: one left by an earlier plan (e.g. a subject a rebuilt
  # dataset dropped) is not part of the score.
  scored = [row["subject"] for row in results.get("per_fold", [])]
  if not scored:
    raise errors.ConfigError(
        f"{res_path} scores no held-out subject (a --final_model run holds "
        "none): compare LOSO runs.")
  found = {}
  for f in sorted(glob.glob(os.path.join(path, "folds", "*",
                                         "result.json"))):
    stored = train.read_json(f, "delete it and run again to retrain this "
                             "fold.")
    found[stored["subject"]] = (f, stored)
  missing = [s for s in scored if s not in found]
  if missing:
    raise errors.CheckpointError(
        f"{res_path} scores subjects whose folds/*/result.json is gone: "
        f"{missing[:10]}. Run experiments.loso on {path} again (it retrains "
        "those folds and scores the run afresh).")
  extra = sorted(s for s in found if s and s not in scored)
  if extra:
    logging.warning("%s: fold results of %s are not in its results.json "
                    "(left from another plan of the run?): left out.", path,
                    extra)
  clips, labels, fingerprints, training = {}, {}, {}, {}
  preds = {s: {} for s in SELECTIONS}
  for subject in scored:
    f, stored = found[subject]
    if "test_clips" not in stored:
      raise errors.CheckpointError(
          f"{f} does not list its held-out clips (written by an older "
          "version): delete the fold's result.json and run again.")
    lab = np.asarray(stored["test_labels"], np.int64)
    clips[subject] = list(stored["test_clips"])
    labels[subject] = lab
    fingerprints[subject] = stored.get("train_fingerprint")
    training[subject] = (tuple(stored["trained_with"])
                         if "trained_with" in stored else None)
    for sel in SELECTIONS:
      rec, _ = train.select_epoch(stored["history"], sel, f, labels=lab,
                                  num_classes=k, epochs=epochs)
      preds[sel][subject] = np.asarray(rec["logits"]).argmax(-1)
  protocol = results.get("protocol", {})
  return Run(path=path, config=config,
             class_names=list(results["class_names"]),
             subjects=sorted(clips), clips=clips, labels=labels, preds=preds,
             fingerprints=fingerprints,
             complete=bool(protocol.get("complete", True)),
             subjects_total=protocol.get("subjects_total"),
             training=training)


# A difference in how folds were grouped or on which device they trained.
ROUNDING = "fold grouping / device (float rounding)"


def config_differences(reference: Run, run: Run) -> Dict[str, Any]:
  """{key: (reference value, run value)} of the config keys that differ,
  and 'training data' when some fold was trained on other clips or frames
  (another build of the dataset) than the reference's same fold."""
  # Keys that only schedule the work or name paths (those a run may resume
  # with changed) are not differences between results.
  a = edmdbn_config.flatten(reference.config)
  b = edmdbn_config.flatten(run.config)
  out = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
         if k not in train.RESUME_INVARIANT and a.get(k) != b.get(k)}
  other = [s for s in reference.subjects
           if None not in (reference.fingerprints.get(s),
                           run.fingerprints.get(s))
           and reference.fingerprints[s] != run.fingerprints[s]]
  if other:
    out["training data"] = (
        "reference build", f"other clips or frames in {len(other)} of "
        f"{len(reference.subjects)} folds' training sets")
  # Same config, other fold grouping (fold_parallel) or device: the same
  # computation with other float rounding, which compounds over training
  # (0.01 UF1 on the README's main command), so it is said.
  moved = [s for s in reference.subjects
           if None not in (reference.training.get(s), run.training.get(s))
           and reference.training[s] != run.training[s]]
  if moved:
    def how(r):
      return ", ".join(sorted({" then ".join(r.training[s]) for s in moved}))
    out[ROUNDING] = (how(reference), how(run))
  return out


def check_comparable(reference: Run, run: Run):
  """Refuses runs that held out other subjects, clips or labels."""
  problems = []
  if run.class_names != reference.class_names:
    problems.append(f"classes {run.class_names} vs {reference.class_names}")
  ra, rb = set(reference.subjects), set(run.subjects)
  if ra != rb:
    problems.append(
        f"held-out subjects differ (only in {reference.path}: "
        f"{sorted(ra - rb)[:10]}; only in {run.path}: {sorted(rb - ra)[:10]})")
  for s in sorted(ra & rb):
    if (reference.clips[s] != run.clips[s] or
        not np.array_equal(reference.labels[s], run.labels[s])):
      problems.append(f"subject {s} holds other clips or labels")
      break
  if problems:
    raise errors.DataError(
        f"{run.path} cannot be compared with {reference.path}: "
        + "; ".join(problems) + ". Compare runs on the same dataset build "
        "and class set, each scored over the same subjects (finish partial "
        "runs first).")


def _counts(run: Run, selection: str, subjects: Sequence[str], k: int):
  """(S, K, K) confusion matrix of each subject."""
  return np.stack([metrics.confusion_matrix(
      run.labels[s], run.preds[selection][s], k) for s in subjects])


def _uf1(cm) -> float:
  return metrics.scores_from_confusion(cm)["uf1"]


def _seed(run: Run):
  return run.config.get("train", {}).get("seed")


def group_by_seed(runs: Sequence[Run]) -> List[List[Run]]:
  """Runs whose configs and training data differ only in `train.seed` (and
  in keys that only schedule the work, or the fold grouping and device
  they trained with), grouped in order of first
  appearance; a run joins a group only if it matches every member.

  Raises:
    ConfigError: two runs of one group have the same seed (replicates, e.g.
      a rerun with another fold_parallel, or a directory given twice): they
      would weigh that seed twice.
  """
  groups: List[List[Run]] = []
  for run in runs:
    for g in groups:
      if all(set(config_differences(m, run)) <= {"train.seed", ROUNDING}
             for m in g):
        same = [m.path for m in g if _seed(m) == _seed(run)]
        if same:
          raise errors.ConfigError(
              f"{run.path} and {same[0]} have the same config and seed "
              f"({_seed(run)}): replicates, not seeds. Give one of them "
              "(or compare without --group_seeds).")
        g.append(run)
        break
    else:
      groups.append([run])
  return groups


def compare(runs: Sequence[Run], *, bootstrap: int = 2000, seed: int = 0,
            level: float = 0.95, group_seeds: bool = False
            ) -> Dict[str, Any]:
  """Scores of every run under every selection, with subject-bootstrap
  intervals and paired differences from the first run (JSON-ready).

  With `group_seeds`, runs that differ only in their seed form one row:
  its scores are means over the seeds (each seed pooled over folds), its
  interval and difference come from the same subject resamples applied to
  every seed, and `uf1_per_seed` lists the seeds' own scores.
  """
  if len(runs) < 1:
    raise errors.ConfigError("Give at least one run directory.")
  ref = runs[0]
  for r in runs[1:]:
    check_comparable(ref, r)
  groups = group_by_seed(runs) if group_seeds else [[r] for r in runs]
  subjects = ref.subjects
  if len(subjects) < metrics.MIN_BOOTSTRAP_SUBJECTS:
    raise errors.ConfigError(
        f"{ref.path} scores {len(subjects)} held-out subject(s); a subject "
        f"bootstrap needs {metrics.MIN_BOOTSTRAP_SUBJECTS} or more (finish "
        "the run first).")
  k = len(ref.class_names)
  # Every run holds the same clips and labels: one set of draws, each
  # holding every class of the full set, serves them all (paired).
  draws, dropped = metrics.bootstrap_draws(
      _counts(ref, "fixed", subjects, k), bootstrap, seed)
  if not len(draws):
    raise errors.DataError(
        f"No subject resample of {bootstrap} holds every class (a class "
        "held by a single subject among many?): no interval can be given.")
  out = {"reference": ref.path, "subjects": len(subjects),
         "bootstrap": {"resamples": bootstrap, "dropped": dropped,
                       "seed": seed, "level": level,
                       "unit": "subject (paired across runs)"},
         "grouped_by_seed": bool(group_seeds),
         "class_names": ref.class_names, "runs": []}

  def group_stats(group, sel):
    """Means over the group's runs: pooled scores, per-subject UF1 and the
    bootstrap replicates of the pooled UF1."""
    cms = [_counts(r, sel, subjects, k) for r in group]
    pooled = [metrics.scores_from_confusion(c.sum(0)) for c in cms]
    boot = np.mean([[_uf1(c[d].sum(0)) for d in draws] for c in cms], 0)
    per_subject = np.mean([[metrics.fold_scores(x, "skip")["uf1"]
                            for x in c] for c in cms], 0)
    return pooled, boot, per_subject

  ref_stats = {}
  for group in groups:
    lead = group[0]
    diffs = {}
    for member in group:  # e.g. one seed trained on another build
      diffs.update(config_differences(ref, member))
    if group_seeds:
      diffs.pop("train.seed", None)
    row = {"path": lead.path, "paths": [r.path for r in group],
           "seeds": [_seed(r) for r in group],
           "complete": all(r.complete for r in group),
           "subjects_total": lead.subjects_total,
           "config_differences": {k_: list(v) for k_, v in diffs.items()},
           "selections": {}}
    for sel in SELECTIONS:
      pooled, boot, per_subject = group_stats(group, sel)
      if group is groups[0]:
        ref_stats[sel] = pooled, boot, per_subject
      ref_pooled, ref_boot, ref_subject = ref_stats[sel]
      mean = {key: float(np.mean([p[key] for p in pooled]))
              for key in ("uf1", "uar", "accuracy")}
      d = {**mean,
           "uf1_per_seed": [p["uf1"] for p in pooled],
           "uf1_interval": metrics.percentile_interval(boot, level),
           "per_fold_mean_uf1_skip": float(np.mean(per_subject))}
      if group is not groups[0]:
        diff = boot - ref_boot
        d.update({
            "delta_uf1": mean["uf1"] - float(np.mean(
                [p["uf1"] for p in ref_pooled])),
            "delta_uf1_interval": metrics.percentile_interval(diff, level),
            "subjects_better": int((per_subject > ref_subject).sum()),
            "subjects_equal": int((per_subject == ref_subject).sum()),
            "subjects_worse": int((per_subject < ref_subject).sum())})
      row["selections"][sel] = d
    out["runs"].append(row)
  return out


def _name(path: str) -> str:
  """A run as the user named it (two runs may share a base name)."""
  return os.path.normpath(path)


def markdown(result: Dict[str, Any]) -> str:
  """The comparison as a markdown table per selection, protocol stated."""
  b = result["bootstrap"]
  pct = f"{100 * b['level']:g}%"
  lines = [
      f"LOSO runs compared on the same {result['subjects']} held-out "
      f"subjects; reference: `{_name(result['reference'])}`. UF1/UAR/"
      "accuracy pooled over all folds (MEGC pooling). Intervals: "
      f"{pct} percentile bootstrap over subjects ({b['resamples']} "
      "resamples" + (f", {b['dropped']} that lacked a class dropped"
                     if b.get("dropped") else "")
      + ", paired for the differences). Better / equal / worse: "
      "subjects whose own UF1 (classes in their labels) beats, equals or "
      "trails the reference's."
      + (" Rows group runs that differ only in their seed: scores are "
         "means over the seeds (each seed's own UF1 listed), intervals and "
         "differences from the same subject resamples applied to every "
         "seed: they hold the seeds fixed and leave out seed-to-seed "
         "variation (compare the seeds' own scores)."
         if result.get("grouped_by_seed") else ""), ""]
  for sel in SELECTIONS:
    label = report.selection_label(sel)
    lines += [f"### {label}", ""]
    if sel != "fixed":
      lines += ["**" + metrics.SELECTION_NOTES[sel] + ".**", ""]
    lines += [f"| run | differs from the reference in | UF1 ({pct} interval) "
              "| UAR | accuracy | per-fold mean UF1 (absent classes: skip) | delta UF1 "
              f"({pct} interval) | better / equal / worse |",
              "|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(result["runs"]):
      d = row["selections"][sel]
      diffs = ", ".join(f"{k}={v[1]!r}" for k, v in
                        row["config_differences"].items()) or "(reference)"
      if i and not row["config_differences"]:
        diffs = "nothing (same config)"
      paths = row.get("paths", [row["path"]])
      name = f"`{_name(row['path'])}`"
      seeds = ""
      if len(paths) > 1:
        name = " + ".join(f"`{_name(q)}`" for q in paths)
        seeds = (f"; {len(paths)} seeds {row['seeds']}: UF1 "
                 + ", ".join(f"{u:.3f}" for u in d["uf1_per_seed"]))
      part = "" if row["complete"] else (
          f" PARTIAL {result['subjects']}/{row['subjects_total']} subjects")
      delta = ("" if "delta_uf1" not in d else
               f"{d['delta_uf1']:+.4f} ({d['delta_uf1_interval'][0]:+.3f}, "
               f"{d['delta_uf1_interval'][1]:+.3f})")
      wins = ("" if "subjects_better" not in d else
              f"{d['subjects_better']} / {d['subjects_equal']} / "
              f"{d['subjects_worse']}")
      lines.append(
          f"| {name}{part} | {diffs}{seeds} | {d['uf1']:.4f} "
          f"({d['uf1_interval'][0]:.3f}, {d['uf1_interval'][1]:.3f}) | "
          f"{d['uar']:.4f} | {d['accuracy']:.4f} | "
          f"{d['per_fold_mean_uf1_skip']:.4f} | {delta} | {wins} |")
    lines.append("")
  return "\n".join(lines)


def plot(result: Dict[str, Any], path: str):
  """Pooled UF1 of each run with its interval: fixed budget filled, the
  test-selected protocols hollow."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  runs = result["runs"]
  fig, ax = plt.subplots(figsize=(1.6 * len(runs) + 3, 4))
  styles = {"fixed": ("o", "tab:blue", "fixed budget"),
            "test_best": ("v", "tab:red", "test_best (SELECTED ON TEST)"),
            "released": ("^", "tab:purple", "released (SELECTED ON TEST)")}
  for j, sel in enumerate(SELECTIONS):
    m, c, label = styles[sel]
    x = np.arange(len(runs)) + (j - 1) * 0.18
    y = [r["selections"][sel]["uf1"] for r in runs]
    lo = [r["selections"][sel]["uf1_interval"][0] for r in runs]
    hi = [r["selections"][sel]["uf1_interval"][1] for r in runs]
    # A percentile interval of a non-linear score need not hold the point
    # estimate: bars are clipped at the point rather than drawn negative.
    ax.errorbar(x, y, yerr=[np.maximum(np.subtract(y, lo), 0),
                            np.maximum(np.subtract(hi, y), 0)], fmt=m,
                color=c, mfc=c if sel == "fixed" else "none", capsize=3,
                label=label)
    # Grouped seeds: each seed's own score as a small dot.
    for xi, r in zip(x, runs):
      per_seed = r["selections"][sel].get("uf1_per_seed", [])
      if len(per_seed) > 1:
        ax.plot(np.full(len(per_seed), xi + 0.06), per_seed, ".", color=c,
                ms=3, alpha=0.7)
  grouped = [len(r.get("paths", [r["path"]])) > 1 for r in runs]
  ax.set_xticks(range(len(runs)), [
      _name(r["path"]) + (f"\n+ {len(r['paths']) - 1} more: mean of seeds "
                          + ", ".join(map(str, r["seeds"])) if g else "")
      for r, g in zip(runs, grouped)], rotation=20, ha="right", fontsize=8)
  ax.set_ylabel("UF1, pooled over folds")
  ax.set_ylim(0, 1)
  b = result["bootstrap"]
  title = (f"LOSO, {result['subjects']} subjects; bars: "
           f"{100 * b['level']:g}% subject bootstrap")
  if any(grouped):
    ax.plot([], [], ".", color="0.3", label="each seed's own UF1")
    title += ("\n(seeds held fixed: a group's bar leaves out "
              "seed-to-seed\nvariation, so a seed may fall outside it)")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(result: Dict[str, Any], directory: str) -> List[str]:
  """compare.md, compare.json and compare.png in `directory`."""
  os.makedirs(directory, exist_ok=True)
  paths = [os.path.join(directory, n) for n in
           ("compare.md", "compare.json", "compare.png")]
  with open(paths[0], "w", encoding="utf-8") as f:
    f.write(markdown(result))
  with open(paths[1], "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  plot(result, paths[2])
  return paths
