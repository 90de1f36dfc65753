"""Tests of edmdbn_jax.preprocess and experiments.preprocess.

Faces come from skimage.data.astronaut() (public domain, NASA); the real dlib
detector and 68-point model are used throughout.
"""

import json
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from edmdbn_jax import errors
from edmdbn_jax.preprocess import face
from edmdbn_jax.preprocess import io as pio
from edmdbn_jax.preprocess import estimate_apex
from edmdbn_jax.preprocess import FacePreprocessor
from edmdbn_jax.preprocess import read_video

REPO = pathlib.Path(__file__).resolve().parents[1]
S = 224
EYES_NOSE = list(face.TEMPLATE_INDICES)


@pytest.fixture(scope="module")
def head():
  """uint8 (300, 280, 3): the astronaut's head and shoulders."""
  return np.ascontiguousarray(skdata.astronaut()[0:300, 90:370])


def _write(path, rgb):
  path.parent.mkdir(parents=True, exist_ok=True)
  assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _two_faces(head):
  """The head next to a 0.75-scaled copy: (canvas, x where the copy starts)."""
  small = cv2.resize(head, None, fx=0.75, fy=0.75,
                     interpolation=cv2.INTER_AREA)
  h, w = head.shape[:2]
  canvas = np.full((h, w + small.shape[1], 3), 128, np.uint8)
  canvas[:, :w] = head
  canvas[:small.shape[0], w:] = small
  return canvas, w


# ---------------------------------------------------------------- template


def test_template_points_match_edmdbn_scaling():
  np.testing.assert_allclose(
      face.template_points(224),
      [[57.19, 70.65], [163.76, 68.66], [111.10, 132.51]], atol=0.01)


# ---------------------------------------------------------------- landmarks


def test_landmarks_found_on_the_face(head):
  lm = FacePreprocessor().landmarks(head)
  assert lm.shape == (68, 2) and lm.dtype == np.float32
  # dlib's box for this crop is x 93..179, y 83..170; eyes above the nose,
  # left eye corner left of the right one.
  assert np.all((lm[:, 0] > 60) & (lm[:, 0] < 220))
  assert np.all((lm[:, 1] > 60) & (lm[:, 1] < 220))
  assert lm[36, 0] < lm[33, 0] < lm[45, 0]
  assert lm[33, 1] > max(lm[36, 1], lm[45, 1])


def test_align_puts_landmarks_on_the_template(head):
  aligned, affine, moved = face.align_frames([head, head], "astronaut",
                                             image_size=S)
  assert aligned.shape == (2, S, S, 3) and aligned.dtype == np.uint8
  assert affine.shape == (2, 3)
  template = face.template_points(S)
  # The 3 points are mapped exactly by construction ...
  np.testing.assert_allclose(moved[EYES_NOSE], template, atol=1e-3)
  # ... and dlib finds them there again on the aligned image.
  redetected = face.landmarks(aligned[0])
  assert np.abs(redetected[EYES_NOSE] - template).max() < 2.0


