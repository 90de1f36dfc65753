r"""Class activation panels for clips of a LOSO run (or any toolkit model
directory).

  python -m experiments.gradcam --workdir=runs/synthetic_5class_tiny \
      --fold=synthetic/s01 [--clips=s01_c000,s01_c003] [--target=fused] \
      [--method=hirescam]

`--method`: 'hirescam' (default: gradient x activation, each position's
exact share of the class logit with EDMDBN's linear head) or 'gradcam'
(Grad-CAM, for comparison with published figures; see edmdbn_jax.explain
for why it can miss where this head reads).

For each clip it writes to `<workdir>/gradcam/<fold>/` (`gradcam_entire/`,
`gradcam_detail/` for --target=entire/detail, with `_method_gradcam` added
for --method=gradcam; or --output):
  <clip>.png        onset, apex, apex - onset, one heatmap overlay per class
                    (and the accumulated Token Attention maps),
  <clip>_cams.npy   the drawn maps (K, h, w) in [0, 1],
  <clip>_signed.npy the maps before the ReLU and the scaling (K, h, w), in
                    logit units: with HiResCAM each sums to the class logit
                    less the head's bias, and with add fusion the fused map
                    is the entire plus the detail map,
  <clip>_attention.npz  the Token Attention maps,
and over all the clips explained:
  class_means.png   per class, the mean map of the true class over
                    that class's clips, on their mean apex frame (aligned
                    faces), with how many were predicted right,
  class_means.npz   those maps, mean frames and counts.
By default the fold's held-out clips are explained with the fold's model
(the model after the last epoch). `--model_dir` uses another model directory
(e.g. `<workdir>/final_model`) with the run's dataset.
"""

import json
import os
import sys

from absl import app
from absl import flags
import jax
import numpy as np
from tqdm.auto import tqdm

