"""tfds builders for micro-expression datasets, and a one-call loader.

`load(name, num_classes=..., image_size=...)` builds the dataset on first use
(licensed datasets need `manual_dir`, see each builder's
MANUAL_DOWNLOAD_INSTRUCTIONS) and returns the builder and its random-access
`train` data source. Every dataset has a single `train` split: LOSO splits by
subject at training time.
"""

import importlib
import os
from typing import Optional

from edmdbn_jax import errors
from edmdbn_jax.datasets.features import config_name

# name -> (module, builder class). Modules are imported lazily so that using
# one dataset never imports the others.
BUILDERS = {
    "synthetic": ("edmdbn_jax.datasets.synthetic_me.synthetic_me_dataset_builder", "Builder"),
    "casme2": ("edmdbn_jax.datasets.casme2.casme2_dataset_builder", "Builder"),
    "samm": ("edmdbn_jax.datasets.samm.samm_dataset_builder", "Builder"),
    "smic_hs": ("edmdbn_jax.datasets.smic_hs.smic_hs_dataset_builder", "Builder"),
    "mmew": ("edmdbn_jax.datasets.mmew.mmew_dataset_builder", "Builder"),
    "megc2019_composite": ("edmdbn_jax.datasets.megc2019_composite.megc2019_composite_dataset_builder", "Builder"),
}

DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


def resolve_data_dir(data_dir: Optional[str] = None) -> str:
  """`data_dir` if given, else $TFDS_DATA_DIR (the tfds convention), else
  ~/tensorflow_datasets; with ~ expanded."""
  return os.path.expanduser(
      data_dir or os.environ.get("TFDS_DATA_DIR") or DEFAULT_DATA_DIR)


def builder_class(name: str):
  if name not in BUILDERS:
    raise errors.ConfigError(
        f"Unknown dataset {name!r}; choose one of {sorted(BUILDERS)}.")
  module, cls = BUILDERS[name]
  return getattr(importlib.import_module(module), cls)


def is_built(builder) -> bool:
  """`builder.is_prepared()`, without tfds's warning 'Variant folder ... has
  no dataset_info.json' for a build not made yet (tfds creates the empty
  version folder when the builder is constructed)."""
  return ((builder.data_path / "dataset_info.json").exists()
          and builder.is_prepared())


def get_builder(name: str, *, num_classes: int, image_size: int,
                data_dir: Optional[str] = None,
                manual_dir: Optional[str] = None, variant: str = "",
                **builder_kwargs):
  """Returns the tfds builder for `name` at the given class set and size."""
  cls = builder_class(name)
  cfg = config_name(num_classes, image_size, variant)
  known = [c.name for c in cls.BUILDER_CONFIGS]
  if cfg not in known:
    raise errors.ConfigError(
        f"Dataset {name!r} has no {num_classes}-class config at {image_size} "
        f"px (config {cfg!r}); available: {known}.")
  data_dir = resolve_data_dir(data_dir)
  builder = cls(config=cfg, data_dir=data_dir, file_format="array_record",
                **builder_kwargs)
  # `--manual_dir=~/data` reaches Python unexpanded (the shell expands ~
  # only at the start of a word).
  return builder, os.path.expanduser(manual_dir) if manual_dir else manual_dir


def load(name: str, *, num_classes: int, image_size: int,
         data_dir: Optional[str] = None, manual_dir: Optional[str] = None,
         build: bool = True, variant: str = "", **builder_kwargs):
  """Builds (if needed) and opens a dataset.

  Returns:
    (builder, source): `source` is the `train` split as a random-access
    `tfds.data_source` whose items are dicts of numpy values (see
    `edmdbn_jax.datasets.features.clip_features`).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder, manual_dir = get_builder(
      name, num_classes=num_classes, image_size=image_size,
      data_dir=data_dir, manual_dir=manual_dir, variant=variant,
      **builder_kwargs)
  # A build made by an earlier call is checked against the manual directory
  # now (tfds would reuse it whatever changed); one made here is not.
  if (manual_dir and hasattr(builder, "check_build")
      and is_built(builder)):
    builder.check_build(manual_dir)
  if build:
    dl_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    builder.download_and_prepare(download_config=dl_config)
  return builder, builder.as_data_source(split="train")
