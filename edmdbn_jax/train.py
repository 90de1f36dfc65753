"""LOSO training and evaluation of EDMDBN: `train_and_evaluate(config, workdir)`.

Reads top to bottom in labelled steps (big_vision / flax-examples style):
data -> folds -> mesh -> model and optimiser -> update and eval steps ->
per group of folds: restore or init, train epochs, checkpoint, evaluate ->
scores and reports.

Design points:
* Every fold's state has a leading *fold axis*; the update step is a `vmap`
  over it, so F folds train at once (`config.train.fold_parallel`). Each fold
  still sees its own batches of `batch_size` from its own training subjects:
  its data order, initial parameters and step RNG depend only on (seed, fold,
  epoch, step), never on which folds share a group, so training folds
  together or one by one gives the same result up to float rounding.
* A fold with fewer steps in an epoch than the run's longest fold gets inactive
  steps that leave its state untouched (no optimiser update, no step count),
  and a short last batch is padded with a mask that removes the padding from
  the loss: the same as PyTorch's `drop_last=False` batches.
* The dataset is resident on device (uint8); batches are gathered, augmented,
  temporally assembled and normalised on device inside one `lax.scan` over an
  epoch's steps: no host round trip per step.
* `jax.jit` with `NamedSharding`s over a ('fold', 'data') mesh: folds are
  sharded over devices when there are several, the batch within a fold over
  the rest; the train state is donated.
* Evaluation of the held-out subject runs after every `eval_every_epochs`;
  padding carries a mask so a 2-clip fold is scored exactly. Three
  protocols are computed from the same run: `fixed` (the last epoch, the
  headline by default), `test_best` (per fold, the epoch that scores best on
  the held-out subject) and `released` (the authors' code's checkpoint and
  early stopping on the held-out subject, replayed on the stored per-epoch
  predictions); the last two are labelled as selected on test data.
"""

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import weakref
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from edmdbn_jax import checkpoints
from edmdbn_jax import errors
from edmdbn_jax import input_pipeline
from edmdbn_jax import progress
from edmdbn_jax import provenance
from edmdbn_jax.configs import edmdbn as edmdbn_config
from edmdbn_jax.data import augment as augment_lib
from edmdbn_jax.data import temporal
from edmdbn_jax.evaluators import metrics as metrics_lib
from edmdbn_jax.evaluators import report as report_lib
from edmdbn_jax.models import from_config
from edmdbn_jax.models import init as init_lib
from edmdbn_jax.models import input_specs

# Config fields that may differ between the run that made a workdir and the
# one resuming it: they change how the work is scheduled, not its result.
RESUME_INVARIANT = ("train.fold_parallel", "train.folds", "train.final_model",
                    # Every selection comes from the same training; this
                    # only picks the headline.
                    "train.selection",
                    "data.data_dir", "data.manual_dir", "train.progress",
                    "train.checkpoint_every_epochs",
                    "train.checkpoint_every_minutes")

EVAL_BATCH = 16


# ---------------------------------------------------------------------------
# Schedule and class weights.
# ---------------------------------------------------------------------------
SCHEDULES = ("warmup_cosine", "released")
# Model selections, all computed from every run (metrics.SELECTION_NOTES):
# the configured one is the headline, the others ride along labelled.
SELECTIONS = ("fixed", "test_best", "released")


def learning_rate(step, steps_per_epoch, *, peak, warmup_epochs, epochs,
                  schedule="warmup_cosine", floor=0.0):
  """The learning rate of a step, in units of the fold's own epochs.

  'warmup_cosine' (the paper): linear warm-up from `floor` to `peak` over
  `warmup_epochs`, then cosine to `floor` over the rest; with floor 0 equal
  to optax.warmup_cosine_decay_schedule(0, peak, warmup_steps, total_steps,
  0) for integer step counts. 'released' (the authors' released
  CosineWarmupScheduler): floor + peak * cosine over *all* steps * min(step /
  warmup_steps, 1), so the peak is never quite reached (0.93 peak at the end
  of a 10-of-60-epoch ramp).

  Folds differ in size, so steps are counted per fold. Works on traced
  values.
  """
  step = jnp.asarray(step, jnp.float32)
  warm = jnp.asarray(warmup_epochs * steps_per_epoch, jnp.float32)
  total = jnp.asarray(epochs * steps_per_epoch, jnp.float32)
  ramp = step / jnp.maximum(warm, 1.0)
  if schedule == "released":
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(
        step / jnp.maximum(total, 1.0), 0.0, 1.0)))
    return floor + peak * cosine * jnp.minimum(ramp, 1.0)
  if schedule != "warmup_cosine":
    raise errors.ConfigError(f"train.schedule={schedule!r}; choose from "
                             f"{SCHEDULES}.")
  up = floor + (peak - floor) * ramp
  frac = jnp.clip((step - warm) / jnp.maximum(total - warm, 1.0), 0.0, 1.0)
  down = floor + 0.5 * (peak - floor) * (1.0 + jnp.cos(jnp.pi * frac))
  return jnp.where(step < warm, up, down)


def weighted_cross_entropy(logits, labels, weights, mask, smoothing=0.0):
  """PyTorch's `F.cross_entropy(weight=, label_smoothing=)` mean, over the
  clips with mask 1.

  loss_i = (1 - s) w[y_i] (-log p_i[y_i]) + (s / K) sum_c w[c] (-log p_i[c]),
  reduced as sum_i loss_i / sum_i w[y_i] (the weighted mean).
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  nll = -jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  wy = weights[labels] * mask
  loss = (1.0 - smoothing) * wy * nll
  if smoothing:
    k = logits.shape[-1]
    loss = loss + (smoothing / k) * mask * jnp.sum(-logp * weights, axis=-1)
  return jnp.sum(loss) / jnp.maximum(jnp.sum(wy), 1e-12)


def class_weights(labels: np.ndarray, num_classes: int, mode: str):
  """'none' -> ones; 'balanced' -> w_i = M / (K * M_i) (0 for absent i)."""
  if mode == "none":
    return np.ones(num_classes, np.float32)
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  w = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)),
               0.0)
  return w.astype(np.float32)


def resolve_class_weights(config) -> str:
  """'none' or 'balanced' ('auto': balanced on SAMM, as in the paper)."""
  mode = config.train.class_weights
  if mode == "auto":
    return "balanced" if config.data.dataset == "samm" else "none"
  if mode not in ("none", "balanced"):
    raise errors.ConfigError(
        f"class_weights={mode!r}; use none|balanced|auto")
  return mode


# ---------------------------------------------------------------------------
# Folds and their batch schedules (host side, deterministic).
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Fold:
  """One LOSO fold: `index` is the subject's position in the sorted list."""
  index: int
  subject: str                 # held-out subject ('' for the final model)
  train_idx: np.ndarray        # clip indices
  test_idx: np.ndarray

  @property
  def name(self) -> str:
    return self.subject.replace("/", "_") if self.subject else "final_model"

  def steps_per_epoch(self, batch: int) -> int:
    return max(1, math.ceil(len(self.train_idx) / batch))