def test_rotation_scale_shift_is_undone(head):
  h, w = head.shape[:2]
  m = cv2.getRotationMatrix2D((w / 2, h / 2), 10.0, 0.9)
  m[:, 2] += (12.0, -8.0)
  moved_img = cv2.warpAffine(head, m, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
  a_ref, _, lm_ref = face.align_frames([head], "ref", image_size=S)
  a_mov, affine, _ = face.align_frames([moved_img], "moved", image_size=S)
  # The estimated transform composes with m to about the reference one.
  redetected = face.landmarks(a_mov[0])
  assert np.abs(redetected[EYES_NOSE] - face.template_points(S)).max() < 3.0
  x0, y0, x1, y1 = face.crop_box(lm_ref, S)
  region = (slice(None), slice(y0, y1), slice(x0, x1))
  diff = np.abs(a_ref[region].astype(np.float32) - a_mov[region]).mean()
  # Measured 6.4 (interpolation + landmark jitter); unaligned would be ~80.
  assert diff < 12.0, diff
  unaligned = np.abs(a_ref[region].astype(np.float32)
                     - cv2.resize(moved_img, (S, S))[None][region]).mean()
  assert unaligned > 3 * diff


def test_no_face_names_the_clip():
  blank = np.full((200, 200, 3), 128, np.uint8)
  with pytest.raises(errors.NoFaceError, match=r"subject01/EP02.*upsample=1"):
    FacePreprocessor().process_clip([blank, blank], clip="subject01/EP02")


def test_face_rules(head):
  canvas, split = _two_faces(head)
  with pytest.raises(errors.DataError, match=r"twofaces: 2 faces"):
    FacePreprocessor(face_rule="error").landmarks(canvas, clip="twofaces")
  lm = FacePreprocessor(face_rule="largest").landmarks(canvas)
  assert lm[:, 0].max() < split  # The bigger (left) face.
  lm_first = FacePreprocessor(face_rule="first").landmarks(canvas)
  assert lm_first.shape == (68, 2)
  with pytest.raises(errors.ConfigError):
    FacePreprocessor(face_rule="smallest")


def test_process_clip_shapes(head):
  frames = [head, np.ascontiguousarray(head[:, ::-1]), head]
  out = FacePreprocessor(image_size=64).process_clip(frames, clip="c")
  assert out.shape == (3, 64, 64, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[0], out[2])
  assert np.abs(out[0].astype(int) - out[1]).mean() > 1  # Not all one frame.
  plain = FacePreprocessor(image_size=32, align=False).process_clip(
      [head, cv2.resize(head, (20, 30))], "c")
  assert plain.shape == (2, 32, 32, 3) and plain.dtype == np.uint8
  np.testing.assert_array_equal(
      plain[0], cv2.resize(head, (32, 32), interpolation=cv2.INTER_AREA))


def test_small_crops_show_the_224_px_face_region(head):
  """64 px: aligned and cropped at 224 px (where the authors' 10 px margin
  is stated), then shrunk with area interpolation."""
  aligned, _, lms = face.align_frames([head], "c", image_size=224)
  x0, y0, x1, y1 = face.crop_box(lms, 224)
  crop = np.ascontiguousarray(aligned[0, y0:y1, x0:x1])
  expected = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)
  out = FacePreprocessor(image_size=64).process_clip([head, head], clip="c")
  np.testing.assert_array_equal(out[0], expected)


def test_large_crops_scale_the_margin(head):
  """Above 224 px the crop keeps the same face region: the 10 px margin
  (stated at 224 px) scales with the size."""
  _, _, lms = face.align_frames([head], "c", image_size=224)
  small = np.array(face.crop_box(lms, 224))
  big = np.array(face.crop_box(lms * 2, 448))
  assert np.all(np.abs(big - 2 * small) <= 2), (small, big)


def test_process_clip_rejects_bad_frames(head):
  with pytest.raises(errors.DataError, match="c: frame 1"):
    FacePreprocessor(align=False).process_clip(
        [head, head[..., 0]], clip="c")
  with pytest.raises(errors.DataError, match="no frames"):
    FacePreprocessor(align=False).process_clip([], clip="c")


def test_estimate_apex():
  rng = np.random.default_rng(0)
  base = rng.integers(0, 200, (5, 8, 8, 3)).astype(np.uint8)
  frames = np.repeat(base[:1], 6, axis=0)
  frames[2] += 10
  frames[4] += 30
  frames[5] += 30  # Tie with 4: the earliest wins.
  assert estimate_apex(frames) == 4
  assert estimate_apex(frames[:1]) == 0
  # uint8 wrap-around is avoided (float32 differences).
  assert estimate_apex(np.array([[[200]], [[0]], [[250]]], np.uint8)) == 1


# ---------------------------------------------------------------- io


