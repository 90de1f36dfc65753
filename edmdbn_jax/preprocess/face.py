"""Face detection, OpenFace 3-point alignment and the EDMDBN crop.

Pipeline of one clip (frames[0] is the onset):
  1. dlib HOG frontal detector + 68-point shape predictor on the onset frame.
  2. OpenFace-style 3-point affine (outer eye corners 36, 45 and nose tip 33)
     onto the MINMAX template scaled as in EDMDBN, estimated on the onset and
     applied to every frame (so the motion between frames is preserved).
  3. The authors' crop on the aligned frames: x from landmark 17 to 26 (brow
     ends), y from 10 px above the highest landmark to the chin level (mean y
     of landmarks 5 and 11); the same box for every frame; resize to S x S.

The shape predictor file comes from the PyPI package face_recognition_models
(located without importing it). See third_party/openface/README.md for the
template's source and the model's licence terms.
"""

import functools
import importlib.util
import os
from typing import Sequence

from absl import logging
import cv2
import numpy as np

from edmdbn_jax import errors

# OpenFace (Apache-2.0) MINMAX_TEMPLATE rows 36, 45, 33 (outer eye corners and
# nose tip) in the unit square, i.e. (TEMPLATE - min) / (max - min) of
# openface/align_dlib.py; see third_party/openface/README.md.
OPENFACE_MINMAX = np.array([[0.194157, 0.169267],   # 36: left eye outer
                            [0.788859, 0.158171],   # 45: right eye outer
                            [0.494951, 0.514441]],  # 33: nose tip
                           np.float32)
TEMPLATE_INDICES = (36, 45, 33)
# EDMDBN scaling of the template into an S x S image: 0.8 * S * p + offset.
TEMPLATE_SCALE = 0.8
TEMPLATE_OFFSET = (0.1, 0.18)
# The authors' crop: pixels kept above the highest landmark.
CROP_MARGIN_TOP = 10
# The size the authors' alignment and crop conventions are stated at (the
# paper's 224 px): smaller outputs are aligned and cropped at this size and
# then shrunk (area interpolation), so a 64 px crop shows the same face
# region as a 224 px one, without aliasing from a direct small warp.
REFERENCE_SIZE = 224

FACE_RULES = ("largest", "first", "error")

_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"


def template_points(image_size: int) -> np.ndarray:
  """float32 (3, 2) x, y targets of landmarks 36, 45, 33 in an S x S image."""
  s = float(image_size)
  offset = np.array(TEMPLATE_OFFSET, np.float32) * s
  return (TEMPLATE_SCALE * s * OPENFACE_MINMAX + offset).astype(np.float32)


def predictor_path() -> str:
  """Path of dlib's 68-point model shipped in face_recognition_models."""
  # Not imported: the package's __init__ needs pkg_resources.
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    raise errors.ConfigError(
        "Face alignment needs dlib's 68-point landmark model from the "
        "face_recognition_models package: pip install face_recognition_models"
        " (or pass align=False / --noalign for pre-cropped faces).")
  path = os.path.join(spec.submodule_search_locations[0], "models",
                      _MODEL_FILE)
  if not os.path.isfile(path):
    raise errors.ConfigError(
        f"{path} is missing; reinstall it: pip install --force-reinstall "
        "face_recognition_models")
  return path


@functools.lru_cache(maxsize=None)
def _dlib_models():
  """(detector, predictor), loaded once per process."""
  try:
    import dlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.ConfigError(
        "Face alignment needs dlib: pip install dlib-bin (or dlib).") from e
  return dlib.get_frontal_face_detector(), dlib.shape_predictor(
      predictor_path())


def detect_faces(image: np.ndarray, upsample: int = 0) -> list:
  """dlib rectangles of the faces in an RGB uint8 (H, W, 3) image."""
  detector, _ = _dlib_models()
  return list(detector(np.ascontiguousarray(image, np.uint8), int(upsample)))


def _area(rect) -> int:
  return max(rect.width(), 0) * max(rect.height(), 0)


