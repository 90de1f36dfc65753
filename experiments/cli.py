"""What the entry points in `experiments/` share (no flags defined on import)."""

import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from edmdbn_jax import errors
from edmdbn_jax.configs import edmdbn as edmdbn_config
from edmdbn_jax.models import from_config


def quiet_orbax_logs():
  """WARNING level unless --verbosity/-v was given: Orbax logs every
  checkpoint read and write at INFO, which buries the command's output."""
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    logging.set_verbosity(logging.WARNING)


def define_model_flags(default_variant: str):
  """--config (the model config file and variant) and --dtype."""
  config_flags.DEFINE_config_file(
      "config", f"{edmdbn_config.__file__}:{default_variant}", "Model config.",
      lock_config=False)
  flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                    "Compute dtype (default: the config's).")


def check_model_config_or_exit(model_config, dtype=None):
  """Builds the model once so a bad config (model.fusion=sum, ...) is one
  line on stderr and exit status 2, not a traceback."""
  try:
    from_config(model_config, dtype=dtype)
  except errors.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
