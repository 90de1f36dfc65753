"""synthetic_me: procedurally generated micro-expressions (no manual data).

Licence-free stand-in for the real datasets: the README's main command, the
notebooks and CI run on it. See faces.py for how faces and actions are made
and README.md for the class recipes and the scores baselines reach.

Configs: `<K>class_<S>[_<size>]` with K in {3, 5}, S in {32, 64, 224} and
size '' (small: builds in seconds), 'large' (CASME II-sized: 26 subjects,
about 250 clips, for benchmarks) or 'test' (tiny, for unit tests).
Generation is deterministic: every clip has its own RNG seeded by
(config seed, subject, clip), the config seed being fixed per class set and
size variant (not per image size, so the 64 and 224 px versions show the
same people and actions).
"""

import dataclasses
import zlib

import numpy as np
import tensorflow_datasets as tfds

from edmdbn_jax.datasets import features
from edmdbn_jax.datasets.common import choose_stored_frames
from edmdbn_jax.datasets.synthetic_me import faces


@dataclasses.dataclass(frozen=True)
class Size:
  subjects: int
  clips_per_subject: tuple  # (min, max) clips per subject
  max_frames: int


SIZES = {
    "": Size(subjects=10, clips_per_subject=(8, 12), max_frames=12),
    "large": Size(subjects=26, clips_per_subject=(6, 14), max_frames=17),
    "test": Size(subjects=4, clips_per_subject=(4, 4), max_frames=6),
}
# Class frequencies loosely after CASME II (others and disgust most common).
FIVE_CLASS_P = {"happiness": 0.17, "repression": 0.17, "surprise": 0.17,
                "disgust": 0.22, "others": 0.27}
THREE_CLASS_P = {"negative": 0.5, "positive": 0.25, "surprise": 0.25}


class SyntheticConfig(tfds.core.BuilderConfig):

  def __init__(self, *, num_classes, image_size, size="", **kwargs):
    super().__init__(
        name=features.config_name(num_classes, image_size, size),
        description=(f"{num_classes} classes, {image_size} px, "
                     f"{SIZES[size].subjects} subjects ({size or 'small'})"),
        **kwargs)
    self.num_classes = num_classes
    self.image_size = image_size
    self.size = size
    self.class_names = (faces.FIVE_CLASS if num_classes == 5
                        else tuple(faces.THREE_CLASS))

  @property
  def seed(self) -> int:
    return zlib.crc32(f"synthetic_me/{self.num_classes}/{self.size}".encode())


def _configs():
  out = []
  for k in (5, 3):
    for s in (64, 224, 32):
      for size in ("", "large", "test"):
        if s == 32 and size != "test":
          continue
        out.append(SyntheticConfig(num_classes=k, image_size=s, size=size))
  return out


def clip_plan(config: SyntheticConfig):
  """[(subject_id, clip_id, class_name)] of a config (cheap, no rendering)."""
  size = SIZES[config.size]
  rng = np.random.default_rng([config.seed, 0])
  probs = FIVE_CLASS_P if config.num_classes == 5 else THREE_CLASS_P
  names = list(config.class_names)
  p = np.array([probs[n] for n in names])
  plan = []
  for subj in range(size.subjects):
    lo, hi = size.clips_per_subject
    n = int(rng.integers(lo, hi + 1))
    # Every class at least once per subject where possible, rest random.
    classes = list(rng.permutation(names))[:min(n, len(names))]
    classes += list(rng.choice(names, n - len(classes), p=p / p.sum()))
    for c, cls in enumerate(classes):
      plan.append((subj + 1, c, str(cls)))
  return plan


def generate_clip(config: SyntheticConfig, subject: int, clip: int,
                  cls: str):
  """One example dict (see features.clip_features)."""
  s = config.image_size
  idn = faces.make_identity(np.random.default_rng([config.seed, subject]))
  rng = np.random.default_rng([config.seed, subject, clip + 1])
  source = cls
  if config.num_classes == 3:
    options = faces.THREE_CLASS[cls]
    source = options[int(rng.integers(len(options)))]
  spec = faces.make_clip_spec(source, rng)
  numbers = list(range(spec.onset, spec.offset + 1))
  kept, apex_idx = choose_stored_frames(numbers, spec.apex,
                                        SIZES[config.size].max_frames)
  frames = faces.render_frames(idn, spec, kept, s, rng)
  return {
      "frames": frames,
      "frame_numbers": np.asarray(kept, np.int32),
      "onset": 0, "apex": apex_idx, "offset": len(kept) - 1,
      "label": cls, "label_name": cls, "emotion": source,
      "subject": f"synthetic/s{subject:02d}", "dataset": "synthetic",
      "clip": f"s{subject:02d}_c{clip:03d}",
      "action_units": faces.au_string(spec.aus),
  }


class Builder(tfds.core.GeneratorBasedBuilder):
  """Synthetic micro-expression clips with LOSO-ready subjects."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = _configs()

  def _info(self):
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=features.clip_features(cfg.image_size, cfg.class_names),
        homepage="https://doi.org/10.1016/j.patrec.2025.01.021")

  def preprocessing(self):
    """What the frames went through (see ClipBuilder.preprocessing): faces
    rendered already centred and upright, so nothing is face-aligned."""
    cfg = self.builder_config
    return {"frame_sources": {"synthetic": "rendered faces (never aligned)"},
            "alignment": {"synthetic": {
                "aligned": 0,
                "not_aligned": int(self.info.splits["train"].num_examples)}},
            "max_stored_frames": int(SIZES[cfg.size].max_frames)}

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    cfg = self.builder_config
    for subject, clip, cls in tqdm(clip_plan(cfg), desc=f"synthetic_me "
                                   f"{cfg.name}", unit="clip"):
      ex = generate_clip(cfg, subject, clip, cls)
      yield ex["clip"], ex
