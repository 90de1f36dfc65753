r"""Parameter count per branch, multiply-adds per clip and forward latency.

  python -m experiments.summary --config=edmdbn_jax/configs/edmdbn.py:paper

For the paper configuration with 5 classes the count is 44,265,895: the
released model's 44,308,903 minus the 43,008 entire-branch patch-conv taps
that only ever see zero padding. The paper's Table 4 reports 50.8 M because
the released model also builds a 6,508,550-parameter ViT it never calls.
"""

from absl import app
from absl import flags
import jax

from edmdbn_jax import profiling
from experiments import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags; called only when run as a script (see
  experiments.gradcam.define_flags)."""
  cli.define_model_flags("paper")
  # Listed by --help (flags defined in cli.py show only under --helpfull).
  flags.declare_key_flag("config")
  flags.declare_key_flag("dtype")
  flags.DEFINE_integer("batch", 1, "Batch size for cost and latency.")
  flags.DEFINE_integer("repeats", 10, "Timed forward passes.")


def main(argv):
  del argv
  config = FLAGS.config
  dtype = FLAGS.dtype or config.model.dtype
  cli.check_model_config_or_exit(config.model, dtype)
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
        f"convolutions): {cost['matmul_macs_per_clip'] / 1e9:.3g} G")
  if cost["flops"] is not None:
    print(f"Forward FLOPs per clip (XLA cost analysis, 2 per multiply-add, "
          f"elementwise work included): "
          f"{cost['flops'] / FLAGS.batch / 1e9:.3g} G")
  else:
    print("Forward FLOPs per clip (XLA cost analysis): not given by the "
          f"{jax.default_backend()} backend without compiling")
  lat = profiling.forward_latency(config, FLAGS.batch, dtype,
                                  repeats=FLAGS.repeats)
  print(f"Forward latency at batch {FLAGS.batch} on "
        f"{profiling.device_description()}: "
        f"{lat['median_s'] * 1e3:.1f} ms median of {lat['repeats']} "
        f"({lat['per_clip_s'] * 1e3:.1f} ms per clip)")


if __name__ == "__main__":
  define_flags()
  app.run(main)