def subject_matches(subjects: Sequence[str], name: str) -> List[str]:
  """The subjects `name` may mean: a full id ('casme2/sub01'), else the id
  without its dataset ('sub01') or a fold folder name ('casme2_sub01');
  more than one when ambiguous."""
  if name in subjects:
    return [name]
  return [s for s in subjects
          if name in (s.split("/", 1)[-1], s.replace("/", "_"))]


def make_folds(clips, subjects: Optional[Sequence[str]] = None,
               final_model: bool = False) -> List[Fold]:
  all_subjects = clips.subject_list()
  if final_model:
    return [Fold(len(all_subjects), "", np.arange(len(clips.labels)),
                 np.zeros((0,), np.int64))]
  chosen = list(all_subjects)
  if subjects:
    # Ids without the '<dataset>/' prefix too, where unambiguous.
    matches = {s: subject_matches(all_subjects, s) for s in subjects}
    ambiguous = [s for s, m in matches.items() if len(m) > 1]
    if ambiguous:
      raise errors.ConfigError(
          f"--folds {ambiguous} name more than one subject "
          f"({[matches[s] for s in ambiguous]}); give the full ids.")
    unknown = [s for s, m in matches.items() if not m]
    if unknown:
      raise errors.ConfigError(
          f"--folds names unknown subjects {unknown}; this dataset has "
          f"{all_subjects}.")
    # Full ids, each once ('s01,synthetic/s01' is one fold).
    chosen = list(dict.fromkeys(matches[s][0] for s in subjects))
  folds = []
  for s in chosen:
    test = np.flatnonzero(clips.subjects == s)
    train = np.flatnonzero(clips.subjects != s)
    folds.append(Fold(all_subjects.index(s), s, train, test))
  return folds


OVERSAMPLE = ("none", "balanced", "auto")


def resolve_oversample(config) -> str:
  """'none' or 'balanced' ('auto': balanced on SAMM and SMIC-HS, as the
  released code's configs do)."""
  mode = config.train.get("oversample", "none")
  if mode not in OVERSAMPLE:
    raise errors.ConfigError(
        f"train.oversample={mode!r}; use {' | '.join(OVERSAMPLE)}.")
  if mode == "auto":
    return ("balanced" if config.data.dataset in ("samm", "smic_hs")
            else "none")
  return mode


def oversample(fold: Fold, labels: np.ndarray, seed: int) -> Fold:
  """The fold with its training clips re-drawn class by class.

  As the released code's offline oversampling: every class present in the
  fold's training set, the largest included, is drawn with replacement up
  to the largest class's count, once per fold (seeded by seed and fold);
  each epoch then shuffles that list.
  """
  y = labels[fold.train_idx]
  classes, counts = np.unique(y, return_counts=True)
  rng = np.random.default_rng([seed, fold.index, 7919])
  drawn = [rng.choice(fold.train_idx[y == c], size=counts.max(), replace=True)
           for c in classes]
  return dataclasses.replace(fold, train_idx=np.sort(np.concatenate(drawn)))


def plan_folds(config, clips, subjects: Optional[Sequence[str]] = None,
               final_model: bool = False) -> List[Fold]:
  """`make_folds`, with each fold's training clips oversampled when the
  config asks for it (`resolve_oversample`)."""
  folds = make_folds(clips, subjects, final_model)
  if resolve_oversample(config) == "balanced":
    folds = [oversample(f, clips.labels, int(config.train.seed))
             for f in folds]
  return folds


def epoch_schedule(fold: Fold, epoch: int, batch: int, seed: int,
                   steps: int):
  """(steps, B) clip indices, mask and (steps,) active flags for one epoch.

  The order depends on (seed, fold, epoch) only. Steps past the fold's own
  count are inactive; a short last batch is padded (mask False). Padding
  and inactive slots repeat one of the fold's training clips, so a batch
  never gathers a held-out clip, even masked.
  """
  rng = np.random.default_rng([seed, fold.index, epoch])
  order = fold.train_idx[rng.permutation(len(fold.train_idx))]
  n_own = fold.steps_per_epoch(batch)
  fill = order[0] if len(order) else 0
  idx = np.full((steps, batch), fill, np.int32)
  mask = np.zeros((steps, batch), bool)
  flat = np.full(n_own * batch, fill, np.int32)
  flat[:len(order)] = order
  m = np.zeros(n_own * batch, bool)
  m[:len(order)] = True
  idx[:n_own] = flat.reshape(n_own, batch)
  mask[:n_own] = m.reshape(n_own, batch)
  active = np.arange(steps) < n_own
  return idx, mask, active


def eval_schedule(indices: np.ndarray, batches: int, batch: int):
  """Pads `indices` to (batches, batch) with a mask; padding repeats the
  first index (a clip of the same held-out subject)."""
  idx = np.full(batches * batch, indices[0] if len(indices) else 0, np.int32)
  mask = np.zeros(batches * batch, bool)
  idx[:len(indices)] = indices
  mask[:len(indices)] = True
  return idx.reshape(batches, batch), mask.reshape(batches, batch)


# ---------------------------------------------------------------------------
# Device data, model inputs and the steps.
# ---------------------------------------------------------------------------
def device_data(clips, mesh):
  """The dataset resident on device, replicated over the mesh."""
  rep = NamedSharding(mesh, P())
  return {
      "frames": jax.device_put(clips.frames, rep),          # uint8
      "weights": jax.device_put(clips.weights.astype(np.float32), rep),
      "keyframe_pos": jax.device_put(clips.keyframe_pos.astype(np.int32), rep),
      "labels": jax.device_put(clips.labels.astype(np.int32), rep),
  }


def model_inputs(data, idx, key=None, augment=False):
  """Gathers clips `idx` (B,) -> (frames, keyframes, labels), on device."""
  gathered = data["frames"][idx].astype(jnp.float32)  # (B, k, S, S, 3)
  if augment:
    gathered = augment_lib.augment(key, gathered)
  frames, keyframes = temporal.assemble(
      gathered, data["weights"][idx], data["keyframe_pos"][idx])
  return frames, keyframes, data["labels"][idx]


