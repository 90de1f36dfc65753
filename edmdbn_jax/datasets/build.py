r"""Builds one dataset config from the command line (no TensorFlow needed).

  PYTHONPATH=. python -m edmdbn_jax.datasets.build casme2 --config=5class_64 \
      --manual_dir=/data/me --data_dir=~/tensorflow_datasets

does what `tfds build edmdbn_jax/datasets/casme2 --config=5class_64
--manual_dir=... --data_dir=... --file_format=array_record` does. The `tfds`
command itself imports TensorFlow at start-up (tfds 4.9.10's
`scripts/cli/convert_format_utils.py`), so it only works where TensorFlow is
installed; this module needs only tensorflow-datasets. The build report
(`build_report.json`, also logged) lands beside the record files.
"""

import os
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

from edmdbn_jax import datasets
from edmdbn_jax import errors

_CONFIG = flags.DEFINE_string(
    "config", None, "Builder config, e.g. '5class_224' or '3class_64_aligned'.",
    required=True)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Folder holding the licensed files (see the builder's "
    "MANUAL_DOWNLOAD_INSTRUCTIONS).")
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where tfds writes the dataset (default: "
    "$TFDS_DATA_DIR, else ~/tensorflow_datasets).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Delete an existing build of this config first.")


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2:
    raise app.UsageError(
        f"Give one dataset name, one of {sorted(datasets.BUILDERS)}.")
  try:
    cls = datasets.builder_class(argv[1])
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  known = [c.name for c in cls.BUILDER_CONFIGS]
  if _CONFIG.value not in known:
    raise app.UsageError(
        f"{argv[1]} has no config {_CONFIG.value!r}; choose from {known}.")
  manual_dir = (os.path.expanduser(_MANUAL_DIR.value) if _MANUAL_DIR.value
                else None)
  builder = cls(config=_CONFIG.value,
                data_dir=datasets.resolve_data_dir(_DATA_DIR.value),
                file_format="array_record")
  try:
    if datasets.is_built(builder) and not _OVERWRITE.value:
      # tfds would reuse it silently, whatever changed in the manual
      # directory since (a frame supplied for a skipped clip, say).
      checked = "not checked against a manual directory (none given)"
      if manual_dir and hasattr(builder, "check_build"):
        checked = builder.check_build(manual_dir)
      print(f"{builder.info.full_name} is already built at "
            f"{builder.data_dir} ({checked}); --overwrite rebuilds it.",
            file=sys.stderr)
    else:
      mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
              if _OVERWRITE.value
              else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(
              manual_dir=manual_dir, download_mode=mode))
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  logging.info("Built %s at %s", builder.info.full_name, builder.data_dir)
  try:  # the build's outcome last, where it is seen (warnings came before)
    from edmdbn_jax.datasets import common  # pylint: disable=g-import-not-at-top
    rep = common.read_report(builder)
    print(f"{rep['num_clips']} clips of {rep['num_subjects']} subjects; "
          f"{len(rep['skipped'])} skipped, {len(rep['repaired'])} repaired, "
          f"{len(rep['excluded'])} excluded (build_report.json in the "
          "folder below says which and why).", file=sys.stderr)
  except errors.DataError:
    pass  # a builder without a report (synthetic): the path is enough
  print(builder.data_dir)


if __name__ == "__main__":
  app.run(main)
