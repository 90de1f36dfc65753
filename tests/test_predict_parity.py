"""Prediction feeds a model what its training fed it.

A fabricated CASME II tree (official crops and raw face frames) is built
with the toolkit's builders; for a clip of the built dataset, the gathered
frames, temporal weights and keyframe positions that `Predictor` hands to
its forward pass, reading the same clip folder from disk, must equal the
training pipeline's (`input_pipeline.load_clips`) exactly: for the default
config (official crops, only resized), the '_aligned' config (face-aligned
raw frames) and the 'uniform' temporal mode on a clip with a missing frame
(spaced by frame number, not position). The model is a random tiny one
saved with the preprocessing record that train.py writes.
"""

import numpy as np
import pytest

from edmdbn_jax import errors
from edmdbn_jax import input_pipeline
from edmdbn_jax import predict
from edmdbn_jax.configs import edmdbn as configs
from tests import fabricate
from tests.test_predict import save_random_model
from tests.test_predict import tiny_config

S = 64
# clip -> (subject folder, onset, apex, offset) as in tests/fabricate.py.
CLIPS = {
    "EP02_01f": ("sub01", 46, 50, 55),
    "EP04_02": ("sub01", 1, 3, 6),        # frame 4 missing in the range
    "EP09_05": ("sub02", 100, 120, 139),  # 40 frames, 33 stored
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("parity")
  fabricate.fabricate_casme2(root / "manual", crops=True, raw="face")
  return root


def _model(root, clips, variant, mode):
  cfg = tiny_config(5, S)
  cfg.data.dataset, cfg.data.variant, cfg.data.temporal = (
      "casme2", variant, mode)
  return save_random_model(
      root / f"model_{variant or 'default'}_{mode}", clips.class_names,
      cfg=cfg, provenance={"preprocessing": clips.preprocessing})


@pytest.mark.parametrize("variant,mode,folder,prefix", [
    ("", "keyframes", "Cropped", "reg_img"),
    ("", "uniform", "Cropped", "reg_img"),
    ("aligned", "keyframes", "CASME2_RAW_selected", "img"),
])
def test_predict_inputs_equal_the_training_inputs(tree, variant, mode,
                                                  folder, prefix):
  clips = input_pipeline.load_clips(
      "casme2", num_classes=5, image_size=S, num_frames=8, temporal=mode,
      data_dir=str(tree / "tfds"), manual_dir=str(tree / "manual"),
      variant=variant, progress=False)
  model_dir = _model(tree, clips, variant, mode)
  aligned = variant == "aligned"
  if not aligned:
    # Official crops: only the user knows whether new frames are such.
    with pytest.raises(errors.ConfigError, match="--noalign"):
      predict.Predictor(model_dir)
  p = predict.Predictor(model_dir, align=None if aligned else False)
  assert p.inputs.align is aligned and not p.inputs.greyscale
  assert p.inputs.max_stored_frames == 33 and not p.inputs.notes
  seen = {}
  forward = p._explain  # pylint: disable=protected-access

  def spy(gathered, weights, keyframe_pos):
    seen.update(g=np.asarray(gathered)[0], w=np.asarray(weights)[0],
                k=np.asarray(keyframe_pos)[0])
    return forward(gathered, weights, keyframe_pos)

  p._explain = spy  # pylint: disable=protected-access
  for clip, (subject, onset, apex, offset) in CLIPS.items():
    i = list(clips.clips).index(clip)
    pred = p.predict_frames(
        str(tree / "manual" / "CASME2" / folder / subject / clip),
        onset=onset, apex=apex, offset=offset, prefix=prefix)
    assert (pred.onset, pred.apex, pred.offset) == (onset, apex, offset)
    np.testing.assert_array_equal(seen["g"], clips.frames[i].astype(
        np.float32), err_msg=clip)
    np.testing.assert_allclose(seen["w"], clips.weights[i], atol=1e-6,
                               err_msg=clip)
    np.testing.assert_array_equal(seen["k"], clips.keyframe_pos[i])


def test_plan_inputs_follows_the_record():
  cfg = configs.get_config("tiny")
  rec = {"frame_sources": {"samm": "SAMM (face-aligned)"},
         "alignment": {"samm": {"aligned": 5, "not_aligned": 0}},
         "greyscale": {"samm": True}, "max_stored_frames": 17}
  plan = predict.plan_inputs(rec, cfg)
  assert plan.align and plan.greyscale and plan.max_stored_frames == 17
  assert plan.apex_rule == "max_diff"
  assert "greyscale" in plan.notes[0]
  # Asked to do what the training frames did not have done: said.
  assert "framed differently" in predict.plan_inputs(
      {**rec, "alignment": {"samm": {"aligned": 0, "not_aligned": 5}}},
      cfg, align=True).notes[0]
  assert "only resized" in predict.plan_inputs(rec, cfg, align=False).notes[0]
  mixed = {**rec, "alignment": {"casme2": {"aligned": 0, "not_aligned": 3},
                                "samm": {"aligned": 2, "not_aligned": 0}}}
  with pytest.raises(errors.ConfigError, match="2 clips were face-aligned"):
    predict.plan_inputs(mixed, cfg)
  # No record (older model directories, imported weights): aligned, said.
  old = predict.plan_inputs(None, cfg)
  assert old.align and not old.greyscale and old.max_stored_frames == 33
  assert "does not record" in old.notes[0]
  assert not predict.plan_inputs(None, cfg, align=False).notes
  # SMIC-HS models: the apex rule their training clips used.
  cfg.data.dataset = "smic_hs"
  assert predict.plan_inputs(None, cfg).apex_rule == "middle"
  cfg.data.smic_apex = "max_diff"
  assert predict.plan_inputs(None, cfg).apex_rule == "max_diff_stored"


def test_greyscale_and_smic_apex_rules_apply(tree):
  # A SMIC-HS model trained on greyscale, unaligned frames with
  # smic_apex='middle': colour frames are made grey and, with no apex
  # given, the middle frame is the apex (as for its training clips).
  cfg = tiny_config(3, S)
  cfg.data.dataset = "smic_hs"
  record = {"frame_sources": {"smic_hs": "reg_image* (official crops)"},
            "alignment": {"smic_hs": {"aligned": 0, "not_aligned": 4}},
            "greyscale": {"smic_hs": True}, "max_stored_frames": 33}
  model_dir = save_random_model(
      tree / "model_smic", ("negative", "positive", "surprise"), cfg=cfg,
      provenance={"preprocessing": record})
  p = predict.Predictor(model_dir, align=False)
  folder = tree / "manual" / "CASME2" / "Cropped" / "sub01" / "EP02_01f"
  pred = p.predict_frames(str(folder), onset=46, offset=55, prefix="reg_img")
  assert pred.apex_estimated and pred.apex == 51  # 46..55: the middle one
  assert pred.as_dict()["inputs"]["apex_rule"] == "middle"
  for frame in (pred.onset_frame, pred.apex_frame):
    assert np.array_equal(frame[..., 0], frame[..., 1])
    assert np.array_equal(frame[..., 0], frame[..., 2])
  # The source frames are colour: the grey came from the conversion.
  from edmdbn_jax.preprocess import io  # pylint: disable=g-import-not-at-top
  src = io.load_image(str(folder / "reg_img46.jpg"))
  assert not np.array_equal(src[..., 0], src[..., 1])