def decay_mask(params):
  """True where weight decay applies under weight_decay_mask='matrices':
  parameters of 2 or more dimensions except relative-position tables."""
  def decays(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    return leaf.ndim >= 2 and name != "relative_position_bias_table"
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config):
  t = config.train
  mode = t.get("weight_decay_mask", "all")
  if mode not in ("all", "matrices"):
    raise errors.ConfigError(
        f"train.weight_decay_mask={mode!r}; use all|matrices.")
  return optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
      learning_rate=float(t.learning_rate),
      weight_decay=float(t.weight_decay),
      mask=decay_mask if mode == "matrices" else None)


_STEP_CACHE = {}


def make_steps(model, tx, config, mesh):
  """Jitted (init, train_epoch, evaluate) over a leading fold axis.

  Cached per (model, optimiser-relevant config, mesh), so a notebook or test
  that runs several LOSO experiments with one config compiles once.
  """
  t = config.train
  key = (model, float(t.learning_rate), float(t.weight_decay),
         float(t.warmup_epochs), float(t.epochs),
         str(t.get("weight_decay_mask", "all")),
         str(t.get("schedule", "warmup_cosine")),
         float(t.get("min_learning_rate", 0.0)),
         float(t.get("label_smoothing", 0.0)),
         str(config.model.get("init", "paper")), int(config.data.image_size),
         int(config.data.num_frames), bool(config.data.augment),
         tuple(mesh.devices.flat), tuple(mesh.shape.items()))
  if key not in _STEP_CACHE:
    _STEP_CACHE[key] = _make_steps(model, tx, config, mesh)
  return _STEP_CACHE[key]


def _make_steps(model, tx, config, mesh):
  t = config.train
  dummy = [jnp.zeros(a.shape, a.dtype) for a in input_specs(config)]
  augment = bool(config.data.augment)

  scheme = str(config.model.get("init", "paper"))
  patch = tuple(int(p) for p in config.model.patch_size)

  def init_one(key):
    params = model.init(key, *dummy)["params"]
    params = init_lib.apply(scheme, params, jax.random.fold_in(key, 1),
                            patch)
    return {"params": params, "opt_state": tx.init(params),
            "step": jnp.zeros((), jnp.int32)}

  def train_step_one(state, data, idx, mask, active, weights, spe, key):
    """One fold, one step. idx/mask (B,), active (), weights (K,)."""
    step_key = jax.random.fold_in(key, state["step"])
    aug_key, drop_key = jax.random.split(step_key)
    frames, keyframes, labels = model_inputs(data, idx, aug_key, augment)

    def loss_fn(params):
      logits, _ = model.apply({"params": params}, frames, keyframes,
                              train=True, rngs={"dropout": drop_key})
      # Weighted mean over the real clips (PyTorch's weighted CE reduction).
      loss = weighted_cross_entropy(logits, labels, weights, mask,
                                    float(t.get("label_smoothing", 0.0)))
      correct = jnp.sum((jnp.argmax(logits, -1) == labels) * mask)
      return loss, correct

    (loss, correct), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"])
    lr = learning_rate(state["step"], spe, peak=float(t.learning_rate),
                       warmup_epochs=float(t.warmup_epochs),
                       epochs=float(t.epochs),
                       schedule=str(t.get("schedule", "warmup_cosine")),
                       floor=float(t.get("min_learning_rate", 0.0)))
    opt_state = state["opt_state"]
    opt_state.hyperparams["learning_rate"] = lr
    updates, opt_state = tx.update(grads, opt_state, state["params"])
    new = {"params": optax.apply_updates(state["params"], updates),
           "opt_state": opt_state, "step": state["step"] + 1}
    # Inactive steps (the fold has run out of batches) change nothing.
    new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state)
    n = jnp.sum(mask) * active
    return new, {"loss": loss * active, "lr": lr, "n": n,
                 "correct": correct * active}

  def train_epoch(state, data, idx, mask, active, weights, spe, keys):
    """state: folds-leading pytree; idx/mask (S, F, B); active (S, F)."""
    step_all = jax.vmap(train_step_one,
                        in_axes=(0, None, 0, 0, 0, 0, 0, 0))

    def body(st, xs):
      i, m, a = xs
      return step_all(st, data, i, m, a, weights, spe, keys)

    return jax.lax.scan(body, state, (idx, mask, active))

  def eval_one(params, data, idx):
    """idx (nb, B) -> logits (nb, B, K) for one fold."""
    def body(i):
      frames, keyframes, _ = model_inputs(data, i)
      return model.apply({"params": params}, frames, keyframes)[0]
    return jax.lax.map(body, idx)

  def evaluate(params, data, idx):
    return jax.vmap(eval_one, in_axes=(0, None, 0))(params, data, idx)

  fold_axis = NamedSharding(mesh, P("fold"))
  rep = NamedSharding(mesh, P())
  batch_spec = NamedSharding(mesh, P(None, "fold", "data"))
  step_spec = NamedSharding(mesh, P(None, "fold"))
  jit_init = jax.jit(jax.vmap(init_one), out_shardings=fold_axis)
  jit_train = jax.jit(
      train_epoch, donate_argnums=0,
      in_shardings=(fold_axis, rep, batch_spec, batch_spec, step_spec,
                    fold_axis, fold_axis, fold_axis),
      out_shardings=(fold_axis, step_spec))
  jit_eval = jax.jit(evaluate, in_shardings=(fold_axis, rep,
                                             NamedSharding(mesh, P("fold"))),
                     out_shardings=NamedSharding(mesh, P("fold")))
  return jit_init, jit_train, jit_eval


def checkpoint_due(done: int, epochs: int, every_epochs: int,
                   every_minutes: float, since_last_s: float) -> bool:
  """Whether to write a resume checkpoint after epoch `done` (1-based).

  At a multiple of `every_epochs` once `every_minutes` have passed since the
  group's previous checkpoint (or its start); never after the last epoch,
  which is kept as the fold's model instead. The time floor keeps the cost
  of resume state (parameters and both Adam moments: about 0.5 GB per fold
  for the paper config, so 6.5 GB for a group of 13) proportional to the
  work it protects: a group that trains in minutes on a GPU writes none,
  one that takes hours on a slow machine loses at most `every_minutes` of
  work to a kill.
  """
  if done >= epochs or done % max(1, int(every_epochs)):
    return False
  return since_last_s >= 60.0 * float(every_minutes)


