r"""Leave-one-subject-out training and scoring of EDMDBN.

  python -m experiments.loso --dataset=synthetic          # built-in data
  python -m experiments.loso --dataset=casme2 --manual_dir=~/data/me
  python -m experiments.loso --dataset=samm --manual_dir=~/data/me \
      --noaccumulated_attention
  python -m experiments.loso --dataset=casme2 --manual_dir=~/data/me \
      --epochs=30 --warmup_epochs=3
  python -m experiments.loso --dataset=samm --manual_dir=~/data/me \
      --config.data.variant=resized     # frames only resized, not aligned

The config defaults to the `tiny` variant on the synthetic dataset and to
`paper` elsewhere (`--config=edmdbn_jax/configs/edmdbn.py:VARIANT` picks
another). The shortcut flags below override config fields; they have no
defaults of their own, and setting a field both ways to different values is an
error. `--config.data.variant` picks the dataset build's frame source: ''
(official crops where the dataset ships them, else face-aligned), 'aligned'
or 'resized'. Running the same command again resumes; the run directory
defaults to `runs/<dataset>_<K>class_<variant>[_<ablation>][_bf16]
[_seed<N>][_<other settings or a digest of them>][_final]`: every setting
that differs from the config variant's own defaults is named.
"""

import hashlib
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from edmdbn_jax import errors
from edmdbn_jax import train
from edmdbn_jax.configs import edmdbn as edmdbn_config
from edmdbn_jax.datasets import BUILDERS
from experiments import cli

DEFAULT_CLASSES = {"synthetic": 5, "casme2": 5, "samm": 5, "mmew": 5,
                   "smic_hs": 3, "megc2019_composite": 3}


def _say_and_exit(e: Exception):
  """A bad --config said in one line (run as a script only)."""
  inner = e
  while inner.args and isinstance(inner.args[0], BaseException):
    inner = inner.args[0]  # AttributeError(KeyError(...)) and the like
  text = (inner.args[0] if inner.args and isinstance(inner.args[0], str)
          else str(inner))
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  # ml_collections embeds the config module's traceback: its last line.
  msg = lines[-1] if "Traceback" in text else " ".join(lines)
  print(f"error: bad flag or --config: {msg or repr(e)}\nSee --help.",
        file=sys.stderr)
  sys.exit(2)


CONFIG_FILE = edmdbn_config.__file__
try:
  # ml_collections reads the --config.<path> overrides in sys.argv here, at
  # definition: a misspelt path fails now, not during flag parsing.
  _CONFIG = config_flags.DEFINE_config_file(
      "config", f"{CONFIG_FILE}:auto", "Config file and variant, e.g. "
      "edmdbn_jax/configs/edmdbn.py:paper (default 'auto': tiny on synthetic "
      "data, paper otherwise). Fields can be set with --config.<path>=value.",
      lock_config=False)
except (AttributeError, KeyError, ValueError) as e:
  if __name__ != "__main__":
    raise
  _say_and_exit(e)
_DATASET = flags.DEFINE_enum("dataset", "synthetic", sorted(BUILDERS),
                             "Dataset to run LOSO on.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.")

# Shortcuts for config fields: (flag, config path).
SHORTCUTS = {
    "num_classes": "model.num_classes",
    "accumulated_attention": "model.accumulated_attention",
    "branches": "model.branches",
    "fusion": "model.fusion",
    "motion": "model.motion",
    "dtype": "model.dtype",
    "temporal": "data.temporal",
    "data_dir": "data.data_dir",
    "manual_dir": "data.manual_dir",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "learning_rate": "train.learning_rate",
    "warmup_epochs": "train.warmup_epochs",
    "class_weights": "train.class_weights",
    "seed": "train.seed",
    "selection": "train.selection",
    "fold_parallel": "train.fold_parallel",
    "folds": "train.folds",
    "final_model": "train.final_model",
}
flags.DEFINE_integer("num_classes", None, "Class set (3, 4 or 5).")
flags.DEFINE_bool("accumulated_attention", None,
                  "Token Attention with accumulation (--noaccumulated_attention"
                  " for the ablation).")
flags.DEFINE_enum("branches", None, ["both", "entire", "detail"],
                  "Which motion branches.")
