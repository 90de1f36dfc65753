"""A built dataset as device-ready arrays: `load_clips(...) -> Clips`.

Micro-expression datasets are small (a few hundred clips), so the trainer
keeps every clip's gathered frames in one uint8 array on device. Each clip
contributes the k stored frames its `TemporalPlan` needs, the (T+1, k)
weights that mix them into T+1 frames and the positions of its onset and apex
(see edmdbn_jax/data/temporal.py).
"""

import dataclasses
from typing import Any, Dict, Optional, Tuple

from absl import logging
import numpy as np
from tqdm.auto import tqdm

from edmdbn_jax import errors
from edmdbn_jax.data import temporal
from edmdbn_jax.preprocess import estimate_apex


@dataclasses.dataclass
class Clips:
  """N clips of a dataset, ready for the device.

  frames: uint8 (N, k, S, S, 3) gathered frames; weights: float32 (N, T+1, k);
  keyframe_pos: int32 (N, 2); labels: int32 (N,); subjects, clips, datasets:
  str arrays (N,); class_names; name (the dataset).
  """
  frames: np.ndarray
  weights: np.ndarray
  keyframe_pos: np.ndarray
  labels: np.ndarray
  subjects: np.ndarray
  clips: np.ndarray
  datasets: np.ndarray
  class_names: Tuple[str, ...]
  name: str
  # What the stored frames went through, recorded with every model trained
  # on them so that prediction repeats it: `greyscale` (per source dataset,
  # whether every frame has three equal channels, e.g. SAMM) and, from the
  # builder, `frame_sources`, `alignment` and `max_stored_frames`
  # (ClipBuilder.preprocessing).
  preprocessing: Optional[Dict[str, Any]] = None

  def __len__(self):
    return len(self.labels)

  def subset(self, indices) -> "Clips":
    i = np.asarray(indices)
    return dataclasses.replace(
        self, frames=self.frames[i], weights=self.weights[i],
        keyframe_pos=self.keyframe_pos[i], labels=self.labels[i],
        subjects=self.subjects[i], clips=self.clips[i],
        datasets=self.datasets[i])

  def subject_list(self):
    return sorted(set(self.subjects.tolist()))

  def class_counts(self):
    counts = np.bincount(self.labels, minlength=len(self.class_names))
    return dict(zip(self.class_names, counts.tolist()))


def _text(v) -> str:
  return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def max_diff_apex(frames: np.ndarray, onset: int, offset: int) -> int:
  """Stored frame in [onset, offset] most different from the onset frame."""
  return onset + estimate_apex(frames[onset:offset + 1])


def from_examples(examples, class_names, name, *, num_frames=8,
                  temporal_mode="keyframes", smic_apex="middle",
                  progress=True) -> Clips:
  """Clips from an iterable of dataset examples (dicts of numpy values)."""
  if temporal_mode not in temporal.MODES:
    raise errors.ConfigError(
        f"temporal={temporal_mode!r}: use one of {temporal.MODES}.")
  if smic_apex not in ("middle", "max_diff"):
    raise errors.ConfigError(
        f"smic_apex={smic_apex!r}: use middle | max_diff.")
  frames, weights, kpos, labels, subjects, clips, sources = ([] for _ in
                                                             range(7))
  for ex in tqdm(examples, desc=f"loading {name}", disable=not progress,
                 unit="clip"):
    stored = np.asarray(ex["frames"])
    onset, apex, offset = (int(ex["onset"]), int(ex["apex"]),
                           int(ex["offset"]))
    source = _text(ex["dataset"])
    if source == "smic_hs" and smic_apex == "max_diff":
      apex = max_diff_apex(stored, onset, offset)
    clip = _text(ex["clip"])
    try:
      p = temporal.plan(onset, apex, offset, len(stored), num_frames,
                        temporal_mode, frame_numbers=ex.get("frame_numbers"))
    except errors.DataError as e:
      raise errors.DataError(f"{name} clip {clip}: {e}") from e
    frames.append(stored[p.indices])
    weights.append(p.weights)
    kpos.append(p.keyframe_pos)
    labels.append(int(ex["label"]))
    subjects.append(_text(ex["subject"]))
    clips.append(clip)
    sources.append(source)
  if not labels:
    raise errors.DataError(f"Dataset {name} has no clips.")
  # A stable order, (subject, clip), whatever order the files hold.
  order = sorted(range(len(labels)), key=lambda i: (subjects[i], clips[i]))
  frames, weights, kpos, labels, subjects, clips, sources = (
      [seq[i] for i in order] for seq in (frames, weights, kpos, labels,
                                          subjects, clips, sources))
  frames = np.stack(frames).astype(np.uint8)
  sources = np.asarray(sources)
  grey = {ds: True for ds in sorted(set(sources.tolist()))}
  for f, ds in zip(frames, sources):
    if grey[ds] and not (np.array_equal(f[..., 0], f[..., 1])
                         and np.array_equal(f[..., 0], f[..., 2])):
      grey[ds] = False
  return Clips(
      frames=frames,
      weights=np.stack(weights).astype(np.float32),
      keyframe_pos=np.stack(kpos).astype(np.int32),
      labels=np.asarray(labels, np.int32), subjects=np.asarray(subjects),
      clips=np.asarray(clips), datasets=sources,
      class_names=tuple(class_names), name=name,
      preprocessing={"greyscale": grey})


def load_clips(name: str, *, num_classes: int, image_size: int,
               num_frames: int = 8, temporal: str = "keyframes",  # pylint: disable=redefined-outer-name
               smic_apex: str = "middle", data_dir: Optional[str] = None,
               manual_dir: Optional[str] = None, variant: str = "",
               progress: bool = True) -> Clips:
  """Builds the dataset on first use and loads it as `Clips`."""
  from edmdbn_jax import datasets  # pylint: disable=g-import-not-at-top
  builder, source = datasets.load(
      name, num_classes=num_classes, image_size=image_size,
      data_dir=data_dir, manual_dir=manual_dir, variant=variant)
  class_names = builder.info.features["label"].names
  examples = (source[i] for i in range(len(source)))
  clips = from_examples(examples, class_names, name, num_frames=num_frames,
                        temporal_mode=temporal, smic_apex=smic_apex,
                        progress=progress)
  clips.preprocessing["build"] = builder.info.full_name  # name/config/version
  if hasattr(builder, "preprocessing"):
    clips.preprocessing.update(builder.preprocessing())
    if clips.preprocessing.get("alignment") is None:
      logging.warning(
          "%s was built before builds recorded which clips were face-aligned: "
          "models trained on it cannot tell experiments.predict how to "
          "prepare new frames (it will ask for --align or --noalign, or "
          "align). Rebuild to record it: python -m edmdbn_jax.datasets.build "
          "%s --config=%s --manual_dir=... --overwrite.",
          builder.info.full_name, name, builder.builder_config.name)
  return clips