def test_frame_number_and_numeric_sort(tmp_path):
  assert pio.frame_number("sub01/EP02_01f/img046.jpg") == 46
  assert pio.frame_number(pathlib.Path("reg_image12_3.PNG")) == 3
  with pytest.raises(errors.DataError, match="cover.jpg"):
    pio.frame_number("cover.jpg")
  img = np.zeros((4, 4, 3), np.uint8)
  for name in ("img100.jpg", "img10.JPG", "img2.png", "notes.txt"):
    if name.endswith("txt"):
      (tmp_path / name).write_text("x")
    else:
      _write(tmp_path / name, img)
  names = [p.name for p in pio.list_frames(str(tmp_path))]
  assert names == ["img2.png", "img10.JPG", "img100.jpg"]
  # macOS archives' AppleDouble files are not frames (nor a second family
  # of frames without a prefix, nor a duplicate frame number).
  (tmp_path / "._img2.png").write_bytes(b"\x00\x05\x16\x07")
  (tmp_path / "._3.jpg").write_bytes(b"\x00\x05\x16\x07")
  assert [p.name for p in pio.list_frames(str(tmp_path))] == names
  assert not pio.is_image(tmp_path / "._img2.png")


def test_missing_frames(tmp_path):
  with pytest.raises(errors.MissingFrameError, match="nowhere"):
    pio.list_frames(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  (tmp_path / "empty" / "readme.txt").write_text("no images")
  with pytest.raises(errors.MissingFrameError, match="empty"):
    pio.list_frames(tmp_path / "empty")
  bad = tmp_path / "img1.jpg"
  bad.write_bytes(b"not a jpeg")
  with pytest.raises(errors.MissingFrameError, match="img1.jpg"):
    pio.load_image(bad)
  with pytest.raises(errors.MissingFrameError, match="img9.jpg"):
    pio.load_image(tmp_path / "img9.jpg")


def test_list_frames_refuses_two_frame_families(tmp_path):
  img = np.zeros((4, 4, 3), np.uint8)
  for n in (302845, 302846, 302847):
    _write(tmp_path / f"image{n}.bmp", img)
    _write(tmp_path / f"reg_image{n}.bmp", img)
  with pytest.raises(errors.DataError, match=(
      rf"{tmp_path}: this frame folder holds 2 families.*'image<n>' \(3 "
      r"files.*'reg_image<n>' \(3 files.*\['image', 'reg_image'\].*"
      r"prefix=.*--prefix")):
    pio.list_frames(tmp_path)
  names = [p.name for p in pio.list_frames(tmp_path, prefix="reg_image")]
  assert names == [f"reg_image{n}.bmp" for n in (302845, 302846, 302847)]
  names = [p.name for p in pio.list_frames(tmp_path, prefix="image")]
  assert names == [f"image{n}.bmp" for n in (302845, 302846, 302847)]
  with pytest.raises(errors.MissingFrameError,
                     match=r"no image named 'img<number>'.*'image<n>'"):
    pio.list_frames(tmp_path, prefix="img")
  # Zero padding and mixed suffixes stay one family (SAMM-style names too).
  one = tmp_path / "one"
  for name in ("006_05562.jpg", "006_5563.JPG", "006_05564.png"):
    _write(one / name, img)
  assert [p.name for p in pio.list_frames(one)] == [
      "006_05562.jpg", "006_5563.JPG", "006_05564.png"]


def test_list_frames_refuses_two_files_with_one_number(tmp_path):
  img = np.zeros((4, 4, 3), np.uint8)
  for name in ("img1.jpg", "img2.jpg", "img01.png"):
    _write(tmp_path / name, img)
  with pytest.raises(errors.DataError,
                     match=r"1 frame number\(s\) held by two files "
                           r"\(img01.png and img1.jpg\).*Remove"):
    pio.list_frames(tmp_path)


def test_align_refuses_frames_of_another_size(head):
  big = cv2.resize(head, None, fx=2, fy=2)
  with pytest.raises(errors.DataError,
                     match=r"c: frame 1 is 560x600 px but the onset frame is "
                           r"280x300"):
    FacePreprocessor(image_size=48).process_clip([head, big], clip="c")
  # Resizing only takes each frame as it is (official crops may be one face
  # box per frame); the builders record such a clip as a repair.
  plain = FacePreprocessor(image_size=48, align=False).process_clip(
      [head, big], clip="c")
  assert plain.shape == (2, 48, 48, 3)


def test_load_image_channels(tmp_path):
  grey = (np.arange(12 * 10) % 256).astype(np.uint8).reshape(12, 10)
  cv2.imwrite(str(tmp_path / "g1.png"), grey)
  out = pio.load_image(tmp_path / "g1.png")
  assert out.shape == (12, 10, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[..., 0], grey)
  np.testing.assert_array_equal(out[..., 2], grey)
  rgb = np.zeros((5, 5, 3), np.uint8)
  rgb[..., 0] = 200  # Red.
  _write(tmp_path / "c1.png", rgb)
  np.testing.assert_array_equal(pio.load_image(tmp_path / "c1.png"), rgb)
  bgra = np.zeros((5, 5, 4), np.uint8)
  bgra[..., 2], bgra[..., 3] = 200, 50  # Red, translucent.
  cv2.imwrite(str(tmp_path / "a1.png"), bgra)
  np.testing.assert_array_equal(pio.load_image(tmp_path / "a1.png"), rgb)


def test_read_video(tmp_path):
  path = tmp_path / "clip.avi"
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                           (32, 24))
  assert writer.isOpened()
  for i in range(5):
    frame = np.zeros((24, 32, 3), np.uint8)
    frame[..., 2] = 40 * i  # BGR red channel.
    writer.write(frame)
  writer.release()
  video = read_video(path)
  assert video.shape == (5, 24, 32, 3) and video.dtype == np.uint8
  np.testing.assert_allclose(video[:, 12, 16, 0], [0, 40, 80, 120, 160],
                             atol=4)
  assert video[..., 2].max() < 8
  # A cut-off file: fewer frames decode than its header declares.
  long = tmp_path / "long.avi"
  writer = cv2.VideoWriter(str(long), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                           (32, 24))
  rng = np.random.default_rng(0)
  for _ in range(12):
    writer.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
  writer.release()
  assert read_video(long).shape[0] == 12
  # Up to a clip's offset only: the rest is not decoded.
  np.testing.assert_array_equal(read_video(long, last=3),
                                read_video(long)[:4])
  assert read_video(long, last=40).shape[0] == 12
  cut = tmp_path / "cut.avi"
  cut.write_bytes(long.read_bytes()[:int(long.stat().st_size * 0.6)])
  with pytest.raises(errors.DataError,
                     match=r"cut.avi: only \d+ of the 12 frames"):
    read_video(cut)
  (tmp_path / "broken.avi").write_bytes(b"garbage")
  with pytest.raises(errors.DataError, match="broken.avi"):
    read_video(tmp_path / "broken.avi")
  with pytest.raises(errors.DataError, match="missing.mp4"):
    read_video(tmp_path / "missing.mp4")


