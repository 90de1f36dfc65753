"""Reading frames and videos from disk.

Every reader names the offending file or directory in its error, so a user can
fix a broken dataset tree without reading this code.
"""

import os
import pathlib
import re
from typing import Optional, Union

import cv2
import numpy as np

from edmdbn_jax import errors

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# Files operating systems leave in folders (never frames, never clips).
SYSTEM_FILES = ("thumbs.db", "desktop.ini")


def is_system_file(name: str) -> bool:
  """Hidden files (.DS_Store, macOS '._*' copies) and Thumbs.db-like ones."""
  return name.startswith(".") or name.lower() in SYSTEM_FILES

def missing_frame_numbers(numbers, first: int, last: int) -> list[int]:
  """The frame numbers in [first, last] that `numbers` lacks, sorted."""
  return sorted(set(range(first, last + 1)) - set(numbers))


_DIGITS = re.compile(r"\d+")


def _path(path: PathLike) -> pathlib.Path:
  """str, pathlib or etils.epath path -> pathlib.Path."""
  return pathlib.Path(os.fspath(path) if hasattr(path, "__fspath__")
                      else str(path))


def is_image(path: PathLike) -> bool:
  """Whether the file name has one of IMAGE_SUFFIXES (case-insensitive) and
  is not hidden.

  Hidden names are never frames: archives made on macOS carry an AppleDouble
  `._<name>` beside every file (`._img46.jpg`, a few hundred bytes of
  metadata), which would otherwise pass for a second family of frames or a
  duplicate frame number.
  """
  p = _path(path)
  return not is_system_file(p.name) and p.suffix.lower() in IMAGE_SUFFIXES


def frame_number(path: PathLike) -> int:
  """The last run of digits in the file stem: 'img046.jpg' -> 46.

  Args:
    path: a frame file name or path.

  Returns:
    The frame number.

  Raises:
    DataError: the stem holds no digits.
  """
  stem = _path(path).stem
  runs = _DIGITS.findall(stem)
  if not runs:
    raise errors.DataError(
        f"{path}: the file name has no frame number (expected digits in the "
        "name, e.g. img46.jpg); rename the frames or remove the file.")
  return int(runs[-1])


def frame_family(path: PathLike) -> str:
  """The file-name pattern of a frame: 'reg_image302845.bmp' -> 'reg_image<n>'.

  The last run of digits (the frame number, see `frame_number`) becomes
  '<n>'; the rest of the stem is kept. Frames of one sequence share a family;
  a folder holding two families (SMIC's `image*` and `reg_image*`) holds two
  sequences.

  Raises:
    DataError: the stem holds no digits.
  """
  stem = _path(path).stem
  runs = list(_DIGITS.finditer(stem))
  if not runs:
    frame_number(path)  # Raises the DataError naming the file.
  last = runs[-1]
  return f"{stem[:last.start()]}<n>{stem[last.end():]}"


def list_frames(directory: PathLike,
                prefix: Optional[str] = None) -> list[pathlib.Path]:
  """The image files of a clip folder, sorted numerically by frame number.

  img2 < img10 < img100 (a plain string sort would give img10 < img100 < img2).

  Args:
    directory: a folder of frames.
    prefix: None: every image, which must all be named alike (one family,
      see `frame_family`; 'img1.jpg' and 'img02.png' are one family,
      'image1.bmp' and 'reg_image1.bmp' are two). A string: only the images
      named `<prefix><digits>` (e.g. 'reg_image' or 'image'); the others are
      not frames of this clip.

  Returns:
    Paths of the images (suffixes in IMAGE_SUFFIXES, any case).

  Raises:
    MissingFrameError: the folder is missing or holds no images (no images
      named `<prefix><digits>` when `prefix` is given).
    DataError: an image file name has no frame number, or (prefix None) the
      folder holds more than one family of frames, naming the folder and the
      families found.
  """
  d = _path(directory)
  if not d.is_dir():
    raise errors.MissingFrameError(
        f"{directory}: frame folder not found; check the dataset path and "
        "that the archive was fully extracted.")
  paths = [p for p in d.iterdir() if p.is_file() and is_image(p)]
  if not paths:
    raise errors.MissingFrameError(
        f"{directory}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this "
        "frame folder; check that the archive was fully extracted.")
  if prefix is not None:
    pattern = re.compile(re.escape(prefix) + r"\d+")
    chosen = [p for p in paths if pattern.fullmatch(p.stem)]
    if not chosen:
      found = sorted({frame_family(p) for p in paths
                      if _DIGITS.search(p.stem)})
      raise errors.MissingFrameError(
          f"{directory}: no image named '{prefix}<number>' in this frame "
          f"folder (it holds {found or 'images without frame numbers'}); "
          "check the prefix and that the archive was fully extracted.")
    paths = chosen
  else:
    families = {}
    for p in paths:
      families.setdefault(frame_family(p), []).append(p)
    if len(families) > 1:
      listed = ", ".join(f"{f!r} ({len(v)} files, e.g. {sorted(v)[0].name})"
                         for f, v in sorted(families.items()))
      prefixes = sorted({f.split("<n>")[0] for f in families})
      raise errors.DataError(
          f"{directory}: this frame folder holds {len(families)} families of "
          f"frames: {listed}. Taken together they would interleave into one "
          "wrong clip. Choose one by its file-name prefix (one of "
          f"{prefixes}): list_frames(..., prefix=...), or --prefix for "
          "experiments.preprocess and experiments.predict; or move the other "
          "frames out of the folder.")
  paths = sorted(paths, key=lambda p: (frame_number(p), p.name))
  clashes = [(a.name, b.name) for a, b in zip(paths, paths[1:])
             if frame_number(a) == frame_number(b)]
  if clashes:
    listed = ", ".join(f"{a} and {b}" for a, b in clashes[:5])
    raise errors.DataError(
        f"{directory}: {len(clashes)} frame number(s) held by two files "
        f"({listed}); a clip needs one file per frame. Remove the extra "
        "files.")
  return paths


