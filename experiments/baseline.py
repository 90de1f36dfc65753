r"""A pixel-difference baseline under LOSO, to calibrate what EDMDBN learns.

  python -m experiments.baseline --dataset=synthetic

Features: the apex - onset difference (the entire motion), converted to grey,
average-pooled to --grid x --grid and standardised on each fold's training
clips. Classifier: multinomial logistic regression with L2 penalty, fitted by
full-batch gradient descent in NumPy on the training subjects of each fold.
Scores: LOSO, aggregated over all folds' predictions (MEGC rule), fixed
budget (nothing chosen on the held-out subject), plus per-fold means.
"""

import json
import sys

from absl import app
from absl import flags
import cv2
import numpy as np

from edmdbn_jax import errors
from edmdbn_jax import input_pipeline
from edmdbn_jax.evaluators import metrics
from experiments import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags; called only when run as a script (see
  experiments.gradcam.define_flags)."""
  flags.DEFINE_string("dataset", "synthetic", "Dataset name.")
  flags.DEFINE_integer("num_classes", 5, "Class set.")
  flags.DEFINE_integer("image_size", 64, "Stored frame size.")
  flags.DEFINE_string("variant", "", "Builder size variant.")
  flags.DEFINE_string("data_dir", None, "tfds data dir.")
  flags.DEFINE_string("manual_dir", None, "Raw data (licensed).")
  flags.DEFINE_integer("grid", 16, "Pooled feature grid.")
  flags.DEFINE_float("l2", 1e-2, "L2 penalty.")
  flags.DEFINE_integer("steps", 500, "Gradient steps per fold.")
  flags.DEFINE_string("json", None, "Write the results here.")


def features(clips: input_pipeline.Clips, grid: int) -> np.ndarray:
  out = []
  for i in range(len(clips)):
    onset = clips.frames[i, clips.keyframe_pos[i, 0]].astype(np.float32)
    apex = clips.frames[i, clips.keyframe_pos[i, 1]].astype(np.float32)
    d = (apex - onset).mean(-1)
    out.append(cv2.resize(d, (grid, grid), interpolation=cv2.INTER_AREA)
               .reshape(-1))
  return np.stack(out)


def fit_predict(x_train, y_train, x_test, k, l2, steps):
  mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
  xt, xs = (x_train - mu) / sd, (x_test - mu) / sd
  w = np.zeros((xt.shape[1], k))
  b = np.zeros(k)
  onehot = np.eye(k)[y_train]
  lr = 0.5
  for _ in range(steps):
    z = xt @ w + b
    z -= z.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    g = (p - onehot) / len(xt)
    w -= lr * (xt.T @ g + l2 * w)
    b -= lr * g.sum(0)
  return (xs @ w + b).argmax(1)


def run(clips, grid=16, l2=1e-2, steps=500, data: str = ""):
  """LOSO of the baseline on `clips`; `data` names the dataset build in the
  protocol note (e.g. 'synthetic (5 classes, 32 px, variant test)')."""
  x = features(clips, grid)
  k = len(clips.class_names)
  folds = []
  for s in clips.subject_list():
    test = clips.subjects == s
    pred = fit_predict(x[~test], clips.labels[~test], x[test], k, l2, steps)
    folds.append(metrics.FoldResult(
        s, clips.labels[test], pred, list(clips.clips[test]),
        list(clips.datasets[test])))
  return metrics.summarize(
      folds, k, list(clips.class_names), selection="fixed",
      protocol_note=f"pixel-difference baseline (grid {grid}, logistic "
                    f"regression){', dataset ' + data if data else ''}, "
                    f"{len(clips)} clips")


def describe(res, clips, dataset: str) -> str:
  """The printed summary of `run`'s result, each score with its protocol."""
  a = res["aggregated"]
  n_subjects = len(clips.subject_list())
  chance = 1.0 / len(clips.class_names)
  lines = [
      f"Pixel-difference baseline on {dataset} ({len(clips)} clips, "
      f"{n_subjects} subjects): LOSO, aggregated over folds, fixed budget: "
      f"UF1 {a['uf1']:.3f}, UAR {a['uar']:.3f}, accuracy {a['accuracy']:.3f} "
      f"(UAR of a constant or random guess: {chance:.3f})"]
  ci = a["interval"]
  if ci:
    lines.append(
        f"  {100 * ci['level']:g}% percentile bootstrap over the {n_subjects} "
        f"subjects: UF1 {ci['uf1'][0]:.3f} to {ci['uf1'][1]:.3f}, UAR "
        f"{ci['uar'][0]:.3f} to {ci['uar'][1]:.3f}")
  else:
    lines.append(
        f"  no subject-bootstrap interval ({n_subjects} subjects; it needs "
        f"{metrics.MIN_BOOTSTRAP_SUBJECTS} or more, and resamples holding "
        "every class)")
  for rule, sc in res["per_fold_mean"].items():
    lines.append(f"  per-fold mean (absent classes: {rule}): UF1 "
                 f"{sc['uf1']:.3f}, UAR {sc['uar']:.3f}")
  return "\n".join(lines)


def main(argv):
  del argv
  cli.quiet_orbax_logs()  # and tfds's INFO lines, as loso does
  try:
    clips = input_pipeline.load_clips(
        FLAGS.dataset, num_classes=FLAGS.num_classes,
        image_size=FLAGS.image_size, variant=FLAGS.variant,
        data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir)
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  # The build as tfds names it: dataset/config/version (e.g.
  # synthetic_me/5class_32_test/1.0.0).
  data = (clips.preprocessing or {}).get("build", FLAGS.dataset)
  res = run(clips, FLAGS.grid, FLAGS.l2, FLAGS.steps, data=data)
  print(describe(res, clips, data))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(res, f, indent=2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