# ---------------------------------------------------------------- CLI


def _cli(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, "-m", "experiments.preprocess",
                         *args], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=120, check=False)


def test_cli_tree_with_a_failing_clip(tmp_path, head):
  src, out = tmp_path / "in", tmp_path / "out"
  for n in (1, 2, 10):
    _write(src / "sub01" / "EP01" / f"img{n}.jpg", head)
    _write(src / "sub01" / "blank" / f"img{n}.jpg",
           np.full((120, 120, 3), 128, np.uint8))
  # Frames in a format not read, and a folder of system files only.
  (src / "sub01" / "gifs").mkdir()
  (src / "sub01" / "gifs" / "img1.gif").write_bytes(b"GIF89a")
  (src / "sub01" / "mac").mkdir()
  (src / "sub01" / "mac" / ".DS_Store").write_bytes(b"x")
  (src / "coding.xlsx").write_bytes(b"x")  # an annotation sheet: not frames
  res = _cli(f"--input={src}", f"--output={out}", "--image_size=48",
             "--workers=2")
  assert res.returncode == 1, res.stderr
  assert "FAILED sub01/blank" in res.stdout
  assert ("Passed over 1 folder(s) holding files but no frames" in res.stderr
          and "sub01/gifs (1 file(s): .gif)" in res.stderr), res.stderr
  assert json.loads((out / "report.json").read_text())[
      "folders_without_frames"] == [
          {"folder": "sub01/gifs", "files": 1, "suffixes": [".gif"]}]
  written = sorted(p.name for p in (out / "sub01" / "EP01").iterdir())
  assert written == ["img1.png", "img10.png", "img2.png"]
  crop = pio.load_image(out / "sub01" / "EP01" / "img2.png")
  assert crop.shape == (48, 48, 3)
  assert not (out / "sub01" / "blank").exists()
  report = json.loads((out / "report.json").read_text())
  assert report["num_ok"] == 1 and report["num_failed"] == 1
  entry = report["clips"]["sub01/EP01"]
  assert {k: entry[k] for k in ("status", "source", "frames")} == {
      "status": "ok", "source": str(src / "sub01" / "EP01"), "frames": 3}
  # What an audit of the alignment needs, and the gap in the numbering.
  assert entry["reference_frame"] == "img1.jpg"
  assert entry["missing_frame_numbers"] == list(range(3, 10))
  assert entry["align"] and entry["reference_size"] == 224
  assert np.array(entry["affine"]).shape == (2, 3)
  x0, y0, x1, y1 = entry["crop_box"]
  assert 0 <= x0 < x1 <= 224 and 0 <= y0 < y1 <= 224
  reason = report["clips"]["sub01/blank"]["reason"]
  assert "no face" in reason and "The frame searched: img1.jpg" in reason
  assert (out / "failures.txt").read_text().startswith("sub01/blank\t")
  # --allow_failures: same report, exit 0.
  res = _cli(f"--input={src}", f"--output={out}", "--image_size=48",
             "--noalign", "--allow_failures")
  assert res.returncode == 0, res.stderr
  assert json.loads((out / "report.json").read_text())["num_failed"] == 0


