r"""Compares scored LOSO runs (ablations, seeds, recipes) on the same clips.

  python -m experiments.compare runs/casme2_5class_paper \
      runs/casme2_5class_paper_noaa [--output=runs/compare_noaa]

The first run is the reference. Prints, for each selection protocol, every
run's pooled UF1 / UAR / accuracy with a subject-bootstrap interval, the
config keys it differs in, its UF1 difference from the reference with a
paired interval, and on how many subjects it does better, equally or worse.
With --group_seeds, runs that differ only in their seed share a row (means
over the seeds, each seed's UF1 listed). With --output also writes
compare.md, compare.json and compare.png there.
Runs that held out other subjects, clips or labels are refused.
"""

import sys

from absl import app
from absl import flags

from edmdbn_jax import errors
from edmdbn_jax.evaluators import compare

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags; called only when run as a script (see
  experiments.gradcam.define_flags)."""
  flags.DEFINE_list("runs", [], "Run directories (or give them as "
                    "arguments); the first is the reference.")
  flags.DEFINE_string("output", None, "Also write compare.md, "
                      "compare.json and compare.png here.")
  flags.DEFINE_integer("bootstrap", 2000,
                       "Bootstrap resamples of the subjects.")
  flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
  flags.DEFINE_float("level", 0.95, "Interval coverage.")
  flags.DEFINE_bool(
      "group_seeds", False, "One row per set of runs that differ only in "
      "their seed (means over seeds; the first run's set is the reference).")


def main(argv):
  paths = list(FLAGS.runs) + list(argv[1:])
  if not paths:
    raise app.UsageError("Give one or more run directories.")
  if FLAGS.bootstrap < 100 or not 0 < FLAGS.level < 1:
    raise app.UsageError("--bootstrap must be >= 100 and --level in (0, 1).")
  try:
    runs = [compare.load_run(p) for p in paths]
    result = compare.compare(runs, bootstrap=FLAGS.bootstrap,
                             seed=FLAGS.seed, level=FLAGS.level,
                             group_seeds=FLAGS.group_seeds)
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(compare.markdown(result))
  if FLAGS.output:
    for p in compare.write(result, FLAGS.output):
      print(p)


if __name__ == "__main__":
  define_flags()
  app.run(main)