flags.DEFINE_enum("fusion", None, ["add", "concat"], "Branch fusion.")
flags.DEFINE_enum("motion", None, ["pixel", "feature"],
                  "Pixel differences or Table 7 feature subtraction.")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "Compute dtype.")
flags.DEFINE_enum("temporal", None, ["keyframes", "reference", "uniform"],
                  "Temporal normalisation.")
flags.DEFINE_string("data_dir", None, "tfds data dir (default: $TFDS_DATA_DIR, "
                    "else ~/tensorflow_datasets).")
flags.DEFINE_string("manual_dir", None, "Where the licensed raw data lies.")
flags.DEFINE_integer("epochs", None, "Training epochs per fold.")
flags.DEFINE_integer("batch_size", None, "Batch size.")
flags.DEFINE_float("learning_rate", None, "Peak learning rate.")
flags.DEFINE_integer("warmup_epochs", None, "Linear warm-up epochs.")
flags.DEFINE_enum("class_weights", None, ["none", "balanced", "auto"],
                  "Loss class weights (auto: balanced on SAMM).")
flags.DEFINE_integer("seed", None, "Random seed.")
flags.DEFINE_enum("selection", None, ["fixed", "test_best", "released"],
                  "The headline's model selection (all three are always "
                  "computed and reported). fixed: score the last epoch. "
                  "test_best: per fold, the epoch best on the held-out "
                  "subject. released: the authors' code's checkpoint and "
                  "early stopping on the held-out subject, replayed. The "
                  "last two are optimistic and labelled so.")
flags.DEFINE_string("fold_parallel", None,
                    "Folds trained at once (an integer or 'auto').")
flags.DEFINE_list("folds", None, "Held-out subjects to run (default: all).")
flags.DEFINE_bool("final_model", None,
                  "Train on all subjects and save the model for inference.")


def _get(config, path):
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def _set(config, path, value):
  *head, last = path.split(".")
  node = config
  for part in head:
    node = node[part]
  if isinstance(node[last], tuple):
    value = tuple(value)
  node[last] = value


def _explicit(argv_flags, path: str) -> bool:
  """Whether --config.<path> was given on the command line."""
  name = f"config.{path}"
  return name in argv_flags and argv_flags[name].present


def _overrides(argv_flags, config):
  """{path: value} of every --config.<path> given on the command line."""
  out = {}
  for name in argv_flags:
    if name.startswith("config.") and argv_flags[name].present:
      path = name[len("config."):]
      out[path] = _get(config, path)
  return out


def resolve_config(argv_flags=flags.FLAGS):
  """The config from --config, --config.* overrides and the shortcut flags.

  A setting given twice (a shortcut flag and its --config.* path) must agree,
  even where both equal the default. Raises ConfigError for contradictory or
  impossible settings.
  """
  config = _CONFIG.value
  dataset = argv_flags.dataset
  if _explicit(argv_flags, "data.dataset"):
    if (argv_flags["dataset"].present
        and config.data.dataset != argv_flags.dataset):
      raise errors.ConfigError(
          f"--dataset={argv_flags.dataset} contradicts --config.data.dataset="
          f"{config.data.dataset}.")
    dataset = config.data.dataset
  if config.get("variant") == "auto":
    # The variant that fits the dataset, with the overrides of the --config
    # string ('auto,epochs=60': applied as written, also where they equal
    # the auto defaults) and every --config.* override applied to it.
    variant = "tiny" if dataset == "synthetic" else "paper"
    spec = getattr(argv_flags["config"], "config_filename", "") or ""
    in_string = ([p for p in spec.rsplit(":", 1)[1].split(",") if "=" in p]
                 if ":" in spec else [])
    overrides = _overrides(argv_flags, config)
    config = edmdbn_config.get_config(",".join([variant] + in_string))
    for path, value in overrides.items():
      _set(config, path, value)
  if dataset not in BUILDERS:
    raise errors.ConfigError(
        f"Unknown dataset {dataset!r}; choose one of {sorted(BUILDERS)}.")
  config.data.dataset = dataset
  baseline = edmdbn_config.get_config(config.get("variant", "paper"))

  def given(path):  # by --config.<path>, or in the --config string
    return _explicit(argv_flags, path) or (
        _get(config, path) != _get(baseline, path))

  if (argv_flags["num_classes"].value is None
      and not given("model.num_classes")):
    config.model.num_classes = DEFAULT_CLASSES[dataset]
  for flag, path in SHORTCUTS.items():
    value = argv_flags[flag].value
    if value is None:
      continue
    current = _get(config, path)
    if isinstance(current, tuple):
      value = tuple(value)
    if path != "data.dataset" and given(path) and current != value:
      raise errors.ConfigError(
          f"--{flag}={value!r} contradicts --config.{path}={current!r}; set "
          "it once.")
    _set(config, path, value)
  return config


