"""Tests of edmdbn_jax.input_pipeline on the small synthetic dataset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmdbn_jax import datasets
from edmdbn_jax import input_pipeline
from edmdbn_jax.data import augment
from edmdbn_jax.data import temporal
from edmdbn_jax.errors import ConfigError
from tests.synthetic_fixtures import synthetic_data_dir  # pylint: disable=unused-import


@pytest.fixture(scope="module")
def source(synthetic_data_dir):
  _, src = datasets.load("synthetic", num_classes=5, image_size=64,
                         data_dir=synthetic_data_dir)
  return {src[i]["clip"].decode(): src[i] for i in range(len(src))}


@pytest.mark.parametrize("mode", temporal.MODES)
def test_load_clips_matches_the_stored_clips(synthetic_data_dir, source, mode):
  clips = input_pipeline.load_clips(
      "synthetic", num_classes=5, image_size=64, num_frames=8, temporal=mode,
      data_dir=synthetic_data_dir)
  k = temporal.num_gathered(mode, 8)
  n = len(clips)
  assert n == 93 and clips.name == "synthetic"
  assert clips.frames.shape == (n, k, 64, 64, 3)
  assert clips.frames.dtype == np.uint8
  assert clips.weights.shape == (n, 9, k) and clips.weights.dtype == np.float32
  assert clips.keyframe_pos.shape == (n, 2)
  assert clips.keyframe_pos.dtype == np.int32
  assert clips.labels.dtype == np.int32
  assert clips.class_names == ("happiness", "repression", "surprise",
                               "disgust", "others")
  order = list(zip(clips.subjects.tolist(), clips.clips.tolist()))
  assert order == sorted(order)
  assert set(clips.datasets.tolist()) == {"synthetic"}
  for i in (0, 37, 92):
    ex = source[clips.clips[i]]
    p = temporal.plan(ex["onset"], ex["apex"], ex["offset"],
                      len(ex["frames"]), 8, mode,
                      frame_numbers=ex["frame_numbers"])
    np.testing.assert_array_equal(clips.frames[i], ex["frames"][p.indices])
    np.testing.assert_array_equal(clips.weights[i], p.weights)
    assert clips.labels[i] == ex["label"]
    assert clips.subjects[i] == ex["subject"].decode()
    onset, apex = clips.frames[i, clips.keyframe_pos[i]]
    np.testing.assert_array_equal(onset, ex["frames"][ex["onset"]])
    np.testing.assert_array_equal(apex, ex["frames"][ex["apex"]])


def test_subset_subjects_and_counts(synthetic_data_dir):
  clips = input_pipeline.load_clips("synthetic", num_classes=5, image_size=64,
                                    data_dir=synthetic_data_dir)
  subjects = clips.subject_list()
  assert subjects == [f"synthetic/s{i:02d}" for i in range(1, 11)]
  counts = clips.class_counts()
  assert list(counts) == list(clips.class_names)
  assert sum(counts.values()) == 93 and min(counts.values()) >= 10
  fold = clips.subset(clips.subjects == subjects[3])
  n = int((clips.subjects == subjects[3]).sum())
  assert len(fold) == n and fold.subject_list() == [subjects[3]]
  assert fold.frames.shape[0] == fold.weights.shape[0] == n
  rest = clips.subset(np.flatnonzero(clips.subjects != subjects[3]))
  assert len(rest) == 93 - n and subjects[3] not in rest.subject_list()
  assert (sum(fold.class_counts().values())
          + sum(rest.class_counts().values())) == 93
  picked = clips.subset([5, 2])
  assert picked.clips.tolist() == [clips.clips[5], clips.clips[2]]


def test_batch_runs_through_augment_and_assemble(synthetic_data_dir):
  clips = input_pipeline.load_clips("synthetic", num_classes=5, image_size=64,
                                    num_frames=4, temporal="uniform",
                                    data_dir=synthetic_data_dir)
  batch = clips.subset(np.arange(3))

  @jax.jit
  def step(key, frames, weights, pos):
    frames = augment.augment(key, frames)
    return temporal.assemble(frames, weights, pos)

  frames, keys = step(jax.random.key(0), batch.frames, batch.weights,
                      batch.keyframe_pos)
  assert frames.shape == (3, 5, 64, 64, 3) and keys.shape == (3, 2, 64, 64, 3)
  assert frames.dtype == jnp.float32 and bool(jnp.isfinite(frames).all())


def test_max_diff_apex():
  rng = np.random.default_rng(0)
  frames = np.repeat(rng.integers(0, 200, (1, 8, 8, 3), dtype=np.uint8), 7, 0)
  frames[4] += 30  # The most different frame from the onset.
  frames[2] += 10
  assert input_pipeline.max_diff_apex(frames, 0, 6) == 4
  assert input_pipeline.max_diff_apex(frames, 0, 3) == 2
  assert input_pipeline.max_diff_apex(frames, 5, 5) == 5


def test_bad_options_raise(synthetic_data_dir):
  with pytest.raises(ConfigError, match="smic_apex"):
    input_pipeline.load_clips("synthetic", num_classes=5, image_size=64,
                              smic_apex="first", data_dir=synthetic_data_dir)
  with pytest.raises(ConfigError, match="temporal"):
    input_pipeline.load_clips("synthetic", num_classes=5, image_size=64,
                              temporal="middle", data_dir=synthetic_data_dir)
