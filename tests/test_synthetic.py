"""The synthetic micro-expression dataset."""

import numpy as np
import pytest

from edmdbn_jax import datasets
from edmdbn_jax import input_pipeline
from edmdbn_jax.datasets.synthetic_me import faces
from edmdbn_jax.datasets.synthetic_me import synthetic_me_dataset_builder as B


def _config(name):
  return [c for c in B.Builder.BUILDER_CONFIGS if c.name == name][0]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder, source = datasets.load("synthetic", num_classes=5, image_size=32,
                                  variant="test", data_dir=data_dir)
  return builder, source, data_dir


def test_build_and_read_without_tensorflow(built):
  builder, source, _ = built
  assert len(source) == 16
  ex = source[0]
  assert ex["frames"].dtype == np.uint8 and ex["frames"].shape[1:] == (32, 32,
                                                                        3)
  assert 0 == ex["onset"] <= ex["apex"] <= ex["offset"] == len(
      ex["frames"]) - 1
  assert builder.info.features["label"].names == list(faces.FIVE_CLASS)
  subjects = {source[i]["subject"] for i in range(len(source))}
  assert subjects == {b"synthetic/s01", b"synthetic/s02", b"synthetic/s03",
                      b"synthetic/s04"} or subjects == {
                          "synthetic/s01", "synthetic/s02", "synthetic/s03",
                          "synthetic/s04"}


def test_load_clips_and_subject_lists(built):
  _, _, data_dir = built
  clips = input_pipeline.load_clips("synthetic", num_classes=5, image_size=32,
                                    variant="test", data_dir=data_dir,
                                    progress=False)
  assert clips.frames.shape[:2] == (16, 3)
  assert clips.weights.shape == (16, 9, 3)
  assert clips.subject_list() == [f"synthetic/s0{i}" for i in range(1, 5)]
  assert sum(clips.class_counts().values()) == 16
  # Every subject shows four different classes (4 clips each).
  for s in clips.subject_list():
    assert len(set(clips.labels[clips.subjects == s])) == 4
  sub = clips.subset(np.flatnonzero(clips.subjects == "synthetic/s02"))
  assert len(sub) == 4 and set(sub.subjects) == {"synthetic/s02"}
  ref = input_pipeline.load_clips("synthetic", num_classes=5, image_size=32,
                                  variant="test", data_dir=data_dir,
                                  temporal="reference", progress=False)
  assert ref.frames.shape[1] == 2


def test_generation_is_deterministic_per_clip():
  cfg = _config("5class_64")
  plan = B.clip_plan(cfg)
  assert plan == B.clip_plan(cfg)
  s, c, cls = plan[5]
  a = B.generate_clip(cfg, s, c, cls)
  b = B.generate_clip(cfg, s, c, cls)
  np.testing.assert_array_equal(a["frames"], b["frames"])
  assert a["action_units"] == b["action_units"]


def test_subjects_are_distinct_identities():
  cfg = _config("5class_64")
  onsets = {}
  for s, c, cls in B.clip_plan(cfg):
    if s not in onsets:
      onsets[s] = B.generate_clip(cfg, s, c, cls)["frames"][0].astype(float)
  keys = sorted(onsets)
  diffs = [np.abs(onsets[a] - onsets[b]).mean() for i, a in enumerate(keys)
           for b in keys[i + 1:]]
  assert min(diffs) > 5.0  # grey levels: different faces, not noise


def _region_motion(ex, rows):
  f = ex["frames"].astype(float)
  d = np.abs(f[ex["apex"]] - f[ex["onset"]]).mean(-1)
  s = f.shape[1]
  return d[int(rows[0] * s):int(rows[1] * s)].mean()


def test_actions_move_their_action_unit_sites():
  cfg = _config("5class_224_test")
  rng = np.random.default_rng(0)
  idn = faces.make_identity(rng)
  brows, mouth = (0.25, 0.38), (0.64, 0.80)
  for au, more, less in (("AU12", mouth, brows), ("AU1+2", brows, mouth),
                         ("AU4", brows, mouth), ("AU15", mouth, brows)):
    spec = faces.make_clip_spec("happiness", np.random.default_rng(1))
    spec.aus = {au: 1.0}
    spec.noise = 0.0
    spec.drift[:] = 0.0
    spec.blink = (0, 0)
    spec.flicker = 0.0
    frames = faces.render_frames(idn, spec, [spec.onset, spec.apex], 224,
                                 np.random.default_rng(2))
    ex = {"frames": frames, "onset": 0, "apex": 1}
    assert _region_motion(ex, more) > 2 * _region_motion(ex, less), au
  del cfg


def test_intensity_profile():
  spec = faces.make_clip_spec("surprise", np.random.default_rng(3))
  assert faces.intensity(spec.onset, spec) == 0.0
  assert faces.intensity(spec.apex, spec) == pytest.approx(1.0)
  assert faces.intensity(spec.offset, spec) == pytest.approx(0.1)
  values = [faces.intensity(t, spec) for t in range(spec.num_frames)]
  assert int(np.argmax(values)) == spec.apex


def test_three_class_config_maps_recipes():
  cfg = _config("3class_64_test")
  assert cfg.class_names == ("negative", "positive", "surprise")
  for s, c, cls in B.clip_plan(cfg)[:6]:
    ex = B.generate_clip(cfg, s, c, cls)
    assert ex["label"] == cls
    assert ex["emotion"] in faces.THREE_CLASS[cls]


def test_data_dir_defaults_to_tfds_data_dir_then_home(monkeypatch, tmp_path):
  kw = dict(num_classes=5, image_size=32, variant="test")
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
  builder, _ = datasets.get_builder("synthetic", **kw)
  assert str(builder.data_dir).startswith(str(tmp_path))
  explicit = tmp_path / "explicit"
  builder, _ = datasets.get_builder("synthetic", data_dir=str(explicit), **kw)
  assert str(builder.data_dir).startswith(str(explicit))
  monkeypatch.delenv("TFDS_DATA_DIR")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  builder, _ = datasets.get_builder("synthetic", **kw)
  assert str(builder.data_dir).startswith(
      str(tmp_path / "home" / "tensorflow_datasets"))
