r"""Converts the authors' released PyTorch weights into a toolkit model directory.

  python -m experiments.import_torch --checkpoint=edmdbn_casme2.pt \
      --workdir=runs/imported --config=edmdbn_jax/configs/edmdbn.py:paper

Reads a `.pt` / `.pth` (a state dict, or a dict holding one under
'state_dict' / 'model') or a Lightning `.ckpt` (keys prefixed 'model.').
Needs PyTorch (`pip install -e .[torch]`); torch is used only to unpickle.
The released model uses the 3D (8, 4, 4) patch conv in the entire branch; by
default the conversion keeps only its first temporal tap (the same function,
see edmdbn_jax/interop/torch_reference.py); pass
`--config=...:paper,entire_patch_embed=3d` to keep the full conv.
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from edmdbn_jax.configs import edmdbn as edmdbn_config

from edmdbn_jax import checkpoints
from edmdbn_jax import errors
from edmdbn_jax.interop import torch_reference
from experiments import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the flags; only when run as a script (see experiments.gradcam)."""
  config_flags.DEFINE_config_file(
      "config", f"{edmdbn_config.__file__}:paper", "Model config.",
      lock_config=False)
  flags.DEFINE_string("checkpoint", None, "PyTorch .pt/.ckpt file.")
  flags.DEFINE_string("workdir", None, "Output model directory.")
  flags.DEFINE_bool(
      "overwrite", False, "Replace the model already in --workdir (never a "
      "LOSO run directory or one of its fold models).")
  flags.DEFINE_list(
      "class_names", None, "Class names in the checkpoint's label order "
      "(default: the toolkit's class set of --config's data.dataset at "
      "model.num_classes classes, in the toolkit's label order).")


def read_torch_state_dict(path: str):
  if not os.path.isfile(path):
    raise errors.CheckpointError(
        f"{path} does not exist; pass the released .pt/.pth/.ckpt file as "
        "--checkpoint.")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.ConfigError(
        "Reading a PyTorch checkpoint needs torch: pip install -e '.[torch]'"
    ) from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=False)
  except Exception as e:  # pylint: disable=broad-except
    raise errors.CheckpointError(
        f"{path} could not be read by torch.load ({type(e).__name__}: {e}); "
        "is it a PyTorch checkpoint?") from e
  for key in ("state_dict", "model", "model_state_dict"):
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
      obj = obj[key]
      break
  if not isinstance(obj, dict):
    raise errors.CheckpointError(
        f"{path} holds a {type(obj).__name__}, not a state dict.")
  return {k: v.detach().cpu().numpy() for k, v in obj.items()
          if hasattr(v, "detach")}


def default_class_names(config):
  """The toolkit's class names for config.data.dataset at num_classes (the
  label order its builder gives that class set)."""
  from edmdbn_jax import datasets  # pylint: disable=g-import-not-at-top
  k = int(config.model.num_classes)
  dataset = config.data.dataset
  configs = datasets.builder_class(dataset).BUILDER_CONFIGS
  found = {int(c.num_classes): tuple(c.class_names) for c in configs}
  if k not in found:
    raise errors.ConfigError(
        f"No {k}-class set is defined for dataset {dataset!r} (have "
        f"{sorted(found) or 'none'}); pass --class_names in the checkpoint's "
        "label order.")
  return list(found[k])


def check_output(workdir: str, overwrite: bool):
  """Refuses to replace a trained model by accident.

  A LOSO run directory, or a fold model inside one (its result.json and
  scores describe the trained model), is never replaced; another model
  directory only with --overwrite.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))

  def is_run(d):
    return os.path.exists(os.path.join(d, "config.json")) and any(
        os.path.exists(os.path.join(d, n))
        for n in ("folds", "results.json", "final_model"))

  # The run itself, its folds/, a fold folder, or a model in one of them.
  up, d = [], workdir
  for _ in range(4):
    up.append(d)
    d = os.path.dirname(d)
  run = next((d for d in up if is_run(d)), None)
  if run is not None or os.path.exists(os.path.join(workdir, "result.json")):
    raise errors.CheckpointError(
        f"{workdir} is inside the LOSO run {run or os.path.dirname(workdir)}, "
        "whose results describe its trained models; pass a new --workdir for "
        "the imported model.")
  if not os.path.isdir(workdir) or not os.listdir(workdir):
    return
  if not overwrite:
    held = ", ".join(sorted(os.listdir(workdir))[:5])
    raise errors.CheckpointError(
        f"{workdir} already holds files ({held}); pass --overwrite to "
        "replace the model there, or another --workdir.")


def main(argv):
  del argv
  cli.quiet_orbax_logs()
  config = FLAGS.config
  if not FLAGS.checkpoint or not FLAGS.workdir:
    raise app.UsageError("--checkpoint and --workdir are required.")
  k = int(config.model.num_classes)
  names = FLAGS.class_names
  if names is not None and len(names) != k:
    raise app.UsageError(f"--class_names has {len(names)} names for {k} "
                         "classes.")
  try:
    check_output(FLAGS.workdir, FLAGS.overwrite)
    if names is None:
      names = default_class_names(config)
      print(f"Class names (label order assumed to be the toolkit's "
            f"{config.data.dataset} {k}-class set; pass --class_names if the "
            f"checkpoint used another): {', '.join(names)}")
    sd = read_torch_state_dict(FLAGS.checkpoint)
    variables = torch_reference.convert_state_dict(sd, config)
    out = checkpoints.save_model(
        FLAGS.workdir, variables, config, names,
        provenance={"source": "torch", "checkpoint": FLAGS.checkpoint})
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"Wrote {out} ({len(sd)} tensors converted).")


if __name__ == "__main__":
  define_flags()
  app.run(main)