from edmdbn_jax import checkpoints
from edmdbn_jax import errors
from edmdbn_jax import explain
from edmdbn_jax import train
from edmdbn_jax.data import temporal
from experiments import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags.

  Called only when the module runs as a script, so that importing it (e.g.
  `experiments.gradcam.run` in a notebook) next to other experiments modules
  defines no flags that could clash with theirs.
  """
  flags.DEFINE_string("workdir", None, "A LOSO run directory.")
  flags.DEFINE_string("fold", None, "Held-out subject of the fold "
                      "(e.g. 'casme2/sub01', 'sub01' or the fold "
                      "directory name 'casme2_sub01'), or 'all': every "
                      "fold's held-out clips with that fold's model, and "
                      "class means over the whole dataset.")
  flags.DEFINE_list("clips", None, "Clip names (default: all the "
                    "fold's held-out clips).")
  flags.DEFINE_string("model_dir", None, "Model directory to use "
                      "instead of the fold's.")
  flags.DEFINE_enum("target", "fused", list(explain.TARGETS),
                    "Feature map to explain.")
  flags.DEFINE_enum("method", explain.DEFAULT_METHOD, list(explain.METHODS),
                    "hirescam: gradient x activation (each position's share "
                    "of the logit); gradcam: Grad-CAM (gradients averaged "
                    "over positions).")
  flags.DEFINE_string("output", None, "Output directory.")


def _find_subject(subjects, fold_name):
  """The subject --fold names ('casme2/sub01', 'sub01' or 'casme2_sub01')."""
  match = train.subject_matches(subjects, fold_name)
  if len(match) > 1:
    raise errors.ConfigError(
        f"--fold={fold_name!r} names more than one subject ({match}); give "
        "the full id.")
  if not match:
    raise errors.ConfigError(
        f"--fold={fold_name!r} is not a subject of this run; subjects: "
        f"{subjects}")
  return match[0]


def training_clips(clips, model_dir, config=None, meta=None):
  """Indices of `clips` the model in `model_dir` was trained on, or None
  when that is not known.

  From the model's provenance: a fold model ('fold': its held-out subject)
  was trained on every other subject's clips, a final model ('all
  subjects') on all of them; trusted only when the model was trained on
  this dataset (its config's data.dataset and variant equal `config`'s,
  when given). None when the provenance names no subject of this dataset
  (e.g. imported weights) or the model was trained on another dataset.
  """
  if meta is None:  # the model directory's meta item, if not read yet
    meta = checkpoints.load_meta(model_dir)
  if config is not None:
    trained_on = meta.get("config", {}).get("data", {})
    if any(trained_on.get(k, "") != config.data.get(k, "")
           for k in ("dataset", "variant")):
      return None
  fold = meta.get("provenance", {}).get("fold")
  if fold == "all subjects":
    return set(range(len(clips.labels)))
  if fold in set(clips.subject_list()):
    return set(np.flatnonzero(clips.subjects != fold).tolist())
  return None


class _ClassMeans:
  """Per class: sums of the true-class maps and apex frames, clip counts."""

  def __init__(self, k, size):
    self.apex = np.zeros((k, size, size, 3), np.float64)
    self.cams = None
    self.counts = np.zeros(k, int)
    self.correct = np.zeros(k, int)
    self.empty = np.zeros(k, int)
    self.clips = 0
    self.training = 0
    self.unknown = 0

  def add(self, cams, apex, label, predicted, in_training):
    """`in_training`: True, False, or None (not known)."""
    if self.cams is None:
      self.cams = np.zeros((len(self.counts),) + cams.shape[1:], np.float64)
    self.cams[label] += cams[label]
    self.empty[label] += int(not np.any(cams[label]))
    self.apex[label] += apex
    self.counts[label] += 1
    self.correct[label] += int(predicted == label)
    self.clips += 1
    self.training += int(in_training is True)
    self.unknown += int(in_training is None)

  def write(self, out_dir, class_names, what, method):
    """class_means.png / .npz in out_dir; returns the PNG path."""
    n = np.maximum(self.counts, 1)
    cam_means = self.cams / n[:, None, None]
    apex_means = self.apex / n[:, None, None, None]
    png = os.path.join(out_dir, "class_means.png")
    seen = (f"; {self.training} were training clips" if self.training
            else "")
    if self.unknown:
      seen += (f"; whether {self.unknown} were training clips is not "
               "known")
    explain.save_class_means(
        png, apex_means, cam_means, self.counts, self.correct, class_names,
        title=f"Mean {explain.METHOD_LABELS[method]} on {what} of each "
              "clip's true class, over "
              f"{self.clips} clips{seen}", empty=self.empty)
    np.savez(os.path.join(out_dir, "class_means.npz"), cams=cam_means,
             apex=apex_means, counts=self.counts, correct=self.correct,
             empty=self.empty, class_names=np.asarray(class_names))
    return png


def _explainer(model, num_classes, target, method):
  """A jitted (variables, gathered, weights, keyframe_pos) -> (map
  results, the forward's `out`) for one clip; compiled once for every fold
  (the parameters are an argument, not constants)."""

  @jax.jit
  def explain_clip(variables, gathered, weights, keyframe_pos):
    frames, keyframes = temporal.assemble(gathered, weights, keyframe_pos)
    res = explain.gradcam(model, variables, frames, keyframes,
                          classes=list(range(num_classes)), target=target,
                          return_out=True, return_signed=True,
                          method=method)
    return res, res.pop("out")

  return explain_clip


def _folds_with_model(workdir):
  """Names of the fold directories of `workdir` that hold a model."""
  folds_dir = os.path.join(workdir, "folds")
  if not os.path.isdir(folds_dir):
    return []
  return sorted(d for d in os.listdir(folds_dir)
                if os.path.isdir(os.path.join(folds_dir, d, "model")))


def output_folder(target: str, method: str = explain.DEFAULT_METHOD) -> str:
  """The run's folder for maps on `target` by `method`: one per target and
  method, so no maps overwrite others."""
  base = "gradcam" if target == "fused" else f"gradcam_{target}"
  return base if method == explain.DEFAULT_METHOD else (
      f"{base}_method_{method}")


def run_all(workdir, target="fused", output=None, progress=True,
            method=explain.DEFAULT_METHOD):
  """Every fold with a model explains its held-out clips (panels in
  <output>/<fold>/); class means over all of them in <output>/.

  Returns the PNG paths (each fold's, then the overall class_means.png).
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  root = output or os.path.join(workdir, output_folder(target, method))
  with_model = _folds_with_model(workdir)
  if not with_model:
    raise errors.CheckpointError(
        f"{workdir} holds no fold with a model yet (see "
        f"{os.path.join(workdir, 'folds')}): train the run first.")
  shared = {}
  paths = []
  for name in with_model:
    paths += run(workdir, fold_name=name, target=target,
                 output=os.path.join(root, name), progress=progress,
                 method=method, _shared=shared)
  paths.append(shared["means"].write(
      root, list(shared["clips"].class_names),
      f"{target} ({len(with_model)} folds, each clip by the model that held "
      "it out)", method))
  jax.clear_caches()
  return paths


def run(workdir, fold_name=None, clip_names=None, model_dir=None,
        target="fused", output=None, progress=True,
        method=explain.DEFAULT_METHOD, _shared=None):
  """Writes panels and maps; returns the list of PNG paths.

  Args:
    workdir: a LOSO run directory (holds config.json and folds/).
    fold_name: held-out subject of the fold ('casme2/sub01', 'sub01' or
      'casme2_sub01'); its model explains its held-out clips by default.
    clip_names: clips to explain (default: the fold's held-out clips).
    model_dir: a model directory to use instead of the fold's.
    target: 'fused', 'entire' or 'detail' (see edmdbn_jax.explain).
    method: 'hirescam' or 'gradcam' (see edmdbn_jax.explain).
    output: output directory (default <workdir>/gradcam/<fold or 'model'>,
      gradcam_<target>/ for a branch target).
    progress: show a progress bar.

  Returns:
    Paths of the PNG panels, one per clip, each next to <clip>_cams.npy
    (float32 (K, h, w) in [0, 1]) and <clip>_attention.npz, then
    class_means.png. fold_name='all': `run_all`.

  Raises:
    CheckpointError: no run at workdir, an untrained fold, a model for
      another class set.
    ConfigError: unknown fold or clips, nothing to explain.
  """
  if fold_name == "all" and _shared is None:
    if clip_names or model_dir:
      raise errors.ConfigError(
          "--fold=all explains every fold's held-out clips with its own "
          "model: leave out --clips and --model_dir.")
    return run_all(workdir, target, output, progress, method)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.exists(cfg_path):
    raise errors.CheckpointError(
        f"{workdir} is not a LOSO run directory (no config.json); pass the "
        "--workdir of an experiments.loso run.")
  if target not in explain.TARGETS:
    raise errors.ConfigError(
        f"target={target!r}; choose from {explain.TARGETS}.")
  with open(cfg_path) as f:
    config = checkpoints.config_from_json(json.load(f))
  shared = {} if _shared is None else _shared
  if "clips" not in shared:
    shared["clips"] = train.load_data(config)
  clips = shared["clips"]
  subjects = clips.subject_list()
  fold = None
  if fold_name:
    fold = train.make_folds(clips, [_find_subject(subjects, fold_name)])[0]
  if model_dir is None:
    if fold is None:
      raise errors.ConfigError(
          "Pass --fold (its model explains its held-out clips), --fold=all, "
          "or --model_dir with --clips.")
    model_dir = os.path.join(train.fold_dir(workdir, fold), "model")
    if not os.path.isdir(model_dir):
      raise errors.CheckpointError(
          f"Fold {fold.subject} has no model in {workdir} (not trained yet, "
          f"or left out by --config.train.folds); folds with a model: "
          f"{_folds_with_model(workdir)}.")
  model, variables, model_config, class_names, meta = (
      checkpoints.load_model_and_meta(model_dir))
  # A model of another run must take this run's inputs as they are.
  differ = [f"data.{key}: model {model_config.data.get(key)!r}, run "
            f"{config.data.get(key)!r}"
            for key in ("image_size", "num_frames", "temporal")
            if model_config.data.get(key) != config.data.get(key)]
  if differ:
    raise errors.ConfigError(
        f"{model_dir} was made for other inputs than the run at {workdir} "
        f"({'; '.join(differ)}); pass a model made with the run's data "
        "settings, or the --workdir of the run that made it.")
  if target != "fused" and model.branches not in ("both", target):
    raise errors.ConfigError(
        f"{model_dir} has no {target} branch (branches={model.branches!r}); "
        f"use --target=fused or --target={model.branches}.")
  if tuple(class_names) != tuple(clips.class_names):
    raise errors.CheckpointError(
        f"{model_dir} was trained for classes {class_names}, the run's "
        f"dataset has {clips.class_names}.")
  if clip_names:
    lookup = {str(c): i for i, c in enumerate(clips.clips)}
    missing = [c for c in clip_names if c not in lookup]
    if missing:
      pool = (clips.clips[fold.test_idx] if fold is not None
              else clips.clips)
      raise errors.ConfigError(
          f"Unknown clips {missing} in {clips.name}; e.g. "
          f"{[str(c) for c in pool[:8]]}.")
    indices = [lookup[c] for c in clip_names]
  elif fold is not None:
    indices = list(fold.test_idx)
  else:
    raise errors.ConfigError(
        "--model_dir without --fold needs --clips (the clips to explain).")
  trained = training_clips(clips, model_dir, config, meta=meta)
  # Which model the probabilities and maps are of, as the user finds it.
  rel = os.path.relpath(os.path.abspath(model_dir), workdir)
  model_label = model_dir if rel.startswith("..") else rel
  # Which epoch's model: the predictions of a run scored with another
  # selection (test_best, released) come from other epochs.
  prov = (meta or {}).get("provenance", {})
  if prov.get("selection") == "last epoch" and prov.get("epochs"):
    model_label += f", after epoch {prov['epochs']}, its last"
  out_dir = output or os.path.join(
      workdir, output_folder(target, method), fold.name if fold else "model")
  os.makedirs(out_dir, exist_ok=True)
  paths = []

  k = len(class_names)
  if shared.get("model") != model:  # folds of one run share one compile
    shared.update(model=model, explain=_explainer(model, k, target, method))
  explain_clip = shared["explain"]
  means = _ClassMeans(k, clips.frames.shape[-2])
  # run_all's class means over every fold it explains.
  accumulators = [means] + ([shared.setdefault("means", _ClassMeans(
      k, clips.frames.shape[-2]))] if _shared is not None else [])
  for i in tqdm(indices, desc=f"{explain.METHOD_LABELS[method]} ({target})",
                unit="clip",
                disable=not progress):
    res, out = explain_clip(variables,
                            clips.frames[i:i + 1].astype(np.float32),
                            clips.weights[i:i + 1],
                            clips.keyframe_pos[i:i + 1])
    attention = {k: v[0] for k, v in explain.attention_maps(out).items()}
    onset = clips.frames[i, clips.keyframe_pos[i, 0]]
    apex = clips.frames[i, clips.keyframe_pos[i, 1]]
    cams = np.asarray(res["cams"][0], np.float32)
    probs = np.asarray(res["probabilities"][0])
    name = str(clips.clips[i]).replace("/", "_")
    label = class_names[int(clips.labels[i])]
    pred = class_names[int(probs.argmax())]
    in_training = None if trained is None else i in trained
    seen = {None: " [training status unknown]", True: " [training clip]",
            False: ""}[in_training]
    png = os.path.join(out_dir, f"{name}.png")
    explain.save_panel(
        png, onset, apex, cams, class_names, probs,
        title=f"{clips.subjects[i]} {clips.clips[i]}{seen}: true {label}, "
              f"predicted {pred} ({explain.METHOD_LABELS[method]} on "
              f"{target}; model {model_label})",
        attention=attention, label=label, method=method)
    np.save(os.path.join(out_dir, f"{name}_cams.npy"), cams)
    np.save(os.path.join(out_dir, f"{name}_signed.npy"),
            np.asarray(res["signed"][0], np.float32))
    for acc in accumulators:
      acc.add(cams, apex, int(clips.labels[i]), int(probs.argmax()),
              in_training)
    np.savez(os.path.join(out_dir, f"{name}_attention.npz"), **{
        k.replace("/", "_"): v for k, v in attention.items()})
    paths.append(png)
  if means.clips:
    # Where the model looks for each class, on average: the true class's
    # map over that class's clips.
    paths.append(means.write(out_dir, class_names,
                             f"{target} (model {model_label})", method))
  if _shared is None:
    jax.clear_caches()
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_orbax_logs()
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required.")
  try:
    paths = run(FLAGS.workdir, FLAGS.fold, FLAGS.clips, FLAGS.model_dir,
                FLAGS.target, FLAGS.output, method=FLAGS.method)
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  for p in paths:
    print(p)


if __name__ == "__main__":
  define_flags()
  app.run(main)
