"""End-to-end prediction on new material (edmdbn_jax.predict, the CLI).

The clip is skimage.data.astronaut() (public domain, NASA) with a synthetic
expression: smooth Gaussian displacements lift the mouth corners up and out,
rising then falling over 11 frames (peak at frame 5). The model is a randomly
initialised tiny EDMDBN written with checkpoints.save_model, so the tests
check the pipeline (reading, keyframes, alignment, Grad-CAM, errors), not
accuracy. The real dlib detector and landmark model are used.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import cv2
import jax
import numpy as np
import pytest
from skimage import data as skdata

from edmdbn_jax import checkpoints
from edmdbn_jax import errors
from edmdbn_jax import predict
from edmdbn_jax.configs import edmdbn as configs
from edmdbn_jax.models import from_config
from edmdbn_jax.preprocess import FacePreprocessor

REPO = pathlib.Path(__file__).resolve().parents[1]
CLASSES = ("negative", "positive", "surprise", "repression", "others")
N_FRAMES = 11
PEAK = 5
FIRST_NUMBER = 101  # frame folders are numbered img101.jpg ... img111.jpg


def tiny_config(num_classes=5, image_size=32):
  cfg = configs.get_config(f"tiny,num_classes={num_classes}")
  cfg.data.image_size = image_size
  cfg.model.depths = (1, 1, 1)
  cfg.model.embed_dim = 16
  return cfg


def save_random_model(directory, class_names, seed=0, cfg=None,
                      provenance=None):
  """A randomly initialised tiny model written as a model directory
  (`cfg`: default `tiny_config` for the class count)."""
  cfg = cfg or tiny_config(len(class_names))
  model = from_config(cfg.model)
  s, t = int(cfg.data.image_size), int(cfg.data.num_frames)
  variables = jax.jit(model.init)(
      jax.random.key(seed), np.zeros((1, t + 1, s, s, 3), np.float32),
      np.zeros((1, 2, s, s, 3), np.float32))
  return checkpoints.save_model(str(directory),
                                {"params": variables["params"]}, cfg,
                                class_names,
                                provenance=provenance or {"test": "random"})


def mouth_warp(image, amplitude, corners, sigma=10.0):
  """Moves the pixels near each mouth corner up and outwards.

  Args:
    image: uint8 (H, W, 3).
    amplitude: peak displacement in pixels.
    corners: [((x, y), outward_sign)], outward_sign -1 (left) or +1 (right).
    sigma: Gaussian radius of the displacement in pixels.

  Returns:
    uint8 (H, W, 3), the image resampled with cv2.remap.
  """
  h, w = image.shape[:2]
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  map_x, map_y = xx.copy(), yy.copy()
  for (cx, cy), sign in corners:
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
    map_x -= amplitude * sign * g   # content moves outwards ...
    map_y += amplitude * g          # ... and up
  return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR,
                   borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def clip():
  """uint8 (11, 300, 280, 3): a smile rising to frame 5 and falling again."""
  head = np.ascontiguousarray(skdata.astronaut()[0:300, 90:370])
  lm = FacePreprocessor().landmarks(head)
  corners = [(tuple(lm[48]), -1.0), (tuple(lm[54]), 1.0)]
  # 0 at frames 0 and 10, 7 px at frame 5; frames k and 10 - k equal.
  amps = 7.0 * np.sin(np.linspace(0.0, np.pi, N_FRAMES))
  frames = np.stack([mouth_warp(head, a, corners) for a in amps])
  assert not np.array_equal(frames[PEAK], frames[0])
  return frames


@pytest.fixture(scope="module")
def files(clip, tmp_path_factory):
  """A model directory, an MJPG video and a frame folder of the clip."""
  root = tmp_path_factory.mktemp("predict")
  model_dir = save_random_model(root / "model", CLASSES)
  video = root / "smile.avi"
  h, w = clip.shape[1:3]
  writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30,
                           (w, h))
  assert writer.isOpened()
  for f in clip:
    writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
  writer.release()
  frames = root / "smile_frames"
  frames.mkdir()
  for i, f in enumerate(clip):
    assert cv2.imwrite(str(frames / f"img{FIRST_NUMBER + i}.jpg"),
                       cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
  return {"root": root, "model": model_dir, "video": video, "frames": frames}


@pytest.fixture(scope="module")
def predictor(files):
  return predict.Predictor(files["model"])


def _check_prediction(pred, s=32):
  assert pred.class_names == CLASSES
  assert pred.probabilities.shape == (5,)
  assert np.all(pred.probabilities >= 0)
  assert pred.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
  assert pred.predicted == CLASSES[int(np.argmax(pred.probabilities))]
  k, h, w = pred.cams.shape
  assert k == 5 and 1 <= h <= s and h == w
  assert np.isfinite(pred.cams).all()
  assert pred.cams.min() >= 0.0 and pred.cams.max() <= 1.0 + 1e-6
  assert pred.onset_frame.shape == pred.apex_frame.shape == (s, s, 3)
  assert pred.onset_frame.dtype == np.uint8


# ------------------------------------------------------------------ success


def test_predict_video_estimates_the_apex_at_the_warp_peak(predictor, files,
                                                           tmp_path):
  pred = predictor.predict_video(str(files["video"]))
  _check_prediction(pred)
  assert (pred.onset, pred.offset) == (0, N_FRAMES - 1)
  assert pred.apex_estimated
  # The displacement peaks at frame 5 (frames 4 and 6 are within 2%).
  assert PEAK - 1 <= pred.apex <= PEAK + 1
  # The apex crop differs from the onset crop around the mouth, the lower
  # half of the crop, more than around the eyes.
  diff = np.abs(pred.apex_frame.astype(float) - pred.onset_frame.astype(
      float)).mean(-1)
  assert diff[16:].mean() > diff[:12].mean()
  png = tmp_path / "sub" / "heatmap.png"
  pred.save_heatmap(str(png))
  import matplotlib.image as mpimg  # pylint: disable=g-import-not-at-top
  img = mpimg.imread(str(png))
  assert img.ndim == 3 and img.shape[1] > img.shape[0] > 100
  d = pred.as_dict()
  assert set(d["probabilities"]) == set(CLASSES)
  json.dumps(d)  # JSON-serialisable


def test_predict_frames_with_keyframes_as_frame_numbers(predictor, files):
  pred = predictor.predict_frames(str(files["frames"]), onset=102, apex=106,
                                  offset=110)
  _check_prediction(pred)
  assert (pred.onset, pred.apex, pred.offset) == (102, 106, 110)
  assert not pred.apex_estimated
  # Same clip and keyframes through predict_array (JPEG decoded the same way).
  from edmdbn_jax.preprocess import io as pio  # pylint: disable=g-import-not-at-top
  arr = np.stack([pio.load_image(files["frames"] / f"img{n}.jpg")
                  for n in range(FIRST_NUMBER, FIRST_NUMBER + N_FRAMES)])
  same = predictor.predict_array(arr, onset=1, apex=5, offset=9)
  np.testing.assert_allclose(same.probabilities, pred.probabilities,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(same.cams, pred.cams, atol=1e-5)


def test_predict_frames_says_which_frame_numbers_are_missing(
    predictor, files, tmp_path):
  gappy = tmp_path / "gappy"
  shutil.copytree(files["frames"], gappy)
  for n in (104, 105, 108):
    (gappy / f"img{n}.jpg").unlink()
  pred = predictor.predict_frames(str(gappy), onset=102, apex=106,
                                  offset=110)
  assert pred.missing_frame_numbers == [104, 105, 108]
  assert pred.as_dict()["missing_frame_numbers"] == [104, 105, 108]
  full = predictor.predict_frames(str(files["frames"]), onset=102, apex=106,
                                  offset=110)
  assert full.missing_frame_numbers == []
  with pytest.raises(errors.DataError, match=r"no frame numbered 104 for "
                     r"--apex falls in a gap of the numbering \(frames "
                     r"101\.\.111, 8 files\)"):
    predictor.predict_frames(str(gappy), apex=104)
  from experiments import predict as predict_cli  # pylint: disable=g-import-not-at-top
  assert predict_cli._ranges([104, 105, 108]) == "104-105, 108"


def test_predict_frames_with_a_prefix_in_a_two_family_folder(
    predictor, files, tmp_path):
  both = tmp_path / "both"
  shutil.copytree(files["frames"], both)
  for p in list(both.iterdir()):  # SMIC-like: image<n> beside reg_image<n>
    shutil.copy(p, both / p.name.replace("img", "reg_img"))
  with pytest.raises(errors.DataError, match=r"2 families.*experiments.predict"):
    predictor.predict_frames(str(both), onset=102, apex=106, offset=110)
  pred = predictor.predict_frames(str(both), onset=102, apex=106, offset=110,
                                  prefix="reg_img")
  ref = predictor.predict_frames(str(files["frames"]), onset=102, apex=106,
                                 offset=110)
  np.testing.assert_allclose(pred.probabilities, ref.probabilities,
                             rtol=1e-6)


def test_predict_frames_estimates_the_apex_inside_a_sub_range(predictor,
                                                             files):
  pred = predictor.predict_frames(str(files["frames"]), onset=FIRST_NUMBER,
                                  offset=FIRST_NUMBER + 8)
  _check_prediction(pred)
  assert pred.apex_estimated
  assert FIRST_NUMBER + PEAK - 1 <= pred.apex <= FIRST_NUMBER + PEAK + 1
  assert (pred.onset, pred.offset) == (FIRST_NUMBER, FIRST_NUMBER + 8)


def test_cli_writes_probabilities_json_and_heatmap(files, tmp_path):
  out = tmp_path / "new_folder" / "r.json"  # folders are made first
  png = tmp_path / "r.png"
  proc = _cli(files, f"--frames={files['frames']}", "--onset=101",
              "--apex=106", "--offset=110", f"--json={out}",
              f"--heatmap={tmp_path / 'r'}", "--classes=5")
  assert f"heatmap: {png}" in proc.stdout
  assert proc.returncode == 0, proc.stderr
  d = json.loads(out.read_text())
  assert sum(d["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
  assert (d["onset"], d["apex"], d["offset"]) == (101, 106, 110)
  assert f"predicted: {d['predicted']}" in proc.stdout
  assert png.stat().st_size > 1000
  assert " I1" not in proc.stderr and "Orbax" not in proc.stderr  # quiet


# ---------------------------------------------------------------- bad input


def _env():
  # A tiny model: fast compiles matter more than fast code.
  return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
              JAX_DISABLE_MOST_OPTIMIZATIONS="1")


def _cli(files, *args):
  env = _env()
  return subprocess.run(
      [sys.executable, "-m", "experiments.predict",
       f"--checkpoint={files['model']}", *args],
      capture_output=True, text=True, env=env, cwd=str(files["root"]),
      timeout=300, check=False)


def _blank_video(path, n):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30,
                           (200, 160))
  for _ in range(n):
    writer.write(np.full((160, 200, 3), 128, np.uint8))
  writer.release()


@pytest.fixture(scope="module")
def bad(files):
  """Inputs that must be refused, written once."""
  root = files["root"]
  junk = root / "junk.avi"
  junk.write_bytes(b"this is not a video\n" * 50)
  blank = root / "blank.avi"
  _blank_video(blank, 6)
  one = root / "one_frame"
  one.mkdir()
  cv2.imwrite(str(one / "img1.jpg"), cv2.cvtColor(
      cv2.imread(str(files["frames"] / "img101.jpg")), cv2.COLOR_BGR2RGB))
  model3 = save_random_model(root / "model3", ("negative", "positive",
                                               "surprise"))
  return {"junk": junk, "blank": blank, "one": one, "model3": model3}


# (name, CLI args, API call, error class, message pattern)
CASES = [
    ("unreadable_file", lambda f, b: [f"--video={b['junk']}"],
     lambda p, f, b: p.predict_video(str(b["junk"])),
     errors.DataError, "OpenCV cannot open|yields no frames"),
    ("missing_file", lambda f, b: [f"--video={f['root'] / 'nope.mp4'}"],
     lambda p, f, b: p.predict_video(str(f["root"] / "nope.mp4")),
     errors.DataError, "video file not found"),
    ("folder_as_video", lambda f, b: [f"--video={f['frames']}"],
     lambda p, f, b: p.predict_video(str(f["frames"])),
     errors.DataError, r"is a folder, not a video file.*--frames"),
    ("no_face", lambda f, b: [f"--video={b['blank']}"],
     lambda p, f, b: p.predict_video(str(b["blank"])),
     errors.NoFaceError, "no face found"),
    ("one_frame", lambda f, b: [f"--frames={b['one']}"],
     lambda p, f, b: p.predict_frames(str(b["one"])),
     errors.DataError, r"1 frame\(s\).*at least 2"),
    ("onset_out_of_range",
     lambda f, b: [f"--video={f['video']}", "--onset=11"],
     lambda p, f, b: p.predict_video(str(f["video"]), onset=11),
     errors.DataError, r"--onset=11 is outside the clip's 11 frames"),
    ("file_as_frames", lambda f, b: [f"--frames={f['video']}"],
     lambda p, f, b: p.predict_frames(str(f["video"])),
     errors.DataError, r"smile.avi is a file; --frames takes a folder"),
    ("frame_number_unknown",
     lambda f, b: [f"--frames={f['frames']}", "--apex=5"],
     lambda p, f, b: p.predict_frames(str(f["frames"]), apex=5),
     errors.DataError, r"no frame numbered 5 for --apex \(frames 101\.\.111"),
    ("out_of_order",
     lambda f, b: [f"--frames={f['frames']}", "--onset=105", "--apex=103",
                   "--offset=110"],
     lambda p, f, b: p.predict_frames(str(f["frames"]), onset=105, apex=103,
                                      offset=110),
     errors.DataError, r"out of order \(onset 105, apex 103, offset 110\)"),
    ("offset_before_onset",
     lambda f, b: [f"--video={f['video']}", "--onset=6", "--offset=3"],
     lambda p, f, b: p.predict_video(str(f["video"]), onset=6, offset=3),
     errors.DataError, "onset 6 must come before offset 3"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(predictor, files, bad, case):
  _, _, call, error, pattern = case
  with pytest.raises(error, match=pattern):
    call(predictor, files, bad)


@pytest.mark.parametrize("classes,pattern", [
    (["3"], r"5-class model .* not 3-class"),
    (["neg", "pos", "sur", "rep", "oth"], r"predicts \('negative'"),
])
def test_refuses_a_model_for_another_class_set(files, classes, pattern):
  with pytest.raises(errors.CheckpointError, match=pattern):
    predict.Predictor(files["model"], expected_classes=classes)
  predict.Predictor(files["model"], expected_classes=["5"])
  predict.Predictor(files["model"], expected_classes=[c.upper()
                                                      for c in CLASSES])


# TensorStore's callbacks after Orbax closes its event loop: noise, not
# the behaviour under test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", ["params_folder", "manifest"])
def test_a_damaged_model_directory_is_named(files, tmp_path, damage):
  # A partial copy: Orbax's KeyError or TensorStore's NOT_FOUND becomes one
  # error naming the directory and the fix.
  copy = tmp_path / "copy"
  shutil.copytree(files["model"], copy)
  if damage == "params_folder":
    shutil.rmtree(copy / "0" / "params")
  else:
    (copy / "0" / "params" / "manifest.ocdbt").unlink()
  with pytest.raises(errors.CheckpointError,
                     match=r"copy: the parameters of step 0 cannot be read "
                           r".*copy the whole model directory again"):
    predict.Predictor(str(copy))


def test_cli_exits_non_zero_with_a_message_on_bad_input(files, bad):
  """Every bad input through `python -m experiments.predict`."""
  model = files["model"]
  # (name, checkpoint, args, exit status, pattern of the last stderr line)
  runs = [(name, model, args(files, bad), 2, "^error: .*" + pattern)
          for name, args, _, _, pattern in CASES]
  runs += [
      ("classes_count", model, [f"--video={files['video']}", "--classes=3"],
       2, "^error: .*5-class model"),
      ("classes_names", model, [f"--video={files['video']}",
                                "--classes=negative,positive,surprise"],
       2, r"^error: .*predicts \('negative', 'positive', 'surprise', "
       r"'repression'"),
      ("three_class_model", bad["model3"],
       [f"--video={files['video']}", "--classes=" + ",".join(CLASSES)],
       2, r"^error: .*predicts \('negative', 'positive', 'surprise'\), not"),
      ("no_input", model, [], 1, "exactly one of --video and --frames"),
      ("heatmap_suffix", model, [f"--video={files['video']}",
                                 "--heatmap=x.xyz"], 1,
       r"--heatmap=x.xyz: use a .png"),
      ("stray_argument", model, [f"--video={files['video']}", "extra"], 1,
       r"Unexpected arguments: \['extra'\]"),
  ]
  # Run them side by side: each process pays the JAX import once.
  procs = []
  for name, checkpoint, args, status, pattern in runs:
    procs.append((name, status, pattern, subprocess.Popen(
        [sys.executable, "-m", "experiments.predict",
         f"--checkpoint={checkpoint}", *args], env=_env(),
        cwd=str(files["root"]), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)))
  for name, status, pattern, proc in procs:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == status, (name, out, err)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert any(re.search(pattern, l) for l in lines[-2:]), (name, err)
    assert "Traceback" not in err, (name, err)
    assert "predicted:" not in out
