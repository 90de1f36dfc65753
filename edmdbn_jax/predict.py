"""Prediction on new material: a video file or a folder of frames.

  from edmdbn_jax import predict
  p = predict.Predictor("runs/casme2_5class_paper_final/final_model")
  result = p.predict_video("clip.mp4")            # keyframes estimated
  result = p.predict_frames("frames/", onset=46, apex=59, offset=86)
  print(result.probabilities, result.predicted)

Steps: read the frames (OpenCV), pick keyframes (given, or onset = first
frame, offset = last, apex = the frame most different from onset; for a
SMIC-HS model, the apex rule its training clips used), make them what the
model's training frames were (`plan_inputs`: greyscale if those were,
face-aligned with the toolkit's preprocessing, the transform found on the
onset frame applied to every frame, or only resized), store an even
subsample of at most as many frames from onset to offset as the training
build stored (with the keyframes exactly, as the dataset builders do), apply
the model's temporal normalisation and run it. Class activation maps
(HiResCAM on the fused features, edmdbn_jax.explain) come with every
prediction.
"""

import dataclasses
import os
from typing import List, Optional, Sequence, Tuple

import cv2
import jax
from absl import logging
import numpy as np

from edmdbn_jax import checkpoints
from edmdbn_jax import errors
from edmdbn_jax import explain
from edmdbn_jax.data import temporal
from edmdbn_jax.datasets.common import choose_stored_frames
from edmdbn_jax.datasets.common import middle_frame
from edmdbn_jax.datasets.features import DEFAULT_MAX_STORED_FRAMES
from edmdbn_jax.preprocess import estimate_apex


