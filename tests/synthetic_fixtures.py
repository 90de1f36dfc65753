"""Shared pytest fixtures: the small synthetic dataset, built once per session.

Import the fixture into a test module (`from tests.synthetic_fixtures import
synthetic_data_dir`); pytest then builds it once for the whole session.
"""

import pytest


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
  """A tfds data_dir holding synthetic_me/5class_64 (about 2 s to build)."""
  from edmdbn_jax import datasets  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  datasets.load("synthetic", num_classes=5, image_size=64, data_dir=data_dir)
  return data_dir