# Settings the default run directory names one by one (or that do not
# change what a run computes: train.RESUME_INVARIANT, data paths).
_NAMED = {"variant", "data.dataset", "model.num_classes",
          "model.accumulated_attention", "model.branches", "model.fusion",
          "model.motion", "data.temporal", "model.dtype", "train.seed",
          "train.final_model", "data.data_dir", "data.manual_dir"}


def other_settings(config) -> list:
  """(path, value) of every setting that differs from the config variant's
  defaults and that the run directory name does not already say."""
  return edmdbn_config.differences(
      config, skip=_NAMED | set(train.RESUME_INVARIANT))


def default_workdir(config) -> str:
  """runs/<dataset>_<K>class_<variant>[_<ablation>...][_bf16][_seed<N>]
  [_<other settings>][_final]: two runs that compute different things
  never share a default directory (a directory refuses another config)."""
  m = config.model
  parts = [config.data.dataset, f"{m.num_classes}class", config.variant]
  # Ablations and dtype as changed from the variant's own defaults (the
  # released variant's temporal 'reference' is its recipe, not an ablation).
  base = edmdbn_config.get_config(config.variant)
  if m.accumulated_attention != base.model.accumulated_attention:
    parts.append("aa" if m.accumulated_attention else "noaa")
  if m.branches != base.model.branches:
    parts.append(m.branches)
  if m.fusion != base.model.fusion:
    parts.append(m.fusion)
  if m.motion != base.model.motion:
    parts.append("featuresub" if m.motion == "feature" else m.motion)
  if config.data.temporal != base.data.temporal:
    parts.append(config.data.temporal)
  if m.dtype != base.model.dtype:
    parts.append("bf16" if m.dtype == "bfloat16" else m.dtype)
  if int(config.train.seed) != 0:
    parts.append(f"seed{config.train.seed}")
  other = other_settings(config)
  if other:
    # Readable when short ('epochs30'), else a digest of the settings.
    text = "_".join(re.sub(r"[^A-Za-z0-9.]+", "-", f"{k.split('.')[-1]}{v}")
                    .strip("-") for k, v in other)
    parts.append(text if len(text) <= 32 else "cfg" + hashlib.sha1(
        repr(other).encode()).hexdigest()[:8])
  if config.train.final_model:
    parts.append("final")
  return os.path.join("runs", "_".join(str(p) for p in parts))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_orbax_logs()
  try:
    config = resolve_config()
    workdir = _WORKDIR.value or default_workdir(config)
    logging.info("Config:\n%s", config)
    what = ("Final model (trained on all subjects)"
            if config.train.final_model else "LOSO")
    # The config as the results will name it: the variant and every
    # setting changed from it (dtype and ablations included).
    print(f"{what} on {config.data.dataset} ({config.model.num_classes} "
          f"classes, config {train.config_label(config)}; "
          f"{config.train.epochs} epochs, seed {config.train.seed}), run "
          f"directory {workdir}", flush=True)
    if config.train.final_model and config.train.selection != "fixed":
      print(f"Note: the final model keeps the last epoch (no subject is held "
            f"out to select on); --selection={config.train.selection} "
            "applies to LOSO scoring only.", flush=True)
    results = train.train_and_evaluate(config, workdir)
  except (errors.EdmdbnError, OSError) as e:  # OSError: --workdir a file
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if "final_model" in results:
    print(f"Final model written to {results['final_model']}")
    return
  md = os.path.join(workdir, "results.md")
  with open(md) as f:
    print(f.read())
  print(f"Everything is in {workdir} (results.json, results.md, "
        "predictions.csv, confusion.png, curves.png, tensorboard/). To set "
        f"it beside other runs: python -m experiments.compare {workdir} "
        "OTHER_RUN ...")


def _parse_flags(argv):
  """absl's flag parsing, with a bad --config (an unknown variant, a
  misspelt --config.<path>) said in one line instead of a traceback."""
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    _say_and_exit(e)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