@dataclasses.dataclass
class Prediction:
  class_names: Tuple[str, ...]
  probabilities: np.ndarray          # (K,)
  onset: int                         # keyframes as positions in the input
  apex: int
  offset: int
  apex_estimated: bool
  cams: np.ndarray                   # (K, h, w) HiResCAM on the fused map
  onset_frame: np.ndarray            # aligned uint8 (S, S, 3)
  apex_frame: np.ndarray
  inputs: Optional["InputPlan"] = None  # how the frames were prepared
  # Frame numbers absent between the onset and offset of a frame folder
  # (kept as found, as the dataset builders do); None for a video.
  missing_frame_numbers: Optional[List[int]] = None

  @property
  def predicted(self) -> str:
    return self.class_names[int(np.argmax(self.probabilities))]

  def as_dict(self):
    return {"predicted": self.predicted,
            "probabilities": {c: float(p) for c, p in
                              zip(self.class_names, self.probabilities)},
            "onset": self.onset, "apex": self.apex, "offset": self.offset,
            "apex_estimated": self.apex_estimated,
            **({"missing_frame_numbers": self.missing_frame_numbers}
               if self.missing_frame_numbers is not None else {}),
            **({"inputs": dataclasses.asdict(self.inputs)}
               if self.inputs is not None else {})}

  def save_heatmap(self, path: str, title: str = ""):
    """Writes the map panel (onset, apex, motion, one map per class);
    `title` (e.g. the model directory) leads the panel's own caption."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    apex = f"apex {self.apex}" + (" (estimated)" if self.apex_estimated
                                  else "")
    caption = (f"predicted {self.predicted}; maps on the fused features; "
               f"onset {self.onset}, {apex}, offset {self.offset} (input "
               "positions, from 0)")
    explain.save_panel(path, self.onset_frame, self.apex_frame, self.cams,
                       self.class_names, self.probabilities,
                       title=f"{title}\n{caption}" if title else caption)


def stored_positions(onset: int, apex: int, offset: int,
                     max_frames: int = DEFAULT_MAX_STORED_FRAMES
                     ) -> np.ndarray:
  """Positions of [onset, offset] a clip keeps, as the dataset builders do.

  An even subsample of at most `max_frames` frames that always holds the
  onset, apex and offset (datasets.common.choose_stored_frames).
  """
  kept, _ = choose_stored_frames(list(range(onset, offset + 1)), apex,
                                 max_frames)
  return np.asarray(kept)


@dataclasses.dataclass(frozen=True)
class InputPlan:
  """How new frames are made what the model's training frames were.

  align: detect and align the face (else only resize); greyscale: convert
  to grey first (the training frames all were, e.g. SAMM);
  max_stored_frames: the most frames of [onset, offset] kept, as the
  training build kept; apex_rule: without a given apex, 'max_diff' (the
  frame most different from the onset), 'middle' (SMIC-HS models trained
  with smic_apex='middle') or 'max_diff_stored' (smic_apex='max_diff': the
  most different of the stored frames); notes: what the user should know
  (logged as warnings by `Predictor`, so on stderr from experiments.predict,
  and written with --json).
  """
  align: bool
  greyscale: bool
  max_stored_frames: int
  apex_rule: str
  notes: Tuple[str, ...] = ()


def _sources(record) -> str:
  return "; ".join(f"{ds}: {src}" for ds, src in
                   sorted((record.get("frame_sources") or {}).items()))


def plan_inputs(record, config, align: Optional[bool] = None,
                model_dir: str = "the model") -> InputPlan:
  """The `InputPlan` for a model's recorded training preprocessing.

  Args:
    record: the model's `provenance['preprocessing']` (train.py writes
      `Clips.preprocessing`), None when it records none (a model saved
      before this was recorded, or imported weights).
    config: the model's config (its dataset and smic_apex rule).
    align: True / False as the user asked; None follows the model.
    model_dir: for messages.

  Raises:
    ConfigError: align=None and the model's training frames were not all
      face-aligned by the toolkit: only the user knows whether the new
      frames are crops made like those, so they must say.
  """
  notes = []
  alignment = (record or {}).get("alignment")
  if alignment is None:
    if align is None:
      align = True
      why = ("a model saved before this toolkit recorded it, or imported "
             "weights" if record is None else
             "its training build predates the record; rebuilding the "
             "dataset with --overwrite and retraining records it")
      notes.append(
          f"{model_dir} does not record whether its training frames were "
          f"face-aligned ({why}): the face is detected and aligned; pass "
          "--noalign (align=False) if the frames are already face crops "
          "like its training data"
          + (f" (its frame sources: {_sources(record)})"
             if record and record.get("frame_sources") else "") + ".")
  else:
    aligned = sum(a.get("aligned", 0) for a in alignment.values())
    unaligned = sum(a.get("not_aligned", 0) for a in alignment.values())
    sources = _sources(record)
    if align is None:
      if aligned and not unaligned:
        align = True
      elif unaligned and not aligned:
        raise errors.ConfigError(
            f"{model_dir} was trained on frames this toolkit did not align "
            f"({sources}). Pass --noalign (align=False) if the new frames "
            "are face crops made the same way (e.g. the dataset's own "
            "crops), or --align (align=True) to detect and align the face "
            "with the toolkit's aligner; its crops are framed differently "
            "from those the model was trained on.")
      else:
        raise errors.ConfigError(
            f"{model_dir} was trained on frames of which {aligned} clips "
            f"were face-aligned by this toolkit and {unaligned} only resized "
            f"({sources}). Pass --align (align=True) or --noalign "
            "(align=False) to say which the new frames need.")
    elif align and not aligned:
      notes.append(
          f"--align: {model_dir}'s training frames were not aligned by this "
          f"toolkit ({sources}); its aligned crops are framed differently.")
    elif not align and not unaligned:
      notes.append(
          f"--noalign: {model_dir}'s training frames were all face-aligned "
          "by this toolkit; the new frames are only resized, which matches "
          "only if they are such crops already.")
  grey = (record or {}).get("greyscale") or {}
  greyscale = bool(grey) and all(grey.values())
  if greyscale:
    notes.append(f"{model_dir} was trained on greyscale frames "
                 f"({', '.join(sorted(grey))}): the frames are converted to "
                 "grey.")
  if config.data.get("dataset") == "smic_hs":
    rule = ("middle" if config.data.get("smic_apex", "middle") == "middle"
            else "max_diff_stored")
  else:
    rule = "max_diff"
  return InputPlan(
      align=bool(align), greyscale=greyscale,
      max_stored_frames=int((record or {}).get(
          "max_stored_frames", DEFAULT_MAX_STORED_FRAMES)),
      apex_rule=rule, notes=tuple(notes))


def check_keyframes(n: int, onset, apex, offset, source: str,
                    numbers=None):
  """Validates keyframe positions in a sequence of n frames.

  `numbers`: the frame number of each position (a frame folder), so that
  messages quote the numbers the user typed, not positions.
  """
  show = (lambda v: numbers[v]) if numbers is not None else (lambda v: v)
  if n < 2:
    raise errors.DataError(
        f"{source}: {n} frame(s); a micro-expression clip needs at least 2 "
        "(onset and apex).")
  for name, v in (("onset", onset), ("apex", apex), ("offset", offset)):
    if v is not None and not 0 <= v < n:
      raise errors.DataError(
          f"{source}: --{name}={v} is outside the clip's {n} frames "
          f"(0..{n - 1}).")
  o = 0 if onset is None else onset
  f = n - 1 if offset is None else offset
  if not o < f:
    raise errors.DataError(
        f"{source}: onset {show(o)} must come before offset {show(f)}.")
  if apex is not None and not o < apex <= f:
    raise errors.DataError(
        f"{source}: keyframes out of order (onset {show(o)}, apex "
        f"{show(apex)}, offset {show(f)}); need onset < apex <= offset.")
  return o, f


class Predictor:
  """A model directory loaded once, applied to many clips."""

  def __init__(self, model_dir: str,
               expected_classes: Optional[Sequence[str]] = None,
               align: Optional[bool] = None, upsample: int = 0):
    """Loads `model_dir`.

    align: None (default) prepares the frames as the model's training
    frames were (`plan_inputs`; a ConfigError asks to choose when only the
    user can); True / False detect and align the face or only resize.
    """
    (self.model, self.variables, self.config, self.class_names,
     meta) = checkpoints.load_model_and_meta(model_dir)
    record = meta.get("provenance", {}).get("preprocessing")
    self.inputs = plan_inputs(record, self.config, align, model_dir)
    for note in self.inputs.notes:
      logging.warning("%s", note)
    if expected_classes is not None:
      exp = tuple(expected_classes)
      if exp and all(e.isdigit() for e in exp) and len(exp) == 1:
        if int(exp[0]) != len(self.class_names):
          raise errors.CheckpointError(
              f"{model_dir} is a {len(self.class_names)}-class model "
              f"{self.class_names}, not {exp[0]}-class.")
      elif tuple(e.lower() for e in exp) != tuple(
          c.lower() for c in self.class_names):
        raise errors.CheckpointError(
            f"{model_dir} predicts {self.class_names}, not {exp}.")
    classes = list(range(len(self.class_names)))

    @jax.jit
    def explain_clip(gathered, weights, keyframe_pos):
      """(1, k, S, S, 3) gathered frames -> HiResCAM on the fused map."""
      inputs = temporal.assemble(gathered, weights, keyframe_pos)
      return explain.gradcam(self.model, self.variables, *inputs,
                             classes=classes)

    # Compiled once, reused for every clip (all clips have the same shapes).
    self._explain = explain_clip
    from edmdbn_jax.preprocess import FacePreprocessor  # pylint: disable=g-import-not-at-top
    self.image_size = int(self.config.data.image_size)
    self.preprocessor = FacePreprocessor(image_size=self.image_size,
                                         align=self.inputs.align,
                                         upsample=upsample)

  def predict_array(self, frames, onset=None, apex=None, offset=None,
                    source: str = "clip", frame_numbers=None) -> Prediction:
    """Predicts one clip given as an array.

    Args:
      frames: uint8 (N, H, W, 3) RGB; keyframes are positions 0..N-1.
      onset, apex, offset: keyframe positions; None: first frame, the
        model's apex rule (`InputPlan.apex_rule`; by default the frame most
        different from the onset, on the aligned face crops), last frame.
      source: name used in error messages.
      frame_numbers: (N,) the frame number of each position (a frame
        folder's file numbers, which may have gaps): the 'uniform' temporal
        mode spaces frames by number, as for the dataset's stored clips.

    Returns:
      A `Prediction` (cams (K, h, w) on the fused map).

    Raises:
      DataError: bad frames or keyframes, a clip without motion.
      NoFaceError: no face in the onset frame (align=True).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
      raise errors.DataError(
          f"{source}: expected uint8 (N, H, W, 3) RGB frames, got "
          f"{frames.dtype} {frames.shape}.")
    o, f = check_keyframes(len(frames), onset, apex, offset, source)
    if frame_numbers is not None and len(frame_numbers) != len(frames):
      raise errors.DataError(
          f"{source}: {len(frame_numbers)} frame numbers for "
          f"{len(frames)} frames.")
    if self.inputs.greyscale:
      frames = np.stack([cv2.cvtColor(
          cv2.cvtColor(fr, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
                         for fr in frames])
    estimated = apex is None
    most = self.inputs.max_stored_frames
    rule = self.inputs.apex_rule
    if estimated and rule == "max_diff":
      # Face first (a video without a face fails with NoFaceError, not as a
      # still image); the apex is then estimated on the aligned crops: the
      # frame most different from the onset.
      aligned = self.preprocessor.process_clip(list(frames[o:f + 1]), source)
      apex = o + estimate_apex(aligned)
      if apex == o:
        raise errors.DataError(
            f"{source}: no frame differs from the onset frame; is this a "
            "still image? Pass --apex.")
      pos = stored_positions(o, apex, f, most)
      aligned = aligned[pos - o]
    else:
      if estimated:
        # A SMIC-HS model: its clips have no apex annotation, and training
        # took the middle frame ('middle'), or the stored frame most
        # different from the onset, the frames stored around the middle
        # one ('max_diff_stored'); on a whole video the middle frame need
        # not be near the expression, so pass --apex there.
        apex = o + middle_frame(list(range(f - o + 1)))
      pos = stored_positions(o, apex, f, most)
      aligned = self.preprocessor.process_clip(
          [frames[p] for p in pos], source)
      if estimated and rule == "max_diff_stored":
        apex = int(pos[estimate_apex(aligned)])
        if apex == o:
          raise errors.DataError(
              f"{source}: no stored frame differs from the onset frame; is "
              "this a still image? Pass --apex.")
    where = {int(p): i for i, p in enumerate(pos)}
    t = int(self.config.data.num_frames)
    numbers = (pos if frame_numbers is None
               else np.asarray(frame_numbers)[pos])
    plan = temporal.plan(where[o], where[apex], where[f], len(pos),
                         num_frames=t, mode=self.config.data.temporal,
                         frame_numbers=numbers)
    gathered = aligned[plan.indices][None].astype(np.float32)
    res = self._explain(gathered, plan.weights[None], plan.keyframe_pos[None])
    return Prediction(
        class_names=tuple(self.class_names),
        probabilities=np.asarray(res["probabilities"][0], np.float64),
        onset=o, apex=int(apex), offset=f, apex_estimated=estimated,
        cams=np.asarray(res["cams"][0]), onset_frame=aligned[where[o]],
        apex_frame=aligned[where[apex]], inputs=self.inputs)

  def predict_video(self, path: str, onset=None, apex=None, offset=None):
    """Keyframes are 0-based frame indices of the video."""
    from edmdbn_jax.preprocess import read_video  # pylint: disable=g-import-not-at-top
    # Decoded only up to the last keyframe given, when the offset is given
    # (else the offset is the last frame).
    given = [k for k in (onset, apex, offset) if k is not None]
    last = max(given) if offset is not None and min(given) >= 0 else None
    frames = read_video(path, last=last)
    return self.predict_array(frames, onset, apex, offset, source=path)

  def predict_frames(self, directory: str, onset=None, apex=None,
                     offset=None, prefix: Optional[str] = None):
    """Keyframes are the frame numbers in the file names (as annotations).

    `prefix`: only the frames named `<prefix><number>` (a folder holding two
    families of frames, e.g. SMIC's `image*` and `reg_image*`).
    """
    from edmdbn_jax.preprocess import io  # pylint: disable=g-import-not-at-top
    if os.path.isfile(directory):
      raise errors.DataError(
          f"{directory} is a file; --frames takes a folder of frames (for a "
          "video file use --video).")
    paths = io.list_frames(directory, prefix=prefix)
    numbers = [io.frame_number(p) for p in paths]
    index = {n: i for i, n in enumerate(numbers)}

    def to_pos(name, v):
      if v is None:
        return None
      if v not in index:
        gap = (" falls in a gap of the numbering" if
               numbers[0] < v < numbers[-1] else "")
        raise errors.DataError(
            f"{directory}: no frame numbered {v} for --{name}{gap} (frames "
            f"{numbers[0]}..{numbers[-1]}, {len(numbers)} files).")
      return index[v]

    o, a, f = (to_pos("onset", onset), to_pos("apex", apex),
               to_pos("offset", offset))
    lo = 0 if o is None else o
    hi = len(paths) - 1 if f is None else f
    check_keyframes(len(paths), o, a, f, directory, numbers)
    # Read only what is needed: onset..offset.
    frames = [io.load_image(p) for p in paths[lo:hi + 1]]
    shapes = sorted({fr.shape for fr in frames})
    if len(shapes) != 1:
      raise errors.DataError(
          f"{directory}: the frames change size {shapes}; a clip's frames "
          "must all have one size.")
    frames = np.stack(frames)
    shift = lambda v: None if v is None else v - lo
    pred = self.predict_array(frames, shift(o), shift(a), shift(f),
                              source=directory,
                              frame_numbers=numbers[lo:hi + 1])
    pred.onset = numbers[lo + pred.onset]
    pred.apex = numbers[lo + pred.apex]
    pred.offset = numbers[lo + pred.offset]
    pred.missing_frame_numbers = io.missing_frame_numbers(
        numbers, pred.onset, pred.offset)
    return pred