def landmarks(image: np.ndarray, upsample: int = 0,
              face_rule: str = "largest", clip: str = "image") -> np.ndarray:
  """68 dlib landmarks of the face in an image.

  Args:
    image: uint8 (H, W, 3) RGB.
    upsample: dlib upsampling passes (1 finds faces about half as small).
    face_rule: with several faces, "largest" (largest box), "first" (dlib's
      first detection) or "error" (raise).
    clip: name used in error messages.

  Returns:
    float32 (68, 2) x, y pixel coordinates.

  Raises:
    NoFaceError: no face found.
    DataError: several faces and face_rule="error".
    ConfigError: unknown face_rule or the model is not installed.
  """
  if face_rule not in FACE_RULES:
    raise errors.ConfigError(
        f"face_rule={face_rule!r}; expected one of {FACE_RULES}.")
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[2] != 3:
    raise errors.DataError(
        f"{clip}: expected an (H, W, 3) RGB image, got shape {image.shape}.")
  faces = detect_faces(image, upsample)
  if not faces:
    raise errors.NoFaceError(
        f"{clip}: no face found in the frame the alignment is estimated on "
        f"(the clip's first; {image.shape[1]}x{image.shape[0]} px, "
        f"upsample={upsample}); try "
        f"upsample={upsample + 1} (--upsample={upsample + 1} on the command "
        "line) for small faces, or check the frames "
        "(a face must be visible and roughly frontal).")
  if len(faces) > 1 and face_rule == "error":
    raise errors.DataError(
        f"{clip}: {len(faces)} faces found in the onset frame and "
        "face_rule='error'; crop the frames to one face or use "
        "face_rule='largest'.")
  if face_rule == "largest":
    # max keeps the first of equal areas.
    face = max(faces, key=_area)
  else:
    face = faces[0]
  _, predictor = _dlib_models()
  shape = predictor(np.ascontiguousarray(image, np.uint8), face)
  return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)],
                  np.float32)


def _check_frames(frames, clip) -> list[np.ndarray]:
  frames = [np.asarray(f) for f in frames]
  if not frames:
    raise errors.DataError(f"{clip}: the clip has no frames.")
  for i, f in enumerate(frames):
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
      raise errors.DataError(
          f"{clip}: frame {i} has shape {f.shape} dtype {f.dtype}; expected "
          "uint8 (H, W, 3) RGB.")
  return frames


