r"""Parameter count per branch, multiply-adds per clip and forward latency.

  python -m experiments.summary --config=edmdbn_jax/configs/edmdbn.py:paper

For the paper configuration with 5 classes the count is 44,265,895: the
released model's 44,308,903 minus the 43,008 entire-branch patch-conv taps
that only ever see zero padding. The paper's Table 4 reports 50.8 M because
the released model also builds a 6,508,550-parameter ViT it never calls.
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from edmdbn_jax.configs import edmdbn as edmdbn_config

from edmdbn_jax import errors
from edmdbn_jax import profiling
from edmdbn_jax.models import from_config

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags; called only when run as a script (see
  experiments.gradcam.define_flags)."""
  config_flags.DEFINE_config_file(
      "config", f"{edmdbn_config.__file__}:paper", "Model config.",
      lock_config=False)
  flags.DEFINE_integer("batch", 1, "Batch size for cost and latency.")
  flags.DEFINE_integer("repeats", 10, "Timed forward passes.")
  flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"],
                    "Compute dtype (default: the config's).")


def main(argv):
  del argv
  config = FLAGS.config
  dtype = FLAGS.dtype or config.model.dtype
  try:
    from_config(config.model, dtype=dtype)  # a bad config, said plainly
  except errors.ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  counts = profiling.param_counts(config)
  print(f"EDMDBN {config.get('variant', '?')}: {config.data.image_size} px, "
        f"T={config.data.num_frames}, {config.model.num_classes} classes, "
        f"branches={config.model.branches}, fusion={config.model.fusion}, "
        f"motion={config.model.motion}, "
        f"accumulated_attention={config.model.accumulated_attention}, "
        f"compute dtype {dtype}")
  print("Parameters:")
  for name, n in counts.items():
    print(f"  {name:>14s}: {n:>12,d}")
  cost = profiling.forward_cost(config, FLAGS.batch, dtype)
  print(f"Forward multiply-adds per clip (matrix products and "
        f"convolutions): {cost['matmul_macs_per_clip'] / 1e9:.2f} G")
  print(f"Forward FLOPs per clip (XLA cost analysis, 2 per multiply-add, "
        f"elementwise work included): "
        f"{cost['flops'] / FLAGS.batch / 1e9:.2f} G")
  lat = profiling.forward_latency(config, FLAGS.batch, dtype,
                                  repeats=FLAGS.repeats)
  print(f"Forward latency at batch {FLAGS.batch} on "
        f"{profiling.device_description()}: "
        f"{lat['median_s'] * 1e3:.1f} ms median of {lat['repeats']} "
        f"({lat['per_clip_s'] * 1e3:.1f} ms per clip)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