def test_cli_follows_linked_clips_and_removes_stale_frames(tmp_path, head):
  src, out = tmp_path / "in", tmp_path / "out"
  for n in (1, 2, 3):
    _write(src / "sub01" / "EP01" / f"img{n}.jpg", head)
    _write(tmp_path / "elsewhere" / "EP02" / f"img{n}.jpg", head)
  (src / "sub01" / "EP02").symlink_to(tmp_path / "elsewhere" / "EP02")
  (src / "sub01" / "loop").symlink_to(src)  # visited once, no endless walk
  res = _cli(f"--input={src}", f"--output={out}", "--image_size=32",
             "--noalign")
  assert res.returncode == 0, res.stderr
  report = json.loads((out / "report.json").read_text(encoding="utf-8"))
  assert sorted(report["clips"]) == ["sub01/EP01", "sub01/EP02"]
  # The source loses a frame: the rerun leaves no stale output frame.
  (src / "sub01" / "EP01" / "img3.jpg").unlink()
  res = _cli(f"--input={src}", f"--output={out}", "--image_size=32",
             "--noalign")
  assert res.returncode == 0, res.stderr
  assert sorted(p.name for p in (out / "sub01" / "EP01").iterdir()) == [
      "img1.png", "img2.png"]
  report = json.loads((out / "report.json").read_text(encoding="utf-8"))
  assert report["clips"]["sub01/EP01"]["removed_stale_frames"] == 1