def align_frames(frames: Sequence[np.ndarray], clip: str = "clip",
                 image_size: int = 224, upsample: int = 0,
                 face_rule: str = "largest"
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """OpenFace 3-point alignment estimated on the onset, applied to all frames.

  Args:
    frames: N uint8 (H, W, 3) RGB frames of one size (the transform found
      on the onset is applied to every frame); frames[0] is the onset.
    clip: name used in error messages.
    image_size: S, side of the aligned images.
    upsample: dlib upsampling passes.
    face_rule: see `landmarks`.

  Returns:
    aligned: uint8 (N, S, S, 3), uncropped.
    affine: float64 (2, 3) onset-image -> aligned-image transform.
    landmarks_aligned: float32 (68, 2) onset landmarks mapped by `affine`.
  """
  frames = _check_frames(frames, clip)
  for i, f in enumerate(frames):
    if f.shape != frames[0].shape:
      raise errors.DataError(
          f"{clip}: frame {i} is {f.shape[1]}x{f.shape[0]} px but the onset "
          f"frame is {frames[0].shape[1]}x{frames[0].shape[0]}; the onset's "
          "alignment applies to every frame only if all have its size. "
          "Re-extract the clip's frames at one size.")
  points = landmarks(frames[0], upsample=upsample, face_rule=face_rule,
                     clip=clip)
  src = points[list(TEMPLATE_INDICES)].astype(np.float32)
  dst = template_points(image_size)
  affine = cv2.getAffineTransform(src, dst)
  if not np.all(np.isfinite(affine)):
    raise errors.DataError(
        f"{clip}: the onset landmarks are degenerate (eye corners and nose "
        "collinear); check the onset frame.")
  s = int(image_size)
  aligned = np.stack([
      cv2.warpAffine(f, affine, (s, s), flags=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE) for f in frames])
  moved = points @ affine[:, :2].T + affine[:, 2]
  return aligned, affine, moved.astype(np.float32)


def crop_box(landmarks_aligned: np.ndarray, image_size: int,
             clip: str = "clip") -> tuple[int, int, int, int]:
  """The authors' crop (x0, y0, x1, y1), end-exclusive, clamped to S x S.

  x from landmark 17 to 26 (brow ends); y from CROP_MARGIN_TOP px (at 224 px;
  scaled with the image size, so every size shows the same region) above the
  highest landmark to the mean y of landmarks 5 and 11 (chin level).
  """
  p = np.asarray(landmarks_aligned, np.float64)
  s = int(image_size)
  x0 = int(np.floor(p[17, 0]))
  x1 = int(np.ceil(p[26, 0]))
  margin = int(round(CROP_MARGIN_TOP * s / REFERENCE_SIZE))
  y0 = int(np.floor(p[:, 1].min())) - margin
  y1 = int(np.ceil((p[5, 1] + p[11, 1]) / 2))
  x0, y0 = max(x0, 0), max(y0, 0)
  x1, y1 = min(x1, s), min(y1, s)
  if x1 - x0 < 2 or y1 - y0 < 2:
    raise errors.DataError(
        f"{clip}: the face crop degenerates to x {x0}..{x1}, y {y0}..{y1} "
        "after alignment (landmarks misplaced); check the onset frame or use "
        "align=False for pre-cropped faces.")
  return x0, y0, x1, y1


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  h, w = image.shape[:2]
  if (h, w) == (size, size):
    return image
  shrink = h > size or w > size
  return cv2.resize(image, (size, size),
                    interpolation=cv2.INTER_AREA if shrink else
                    cv2.INTER_LINEAR)


def estimate_apex(frames: Sequence[np.ndarray]) -> int:
  """Index of the frame most different from frames[0].

  Args:
    frames: N arrays of one shape (e.g. uint8 (H, W, 3)).

  Returns:
    argmax_i mean |frames[i] - frames[0]| (float32), earliest on ties; 0 for a
    single frame.
  """
  if len(frames) == 0:  # pylint: disable=g-explicit-length-test
    raise errors.DataError("estimate_apex: the clip has no frames.")
  onset = np.asarray(frames[0], np.float32)
  diffs = []
  for i, f in enumerate(frames):
    f = np.asarray(f, np.float32)
    if f.shape != onset.shape:
      raise errors.DataError(
          f"estimate_apex: frame {i} has shape {f.shape}, onset {onset.shape}.")
    diffs.append(float(np.mean(np.abs(f - onset))))
  return int(np.argmax(diffs))


class FacePreprocessor:
  """Turns the raw frames of a clip into S x S face crops.

  Attributes:
    image_size: S.
    align: detect + align + crop (True) or only resize (False; for datasets
      that ship official face crops).
    upsample: dlib upsampling passes for small faces.
    face_rule: "largest" | "first" | "error" with several faces.
  """

  def __init__(self, image_size: int = 224, align: bool = True,
               upsample: int = 0, face_rule: str = "largest"):
    if int(image_size) < 8:
      raise errors.ConfigError(f"image_size={image_size}; expected >= 8.")
    if face_rule not in FACE_RULES:
      raise errors.ConfigError(
          f"face_rule={face_rule!r}; expected one of {FACE_RULES}.")
    if int(upsample) < 0:
      raise errors.ConfigError(f"upsample={upsample}; expected >= 0.")
    self.image_size = int(image_size)
    self.align = bool(align)
    self.upsample = int(upsample)
    self.face_rule = face_rule
    if self.align:
      _dlib_models()  # Fail early (ConfigError) if dlib/the model is missing.

  def landmarks(self, image: np.ndarray, clip: str = "image") -> np.ndarray:
    """float32 (68, 2) landmarks of the face in uint8 (H, W, 3) RGB."""
    return landmarks(image, upsample=self.upsample, face_rule=self.face_rule,
                     clip=clip)

  def align_frames(self, frames: Sequence[np.ndarray], clip: str = "clip"):
    """See module-level `align_frames` (aligned (N,S,S,3), affine, lms)."""
    return align_frames(frames, clip, image_size=self.image_size,
                        upsample=self.upsample, face_rule=self.face_rule)

  def process_clip(self, frames: Sequence[np.ndarray],
                   clip: str = "clip") -> np.ndarray:
    """Face crops of a clip.

    Args:
      frames: N uint8 (H, W, 3) RGB frames, frames[0] the onset.
      clip: name used in error messages.

    Returns:
      uint8 (N, S, S, 3).

    Raises:
      NoFaceError: no face in the onset frame (align=True).
      DataError: bad frames, several faces with face_rule="error", or a
        degenerate crop.
    """
    return self.process_clip_with_info(frames, clip)[0]

  def process_clip_with_info(self, frames: Sequence[np.ndarray],
                             clip: str = "clip") -> tuple[np.ndarray, dict]:
    """`process_clip`, and how it was done (JSON-ready), for audits.

    Returns:
      (crops uint8 (N, S, S, 3), info): info holds 'align'; when aligning
      also 'reference_size' (the size aligned and cropped at), 'affine'
      (2 x 3, onset image -> aligned image, estimated on frames[0]) and
      'crop_box' ([x0, y0, x1, y1] in the aligned image, end-exclusive).
    """
    s = self.image_size
    if not self.align:
      frames = _check_frames(frames, clip)
      h, w = frames[0].shape[:2]
      if h != w:
        logging.log_first_n(
            logging.WARNING,
            "%s: %dx%d frames are resized to %dx%d without face alignment, "
            "so the face is stretched; resizing only is meant for frames "
            "that are already square face crops (said once per process).", 1,
            clip, w, h, s, s)
      return np.stack([_resize(f, s) for f in frames]), {"align": False}
    ref = max(s, REFERENCE_SIZE)
    aligned, affine, moved = align_frames(frames, clip, image_size=ref,
                                          upsample=self.upsample,
                                          face_rule=self.face_rule)
    x0, y0, x1, y1 = crop_box(moved, ref, clip)
    crops = np.stack([_resize(np.ascontiguousarray(f[y0:y1, x0:x1]), s)
                      for f in aligned])
    info = {"align": True, "reference_size": int(ref),
            "affine": np.round(np.asarray(affine, np.float64), 6).tolist(),
            "crop_box": [int(x0), int(y0), int(x1), int(y1)]}
    return crops, info