def load_image(path: PathLike) -> np.ndarray:
  """Reads an image as RGB.

  Args:
    path: an image file (any format OpenCV reads).

  Returns:
    uint8 (H, W, 3) RGB; greyscale is repeated to 3 channels, alpha dropped,
    16-bit images scaled to 8 bits.

  Raises:
    MissingFrameError: the file is missing or cannot be decoded.
  """
  p = _path(path)
  if not p.is_file():
    raise errors.MissingFrameError(
        f"{path}: frame file not found; check the dataset tree.")
  # np.fromfile + imdecode copes with non-ASCII paths on every platform.
  try:
    buf = np.fromfile(str(p), dtype=np.uint8)
  except OSError as e:
    raise errors.MissingFrameError(f"{path}: cannot read the file ({e}).") \
        from e
  image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
  if image is None:
    raise errors.MissingFrameError(
        f"{path}: OpenCV cannot decode this image (truncated or not an "
        "image); re-extract the dataset or remove the file.")
  if image.dtype == np.uint16:
    image = (image / 257.0).round().astype(np.uint8)
  elif image.dtype != np.uint8:
    raise errors.MissingFrameError(
        f"{path}: unsupported pixel type {image.dtype}; convert the frames "
        "to 8-bit images.")
  if image.ndim == 2:
    image = image[..., None]
  channels = image.shape[2]
  if channels == 1:
    image = np.repeat(image, 3, axis=2)
  elif channels == 3:
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
  elif channels == 4:
    image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
  else:
    raise errors.MissingFrameError(
        f"{path}: image has {channels} channels; expected 1, 3 or 4.")
  return np.ascontiguousarray(image)


def read_video(path: PathLike, last: Optional[int] = None) -> np.ndarray:
  """Reads the frames of a video with OpenCV.

  Args:
    path: a video file (any container/codec the OpenCV build decodes).
    last: stop after the frame of this 0-based index (a clip's offset: a
      long recording is not decoded, nor held in memory, past it); None:
      every frame.

  Returns:
    uint8 (N, H, W, 3) RGB frames.

  Raises:
    DataError: the file is missing, cannot be opened or yields no frames.
  """
  p = _path(path)
  if p.is_dir():
    raise errors.DataError(
        f"{path} is a folder, not a video file; a folder of frames is read "
        "as frames (experiments.predict --frames).")
  if not p.is_file():
    raise errors.DataError(f"{path}: video file not found.")
  cap = cv2.VideoCapture(str(p))
  try:
    if not cap.isOpened():
      raise errors.DataError(
          f"{path}: OpenCV cannot open this video; convert it to MJPG .avi "
          "or H.264 .mp4, or extract its frames into a folder.")
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    frames = []
    stopped = False
    while True:
      if last is not None and len(frames) > last:
        stopped = True
        break
      ok, frame = cap.read()
      if not ok:
        break
      if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
      frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
  finally:
    cap.release()
  if not frames:
    raise errors.DataError(
        f"{path}: the video yields no frames (empty or unsupported codec); "
        "convert it or extract its frames into a folder.")
  if not stopped and 0 < len(frames) < declared:
    raise errors.DataError(
        f"{path}: only {len(frames)} of the {declared} frames its header "
        "declares could be decoded (a cut-off or damaged file). Re-download "
        "or re-encode it; if it plays in full, extract its frames into a "
        "folder (e.g. ffmpeg -i VIDEO DIR/img%d.png) and use the folder.")
  shapes = {f.shape for f in frames}
  if len(shapes) != 1:
    raise errors.DataError(f"{path}: frames change size {sorted(shapes)}.")
  return np.stack(frames)