def test_cli_video(tmp_path, head):
  path = tmp_path / "clip.avi"
  h, w = head.shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                           (w, h))
  for _ in range(2):
    writer.write(cv2.cvtColor(head, cv2.COLOR_RGB2BGR))
  writer.release()
  res = _cli(f"--input={path}", f"--output={tmp_path / 'out'}",
             "--image_size=32")
  assert res.returncode == 0, res.stderr
  assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
      "frame_00000.png", "frame_00001.png"]


def _flat_clip(folder, head, n=3):
  for i in range(1, n + 1):
    _write(folder / f"img{i}.jpg", head)
  return sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())


def test_cli_refuses_output_overlapping_input(tmp_path, head):
  clip = tmp_path / "tree" / "sub01" / "EP01"
  before = _flat_clip(clip, head)
  tree = tmp_path / "tree"
  (tmp_path / "link").symlink_to(tree, target_is_directory=True)
  refused = {
      # Output is the input (also through a symbolic link).
      (str(clip), str(clip)): "is the input",
      (str(tree), str(tmp_path / "link")): "is the input",
      # Output inside a frame folder of the input.
      (str(clip), str(clip / "aligned")): "a frame folder of the input",
      (str(tree), str(clip / "x" / "y")): "a frame folder of the input",
      (str(tree), str(clip)): "a frame folder of the input",
      # Input inside output.
      (str(clip), str(tmp_path / "tree")): "lies inside --output",
  }
  for (src, out), why in refused.items():
    res = _cli(f"--input={src}", f"--output={out}", "--image_size=32",
               "--noalign")
    assert res.returncode == 2, (src, out, res.stdout)
    assert why in res.stderr and "Choose an --output" in res.stderr, (
        src, out, res.stderr)
  a_file = tmp_path / "crops.txt"
  a_file.write_text("x")
  res = _cli(f"--input={tree}", f"--output={a_file}", "--image_size=32",
             "--noalign")
  assert res.returncode == 2 and "crops.txt is a file" in res.stderr, (
      res.stderr)
  assert sorted((p.name, p.stat().st_mtime_ns)
                for p in clip.iterdir()) == before
  assert not (clip / "aligned").exists() and not (clip / "x").exists()
  assert not list(tree.rglob("*.png")) and not list(tree.rglob("*.json"))
  # An output folder inside the input tree but outside every clip is fine.
  res = _cli(f"--input={tree}", f"--output={tree / 'aligned'}",
             "--image_size=32", "--noalign")
  assert res.returncode == 0, res.stderr
  assert sorted(p.name for p in (tree / "aligned" / "sub01" / "EP01")
                .iterdir()) == ["img1.png", "img2.png", "img3.png"]


def test_cli_two_frame_families_need_a_prefix(tmp_path, head):
  clip = tmp_path / "in" / "s1_ne_01"
  for n in (302845, 302846):
    _write(clip / f"image{n}.bmp", head)
    _write(clip / f"reg_image{n}.bmp", head)
  res = _cli(f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}",
             "--image_size=32", "--noalign")
  assert res.returncode == 1
  reason = json.loads((tmp_path / "out" / "report.json").read_text())[
      "clips"]["s1_ne_01"]["reason"]
  assert "2 families" in reason and "'image', 'reg_image'" in reason
  assert "--prefix" in reason
  assert not (tmp_path / "out" / "s1_ne_01").exists()
  res = _cli(f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out2'}",
             "--image_size=32", "--noalign", "--prefix=reg_image")
  assert res.returncode == 0, res.stderr
  assert sorted(p.name for p in (tmp_path / "out2" / "s1_ne_01").iterdir()) \
      == ["reg_image302845.png", "reg_image302846.png"]
  report = json.loads((tmp_path / "out2" / "report.json").read_text())
  assert report["prefix"] == "reg_image"
  assert report["clips"]["s1_ne_01"]["frames"] == 2