def make_mesh(num_folds: int, batch: int) -> Mesh:
  """('fold', 'data') mesh: folds over devices first, then the batch."""
  devices = np.asarray(jax.devices())
  n = len(devices)
  fold = math.gcd(num_folds, n)
  data = math.gcd(batch, n // fold)
  return Mesh(devices[:fold * data].reshape(fold, data), ("fold", "data"))


# ---------------------------------------------------------------------------
# Run directory: config check, per-fold checkpoints and results.
# ---------------------------------------------------------------------------
def check_workdir(config, workdir: str, write: bool = True):
  """Refuses a workdir made with a different config; then (with `write`)
  writes config.json."""
  path = os.path.join(workdir, "config.json")
  current = checkpoints.config_to_json(config)
  folds = os.path.join(workdir, "folds")
  started = os.path.isdir(folds) and bool(os.listdir(folds))
  stored, source = None, path
  if os.path.exists(path):
    stored = read_json(path, "delete it to adopt this run's config (the "
                       "folds' results record what they were trained with).")
  elif started:
    # config.json lost: a fold model records the config it was trained with.
    models = sorted(os.path.join(folds, d, "model") for d in os.listdir(folds)
                    if os.path.isdir(os.path.join(folds, d, "model")))
    if models:
      stored = checkpoints.load_meta(models[0])["config"]
      source = models[0]
      logging.warning("%s is missing; comparing with the config stored in "
                      "%s.", path, source)
  if stored is not None:
    a, b = edmdbn_config.flatten(stored), edmdbn_config.flatten(current)
    diff = sorted(k for k in set(a) | set(b)
                  if k not in RESUME_INVARIANT and a.get(k) != b.get(k))
    if diff and started:
      lines = [f"  {k}: run has {a.get(k)!r}, now {b.get(k)!r}" for k in diff]
      raise errors.ConfigError(
          f"{workdir} holds a run made with a different config; refusing to "
          "reuse it (its checkpoints and results would be mixed with this "
          f"run's). Differences from {source}:\n" + "\n".join(lines) +
          "\nUse another --workdir, or the original settings to resume.")
  if write:
    os.makedirs(workdir, exist_ok=True)
    write_json(path, current, indent=2, sort_keys=True)


def write_json(path: str, obj, **kwargs):
  """Writes JSON atomically: a run killed mid-write leaves the old file (or
  none), never a truncated one that every later run would fail to read."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, **kwargs)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str, what_to_do: str):
  """Reads a run's JSON file; CheckpointError naming it when unreadable."""
  try:
    with open(path) as f:
      return json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.CheckpointError(
        f"{path} is unreadable ({e}): {what_to_do}") from e


def fold_dir(workdir: str, fold: Fold) -> str:
  return os.path.join(workdir, "folds", fold.name)


def _ckpt_manager(workdir, fold):
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(fold_dir(workdir, fold), "train_state")),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def load_fold_result(workdir, fold) -> Optional[Dict[str, Any]]:
  path = os.path.join(fold_dir(workdir, fold), "result.json")
  if os.path.exists(path):
    return read_json(path, "delete it and run again to retrain this fold.")
  return None


# ---------------------------------------------------------------------------
# The experiment.
# ---------------------------------------------------------------------------
def validate(config):
  t = config.train
  if t.epochs < 1:
    raise errors.ConfigError(f"train.epochs={t.epochs}: must be >= 1.")
  if not 0 <= t.warmup_epochs <= t.epochs:
    raise errors.ConfigError(
        f"train.warmup_epochs={t.warmup_epochs} must lie in [0, epochs="
        f"{t.epochs}]; with fewer epochs set the warm-up too "
        "(--warmup_epochs=N or --config.train.warmup_epochs=N).")
  if t.batch_size < 1:
    raise errors.ConfigError(f"train.batch_size={t.batch_size}: must be >= 1.")
  if t.learning_rate <= 0:
    raise errors.ConfigError("train.learning_rate must be positive.")
  if t.selection not in SELECTIONS:
    raise errors.ConfigError(
        f"train.selection={t.selection!r}: use {' | '.join(SELECTIONS)}.")
  if t.eval_every_epochs < 1:
    raise errors.ConfigError("train.eval_every_epochs must be >= 1.")
  if t.get("schedule", "warmup_cosine") not in SCHEDULES:
    raise errors.ConfigError(
        f"train.schedule={t.schedule!r}: use {' | '.join(SCHEDULES)}.")
  if not 0.0 <= t.get("min_learning_rate", 0.0) < t.learning_rate:
    raise errors.ConfigError(
        "train.min_learning_rate must lie in [0, learning_rate).")
  if not 0.0 <= t.get("label_smoothing", 0.0) < 1.0:
    raise errors.ConfigError("train.label_smoothing must lie in [0, 1).")
  make_optimizer(config)  # checks weight_decay_mask
  resolve_oversample(config)
  resolve_class_weights(config)
  if config.data.temporal not in ("keyframes", "reference", "uniform"):
    raise errors.ConfigError(
        f"data.temporal={config.data.temporal!r}: use keyframes | reference "
        "| uniform.")
  from_config(config.model)  # checks dtype
  if config.model.get("init", "paper") not in init_lib.SCHEMES:
    raise errors.ConfigError(
        f"model.init={config.model.init!r}: use "
        f"{' | '.join(init_lib.SCHEMES)}.")
  if int(t.seed) < 0:
    raise errors.ConfigError(f"train.seed={t.seed}: must be >= 0.")
  if t.get("final_model", False):
    if tuple(t.get("folds", ()) or ()):
      raise errors.ConfigError(
          "train.final_model trains one model on every subject: leave out "
          f"--folds ({', '.join(t.folds)}).")
  fp = str(t.fold_parallel)
  if fp != "auto" and (not fp.isdigit() or int(fp) < 1):
    raise errors.ConfigError(
        f"train.fold_parallel={fp!r}: a positive integer or 'auto'.")


