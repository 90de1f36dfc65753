"""The one feature spec every clip dataset of the toolkit stores.

All builders (synthetic and licensed) yield examples with exactly these keys,
so the trainer reads every dataset the same way. Only `Tensor`, `Scalar`,
`ClassLabel` and `Text` features are used: together with the `array_record`
file format they build and read back without TensorFlow.
"""

from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

# Stored frames per clip are capped: every frame from onset to offset would be
# gigabytes at 200 fps. Builders keep an even subsample of [onset, offset] that
# always contains the onset, apex and offset frames exactly.
DEFAULT_MAX_STORED_FRAMES = 33


def clip_features(image_size: int, class_names: Sequence[str]):
  """FeaturesDict for aligned clips of `image_size` x `image_size` RGB frames.

  Keys:
    frames: uint8 (N, S, S, 3), the stored aligned frames in time order.
    frame_numbers: int32 (N,), original frame number of each stored frame.
    onset, apex, offset: int32 indices into `frames`.
    label: class index; label_name: its name; emotion: the raw annotation.
    subject: globally unique subject id, '<dataset>/<subject>' (e.g.
      'casme2/sub01', 'samm/006'), so composite datasets keep subjects apart.
    dataset: source dataset name; clip: the original clip name.
    action_units: the annotation's AU string ('' when there is none).
  """
  return tfds.features.FeaturesDict({
      "frames": tfds.features.Tensor(
          shape=(None, image_size, image_size, 3), dtype=np.uint8,
          encoding="zlib"),
      "frame_numbers": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "onset": tfds.features.Scalar(dtype=np.int32),
      "apex": tfds.features.Scalar(dtype=np.int32),
      "offset": tfds.features.Scalar(dtype=np.int32),
      "label": tfds.features.ClassLabel(names=list(class_names)),
      "label_name": tfds.features.Text(),
      "emotion": tfds.features.Text(),
      "subject": tfds.features.Text(),
      "dataset": tfds.features.Text(),
      "clip": tfds.features.Text(),
      "action_units": tfds.features.Text(),
  })


def config_name(num_classes: int, image_size: int, variant: str = "") -> str:
  """Builder-config naming shared by every builder: '5class_224', '5class_64_large'."""
  name = f"{num_classes}class_{image_size}"
  return f"{name}_{variant}" if variant else name