def fold_parallelism(config, n_folds: int) -> int:
  fp = str(config.train.fold_parallel)
  if fp != "auto":
    return max(1, min(int(fp), n_folds))
  # 'auto': as many folds as fit in half the device memory, estimated from
  # the parameter count (params, two Adam moments, gradients: 16 bytes each)
  # plus activations (0.6 GB per 224 px clip in the batch in float32): 3.1
  # GB per paper-config fold. XLA's memory analysis of the compiled paper
  # train step (batch 4, CPU) assigns 2.7 GB per fold in float32 (0.5 GB
  # state, 2.2 GB temporaries), so the estimate errs on the safe side. On
  # CPU the "device memory" is the host's RAM.
  from edmdbn_jax import profiling  # pylint: disable=g-import-not-at-top
  n_params = profiling.param_counts(config)["total"]
  stats = jax.devices()[0].memory_stats() or {}
  limit = stats.get("bytes_limit")
  if not limit:
    try:
      limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
      return 1
  s = int(config.data.image_size)
  act = 6e8 * int(config.train.batch_size) * (s / 224) ** 2
  if config.model.dtype == "bfloat16":
    act /= 2
  per_fold = 16 * n_params + act
  return int(max(1, min(n_folds, limit // 2 // per_fold)))


def folds_at_once(config, n_folds: int) -> int:
  """How many of `n_folds` folds train at once under `config` on this
  host's devices (`fold_parallelism`, balanced by `balanced_group_size`)."""
  return balanced_group_size(
      n_folds, fold_parallelism(config, max(1, n_folds)), len(jax.devices()))


def balanced_group_size(n_folds: int, max_group: int,
                        num_devices: int = 1) -> int:
  """Folds per group: as few groups as `max_group` allows, all one size.

  Every group is padded to this size, so the train, eval and init steps
  compile once for the whole run (26 folds at most 15 at once: 13 + 13, not
  15 + 11 with a second compile of every step; at most 8: 7 + 7 + 7 + 5
  padded to 7, not 8 + 8 + 8 + 2). The size is rounded up to a multiple of
  gcd(max_group, num_devices), so folds stay sharded over devices wherever
  `max_group` allowed it; it never exceeds `max_group` nor adds a group.
  """
  n_folds, max_group = max(1, n_folds), max(1, max_group)
  groups = -(-n_folds // max_group)
  size = -(-n_folds // groups)
  unit = math.gcd(max_group, max(1, num_devices))
  return -(-size // unit) * unit


def load_data(config):
  d = config.data
  return input_pipeline.load_clips(
      d.dataset, num_classes=int(config.model.num_classes),
      image_size=int(d.image_size), num_frames=int(d.num_frames),
      temporal=d.temporal, smic_apex=d.smic_apex,
      data_dir=d.data_dir or None, manual_dir=d.manual_dir or None,
      variant=d.get("variant", ""))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       clips=None,
                       progress_log_every_s: Optional[float] = None
                       ) -> Dict[str, Any]:
  """Runs (or resumes) LOSO for `config`, writing everything to `workdir`.

  Args:
    config: the resolved config (see edmdbn_jax/configs/edmdbn.py).
    workdir: run directory.
    clips: optional preloaded `input_pipeline.Clips` (tests, notebooks).
    progress_log_every_s: progress as a plain stderr line at most this often
      instead of a bar (experiments.benchmark in a log); with
      `train.progress` on.

  Returns:
    The results dict also written to `<workdir>/results.json` (for
    `train.final_model`, {'final_model': <model dir>}).
  """
  # 1. Config checks, before any work.
  validate(config)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  check_workdir(config, workdir, write=False)  # before loading any data
  t = config.train
  cw_mode = resolve_class_weights(config)

  # 2. Data, resident on device; folds.
  if clips is None:
    clips = load_data(config)
  k = int(config.model.num_classes)
  if len(clips.class_names) != k:
    raise errors.ConfigError(
        f"{clips.name} loaded with {len(clips.class_names)} classes but "
        f"model.num_classes={k}.")
  final_model = bool(t.get("final_model", False))
  folds = plan_folds(config, clips, list(t.get("folds", ()) or ()),
                     final_model)
  # Written once the folds are known to exist (a --folds typo leaves no
  # run directory behind).
  check_workdir(config, workdir)
  # Finished folds trained on other data are refused now, not after the
  # remaining folds have trained: scoring checks (and scores) every finished
  # fold of the workdir, also those a --folds subset leaves out.
  everyone = folds if final_model else plan_folds(config, clips)
  stored = {f.name: load_fold_result(workdir, f) for f in everyone}
  todo = [f for f in folds if stored[f.name] is None]
  if not final_model:
    done = [f for f in everyone if stored[f.name] is not None]
    check_fold_data(workdir, done, [stored[f.name] for f in done], clips)
  logging.info("%d folds, %d already finished, %d to train.", len(folds),
               len(folds) - len(todo), len(todo))

  # 3. Mesh, model, optimiser, steps.
  group_size = folds_at_once(config, len(todo))
  mesh = make_mesh(group_size, int(t.batch_size))
  if todo:
    logging.info("%d folds at once (fold_parallel=%s) in %d group(s), on %d "
                 "%s device(s).", group_size, t.fold_parallel,
                 -(-len(todo) // group_size), len(jax.devices()),
                 jax.devices()[0].platform)
  provenance.append_invocation(
      workdir, folds_to_train=[f.name for f in todo],
      folds_finished_before=len(folds) - len(todo),
      fold_parallel={"setting": str(t.fold_parallel),
                     "folds_at_once": group_size},
      data=clips.preprocessing,
      config_label=config_label(config))
  model = from_config(config.model)
  tx = make_optimizer(config)
  jit_init, jit_train, jit_eval = make_steps(model, tx, config, mesh)
  data = device_data(clips, mesh)

  bar = progress.LosoProgress(todo, int(t.epochs),
                              # (nothing to train: scoring only)
                              enabled=bool(t.get("progress", True)) and
                              bool(todo),
                              log_every_s=progress_log_every_s)

  # 4. Train groups of folds. Every group scans the run's largest number of
  # steps per epoch and evaluates its largest test subject's batches, so the
  # train and eval steps compile once per run, not once per distinct fold
  # size (a fold's steps depend on its held-out subject's clip count; a
  # paper-config compile costs far more than the few inactive steps a
  # smaller fold runs).
  batch = int(t.batch_size)
  shape = {"steps": max([f.steps_per_epoch(batch) for f in todo] + [1]),
           "eval_batches": -(-max([len(f.test_idx) for f in todo] + [1])
                             // EVAL_BATCH)}
  try:
    for g in range(0, len(todo), group_size):
      group = todo[g:g + group_size]
      _train_group(group, group_size, shape, clips, data, config, workdir,
                   model, jit_init, jit_train, jit_eval, cw_mode, bar, mesh)
  finally:
    bar.close()

  # 5. Scores and reports: every finished fold of the workdir (a `--folds`
  # subset adds to a run, it does not replace its scores), labelled partial
  # until every subject has been held out.
  if final_model:
    return {"final_model": os.path.join(workdir, "final_model")}
  finished = [f for f in plan_folds(config, clips)
              if load_fold_result(workdir, f) is not None]
  return score_run(workdir, finished, clips, config)


def _pad_group(group: List[Fold], size: int) -> List[Fold]:
  """Pads a short last group with copies of its first fold (then dropped)."""
  return group + [group[0]] * (size - len(group))


def _train_group(group, group_size, shape, clips, data, config, workdir,
                 model, jit_init, jit_train, jit_eval, cw_mode, bar, mesh):
  t = config.train
  batch = int(t.batch_size)
  k = int(config.model.num_classes)
  n_real = len(group)
  # Every group has the run's one shape (a multiple of the mesh fold axis,
  # since make_mesh takes a divisor of group_size).
  padded = _pad_group(group, group_size)
  nf = len(padded)
  root = jax.random.key(int(t.seed))
  trained_with = provenance.training_label(group_size, mesh)

  # Per-fold constants.
  spe = np.array([f.steps_per_epoch(batch) for f in padded], np.int32)
  steps = int(shape["steps"])
  weights = np.stack([class_weights(clips.labels[f.train_idx], k, cw_mode)
                      for f in padded])
  fold_keys = jax.vmap(lambda i: jax.random.fold_in(
      jax.random.fold_in(root, 1), i))(jnp.array([f.index for f in padded]))
  init_keys = jax.vmap(lambda i: jax.random.fold_in(
      jax.random.fold_in(root, 0), i))(jnp.array([f.index for f in padded]))
  ebatches = int(shape["eval_batches"])
  eidx, emask = zip(*[eval_schedule(f.test_idx, ebatches, EVAL_BATCH)
                      for f in padded])
  eidx, emask = np.stack(eidx), np.stack(emask)

  # Restore or init. Every fold restores at the latest epoch all of them
  # reached (a kill between two folds' saves leaves them one apart).
  state = jit_init(init_keys)
  managers = [_ckpt_manager(workdir, f) for f in group]
  histories = [[] for _ in group]
  start = 0
  # Folds of a group may stand at different steps (killed between their
  # saves, or trained in other groups by an earlier run with another
  # --fold_parallel or --folds), each holding its last two: the group
  # restarts from the latest step every fold still holds, else from the
  # start. A fold that already holds a later step skips re-saving it (Orbax
  # saves only steps past its latest), and training is deterministic per
  # (seed, fold, epoch, step), so what it holds is what it would have
  # written.
  fingerprints = [data_fingerprints(f, clips) for f in group]
  held = [set(m.all_steps()) for m in managers]
  common = set.intersection(*held) if held else set()
  if any(held) and not common:
    logging.warning(
        "Folds %s hold no common resume step (%s): training them from the "
        "first epoch.", [f.name for f in group],
        {f.name: sorted(h) for f, h in zip(group, held)})
  if common:
    start = max(common)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:],
                                                           a.dtype), state)
    restored = []
    for i, m in enumerate(managers):
      r = m.restore(start, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          history=ocp.args.JsonRestore()))
      try:
        check_resume_data(m.directory, group[i], r["history"],
                          fingerprints[i], clips)
      except errors.DataError:
        for mgr in managers:
          mgr.close()
        raise
      restored.append(r["state"])
      histories[i] = r["history"]["history"]
    restored += [restored[0]] * (nf - n_real)
    state = jax.tree.map(lambda *xs: jnp.stack(xs), *restored)
    state = jax.device_put(state, NamedSharding(mesh, P("fold")))
    bar.resume(group, start)
    logging.info("Resumed folds %s at epoch %d.", [f.name for f in group],
                 start)

  epochs = int(t.epochs)
  last_save = time.monotonic()
  writers = [progress.summary_writer(workdir, f.name, start + 1,
                                     held_out=bool(f.subject))
             for f in group]
  try:
    for epoch in range(start, epochs):
      sched = [epoch_schedule(f, epoch, batch, int(t.seed), steps)
               for f in padded]
      idx = np.stack([s[0] for s in sched], 1)     # (S, F, B)
      mask = np.stack([s[1] for s in sched], 1)
      active = np.stack([s[2] for s in sched], 1)  # (S, F)
      state, m = jit_train(state, data, idx, mask, active, weights, spe,
                           fold_keys)
      m = jax.device_get(m)
      done = epoch + 1
      evaluate = (done % int(t.eval_every_epochs) == 0 or done == epochs)
      if evaluate and len(group[0].test_idx):
        logits = np.asarray(jax.device_get(
            jit_eval(state["params"], data, eidx)))
      for i, f in enumerate(group):
        n = max(float(m["n"][:, i].sum()), 1.0)
        rec = {"epoch": done, "trained_with": trained_with,
               "loss": float((m["loss"][:, i] * m["n"][:, i]).sum() / n),
               "train_accuracy": float(m["correct"][:, i].sum() / n),
               "lr": float(m["lr"][int(spe[i]) - 1, i])}
        if evaluate and len(f.test_idx):
          lg = logits[i][emask[i]]
          rec["logits"] = lg.tolist()
          pred = lg.argmax(-1)
          lab = clips.labels[f.test_idx]
          sc = metrics_lib.scores_from_confusion(
              metrics_lib.confusion_matrix(lab, pred, k))
          rec.update(test_accuracy=float(sc["accuracy"]),
                     test_uf1=float(sc["uf1"]), test_uar=float(sc["uar"]))
        histories[i].append(rec)
        for key, tag in progress.TAGS.items():
          if key in rec:
            writers[i].add_scalar(tag, rec[key], done)
      # Checkpoint every fold of the group (the last epoch is kept as the
      # fold's model and result below instead).
      if not checkpoint_due(done, epochs, t.get("checkpoint_every_epochs", 1),
                            t.get("checkpoint_every_minutes", 0.0),
                            time.monotonic() - last_save):
        bar.epoch_done(group, done, histories)
        continue
      last_save = time.monotonic()
      host = jax.device_get(state)  # one transfer for every fold of the group
      for i, mgr in enumerate(managers):
        one = jax.tree.map(lambda a, i=i: a[i], host)
        # Asynchronous: the files are written while the next epochs train
        # (a manager's next save, and close(), wait for this one). A run
        # killed mid-write resumes from the previous complete step
        # (max_to_keep=2; Orbax commits a step by renaming it into place).
        mgr.save(done, args=ocp.args.Composite(
            state=ocp.args.StandardSave(one),
            # A copy: later epochs append to the list during the write.
            history=ocp.args.JsonSave({"history": list(histories[i]),
                                       **fingerprints[i]})))
      bar.epoch_done(group, done, histories)
  except BaseException:
    # Interrupted (Ctrl-C, an error): let the checkpoints already being
    # written finish, so the run resumes from the newest one.
    for mgr in managers:
      mgr.close()
    raise
  finally:
    for w in writers:
      w.close()

  # Finished: final model (last epoch) and the fold's result.
  # The group's models are written concurrently and committed before any
  # result.json says its fold is done.
  host = jax.device_get(state["params"])
  checkpoints.save_models(
      [os.path.join(workdir, "final_model") if not f.subject
       else os.path.join(fold_dir(workdir, f), "model") for f in group],
      [{"params": jax.tree.map(lambda a, i=i: a[i], host)}
       for i in range(n_real)],
      config, clips.class_names, step=epochs,
      provenances=[{"run": workdir, "fold": f.subject or "all subjects",
                    "epochs": epochs, "selection": "last epoch",
                    # What the training frames went through, for predict.
                    "preprocessing": clips.preprocessing}
                   for f in group])
  for i, (f, mgr) in enumerate(zip(group, managers)):
    result = {"subject": f.subject, "fold_index": f.index,
              "train_clips": int(len(f.train_idx)),
              # fold_parallel and devices as run (each, if the fold was
              # resumed with others): float rounding differs between them
              # and compounds over the epochs.
              "trained_with": list(dict.fromkeys(
                  h.get("trained_with", "not recorded")
                  for h in histories[i])),
              "train_fingerprint": train_fingerprint(f, clips),
              # What the stored logits are of: checked when scoring.
              "test_clips": [str(c) for c in clips.clips[f.test_idx]],
              "test_labels": [int(l) for l in clips.labels[f.test_idx]],
              "heldout_fingerprint": heldout_fingerprint(f, clips),
              "history": histories[i]}
    write_json(os.path.join(fold_dir(workdir, f), "result.json"), result)
    mgr.close()
    # A finished fold is never retrained (its result.json and model say it
    # is done), so its resume state (parameters and both Adam moments, twice:
    # about 1 GB per fold for the paper config) is deleted.
    shutil.rmtree(str(mgr.directory), ignore_errors=True)


def select_epoch(history: List[Dict[str, Any]], selection: str,
                 fold: str = "a fold", labels=None, num_classes=None,
                 epochs=None):
  """The scored record of a fold and the epoch early stopping ends it at.

  'fixed': the last evaluated epoch; 'test_best': the best on the held-out
  subject; 'released': the released code's early stopping and checkpoint
  replayed on the held-out predictions (needs the fold's `labels`, the
  `num_classes` and the run's `epochs`: patience is half of them).

  Returns:
    (record, stopped_epoch): stopped_epoch is None unless 'released' stops
    before the last epoch.
  """
  evaluated = [h for h in history if "logits" in h]
  if not evaluated:
    raise errors.CheckpointError(
        f"The result.json of {fold} holds no evaluated epoch (was it "
        "written by another version?); delete the fold's result.json to "
        "retrain it.")
  if selection == "fixed":
    return evaluated[-1], None
  if selection == "released":
    scores = [metrics_lib.fold_scores(metrics_lib.confusion_matrix(
        labels, np.asarray(h["logits"]).argmax(-1), num_classes),
                                      "union")["uf1"] for h in evaluated]
    i, stopped = metrics_lib.early_stopping_selection(
        scores, [int(h["epoch"]) for h in evaluated], patience=epochs * 0.5)
    return evaluated[i], stopped
  # test_best: highest held-out UF1, then accuracy; the earliest on ties.
  return max(evaluated, key=lambda h: (h["test_uf1"], h["test_accuracy"],
                                       -h["epoch"])), None


def fold_results(histories, folds, clips, selection, epochs=None):
  """FoldResults of `selection` from each fold's per-epoch history."""
  out = []
  for f, history in zip(folds, histories):
    labels = clips.labels[f.test_idx]
    rec, stopped = select_epoch(history, selection, f"fold {f.subject}",
                                labels=labels,
                                num_classes=len(clips.class_names),
                                epochs=epochs)
    logits = np.asarray(rec["logits"], np.float32)
    out.append(metrics_lib.FoldResult(
        subject=f.subject, labels=labels,
        preds=logits.argmax(-1), clips=list(clips.clips[f.test_idx]),
        datasets=list(clips.datasets[f.test_idx]), logits=logits,
        epoch=int(rec["epoch"]), stopped_epoch=stopped))
  return out


def _clip_digests(clips) -> List[str]:
  """Per clip: a digest of its name, label and stored frames (computed once
  per Clips object)."""
  hit = _DIGESTS.get(id(clips))
  if hit is not None and hit[0]() is clips:
    return hit[1]
  digests = []
  for i in range(len(clips)):
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{clips.subjects[i]}/{clips.clips[i]}:{clips.labels[i]};"
             .encode())
    h.update(np.ascontiguousarray(clips.frames[i]).tobytes())
    digests.append(h.hexdigest())
  _DIGESTS.clear()  # one dataset at a time; a weak reference, no copy kept
  _DIGESTS[id(clips)] = (weakref.ref(clips), digests)
  return digests


_DIGESTS = {}


def _fingerprint(clip_digests) -> str:
  h = hashlib.sha256()
  for d in clip_digests:
    h.update(d.encode())
  return h.hexdigest()


def train_fingerprint(fold, clips) -> str:
  """A digest of the fold's training clips, labels and frames (order-free)."""
  digests = _clip_digests(clips)
  return _fingerprint(sorted(digests[i] for i in fold.train_idx.tolist()))


def heldout_fingerprint(fold, clips) -> str:
  """A digest of the fold's held-out clips, labels and frames, in order (the
  order of the stored logits)."""
  digests = _clip_digests(clips)
  return _fingerprint(digests[i] for i in fold.test_idx.tolist())


def data_fingerprints(fold, clips) -> Dict[str, str]:
  """What a fold's resume state records of the data it was trained on."""
  return {"train_fingerprint": train_fingerprint(fold, clips),
          "heldout_fingerprint": heldout_fingerprint(fold, clips)}


def check_resume_data(directory, fold, saved, now, clips):
  """Refuses to resume a fold from state saved while training (or
  evaluating) on other clips or frames than `clips` gives it now: its
  earlier epochs would be of the old data and its result.json of the new.
  State saved before 2026-12-02 records no fingerprints: resumed, with a
  warning."""
  if "train_fingerprint" not in saved:
    logging.warning(
        "The resume state in %s was saved before resume states recorded "
        "their data (2026-12-02): that its epochs trained on the data %s "
        "gives now cannot be checked. Delete %s to retrain the fold if the "
        "dataset was rebuilt since.", directory, clips.name,
        os.path.dirname(str(directory)))
  changed = [what for key, what in (("train_fingerprint", "training"),
                                    ("heldout_fingerprint", "held-out"))
             if saved.get(key) not in (None, now[key])]
  if changed:
    raise errors.DataError(
        f"The resume state in {directory} was saved while fold "
        f"{fold.subject} trained on other {' and '.join(changed)} clips (or "
        f"frames) than {clips.name} gives it now: the dataset was rebuilt "
        "or another build was loaded. Resuming would mix the two. Delete "
        f"{os.path.dirname(str(directory))} to train the fold again on this "
        "data, use a fresh --workdir, or load the build the run was made "
        "with (--data_dir).")


def check_fold_training(workdir, fold, stored, clips):
  """Refuses to score a fold trained on other training clips (or frames)
  than `clips` gives it now."""
  if stored.get("train_fingerprint") not in (None,
                                             train_fingerprint(fold, clips)):
    raise errors.DataError(
        f"{os.path.join(fold_dir(workdir, fold), 'result.json')} was trained "
        f"on other training clips (or frames) than {clips.name} gives fold "
        f"{fold.subject} now ({stored.get('train_clips')} clips then, "
        f"{len(fold.train_idx)} now). The dataset was rebuilt or another "
        "build was loaded: score it with a fresh --workdir, or load the "
        "build the run was made with (--data_dir).")


def check_fold_clips(workdir, fold, stored, clips):
  """Refuses to score a fold whose stored logits are of other clips/labels."""
  if "test_clips" not in stored:
    return  # written before the clip list was stored
  now_clips = [str(c) for c in clips.clips[fold.test_idx]]
  now_labels = [int(l) for l in clips.labels[fold.test_idx]]
  if stored["test_clips"] == now_clips and stored["test_labels"] == now_labels:
    if stored.get("heldout_fingerprint") not in (
        None, heldout_fingerprint(fold, clips)):
      raise errors.DataError(
          f"{os.path.join(fold_dir(workdir, fold), 'result.json')} was "
          f"evaluated on other frames of subject {fold.subject}'s clips than "
          f"{clips.name} holds now (same clip names and labels). The dataset "
          "was rebuilt or another build was loaded: score it with a fresh "
          "--workdir, or load the build the run was made with (--data_dir).")
    return
  was = dict(zip(stored["test_clips"], stored["test_labels"]))
  now = dict(zip(now_clips, now_labels))
  names = clips.class_names
  diff = ([f"{c}: gone" for c in was if c not in now] +
          [f"{c}: new" for c in now if c not in was] +
          [f"{c}: label {names[was[c]]} -> {names[now[c]]}"
           for c in now if c in was and was[c] != now[c]])
  raise errors.DataError(
      f"{os.path.join(fold_dir(workdir, fold), 'result.json')} was trained "
      f"and evaluated on other clips of subject {fold.subject} than "
      f"{clips.name} holds now ({'; '.join(diff[:10])}"
      f"{'; ...' if len(diff) > 10 else ''}). The dataset was rebuilt or "
      "another build was loaded: score it with a fresh --workdir, or load "
      "the build the run was made with (--data_dir).")


def check_fold_data(workdir, folds, stored, clips):
  """Refuses finished folds (their result.json `stored`) trained or
  evaluated on other data than `clips`. Held-out clips first: their errors
  name the clip that changed."""
  for f, st in zip(folds, stored):
    check_fold_clips(workdir, f, st, clips)
  for f, st in zip(folds, stored):
    check_fold_training(workdir, f, st, clips)


# What the results note states already, or that does not change results.
_NOTE_STATES = ("data.dataset", "model.num_classes", "data.image_size",
                "data.variant", "data.temporal", "train.seed", "train.epochs")


def config_label(config) -> str:
  """'tiny' or 'tiny (model.depths=(1, 1, 1), model.dtype=bfloat16)': the
  config variant and every setting changed from it that the results note
  does not state already (dtype, depths, learning rate, ...)."""
  changed = edmdbn_config.differences(
      config, skip=set(_NOTE_STATES) | set(RESUME_INVARIANT))
  text = str(config.get("variant", "?"))
  if changed:
    text += " (" + ", ".join(f"{k}={v}" for k, v in changed) + ")"
  return text


def grouping_label(stored) -> str:
  """How the folds were trained (fold grouping, devices), from their
  result.json's `trained_with`; a note when no fold records it (trained
  before it was recorded)."""
  labels = list(dict.fromkeys(
      w for st in stored for w in st.get("trained_with", [])))
  missing = sum("trained_with" not in st for st in stored)
  if not labels:
    return ("fold grouping and device not recorded (trained by an "
            "earlier version; they change the float rounding)"
            if stored else "")
  return ("trained " + " / ".join(labels) +
          (f" ({missing} folds not recorded)" if missing else ""))


def score_run(workdir, folds, clips, config) -> Dict[str, Any]:
  """Scores `folds` under every selection; writes the headline's reports."""
  k = int(config.model.num_classes)
  selection = config.train.selection
  stored = [load_fold_result(workdir, f) for f in folds]
  check_fold_data(workdir, folds, stored, clips)
  histories = [st["history"] for st in stored]
  total = len(clips.subject_list())
  label = config_label(config)
  # Float rounding differs between groupings and devices and compounds over
  # training: a run is reproduced with the same ones.
  grouping = grouping_label(stored)
  results, frs = {}, {}
  for sel in SELECTIONS:
    frs[sel] = fold_results(histories, folds, clips, sel,
                            epochs=int(config.train.epochs))
    d = config.data
    note = (f"{len(folds)} LOSO folds, {config.train.epochs} epochs, "
            f"dataset {clips.name} ({len(clips)} clips, {k} classes: "
            f"{', '.join(clips.class_names)}; {d.image_size} px"
            f"{', variant ' + d.variant if d.get('variant') else ''}; "
            f"temporal {d.temporal}), config {label}, "
            f"seed {config.train.seed}")
    if grouping:
      note += f"; {grouping}"
    if sel == "released":
      every = int(config.train.eval_every_epochs)
      note += (f"; early stopping replayed with patience "
               f"{0.5 * int(config.train.epochs):g} epochs" +
               (f" on the epochs evaluated (every {every}; the released "
                "code validates every epoch)" if every != 1 else ""))
    if len(folds) < total:
      note = (f"PARTIAL: {len(folds)} of {total} subjects held out so far "
              f"({', '.join(f.subject for f in folds)}); not a LOSO score of "
              f"{clips.name}. " + note)
    results[sel] = metrics_lib.summarize(
        frs[sel], k, list(clips.class_names), selection=sel,
        protocol_note=note)
    results[sel]["protocol"]["subjects_total"] = total
    results[sel]["protocol"]["complete"] = len(folds) == total
  headline = results[selection]
  # The other protocols ride along, labelled, for comparison.
  headline["other_selections"] = {
      other: {"selection": other,
              "aggregated": results[other]["aggregated"],
              "per_fold_mean": results[other]["per_fold_mean"],
              "per_fold": results[other]["per_fold"],
              "protocol": results[other]["protocol"]}
      for other in SELECTIONS if other != selection}
  run = f"{clips.name}, config {label}, seed {config.train.seed}"
  report_lib.write_all(headline, frs[selection], workdir,
                       list(clips.class_names), run=run)
  p = headline["protocol"]
  report_lib.write_curves(
      histories, frs, k, workdir,
      loso="complete" if p["complete"] else "partial",
      title=(f"{report_lib.partial_label(p)}LOSO, {len(folds)} folds, "
             f"{run}"))
  return headline
