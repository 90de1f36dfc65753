r"""Predicts the micro-expression class of a new clip.

  python -m experiments.predict --checkpoint=runs/.../final_model \
      --video=clip.mp4 [--onset=0 --apex=12 --offset=30] [--heatmap=out.png]
  python -m experiments.predict --checkpoint=DIR --frames=DIR \
      [--onset=46 --apex=59 --offset=86]

For a video the keyframes are 0-based frame indices; for a frame folder they
are the frame numbers in the file names (as in the datasets' annotations).
Without keyframes: onset = first frame, offset = last, apex = the frame most
different from the onset. Prints the class probabilities (and --json writes
them); exits non-zero with a message on bad input.
"""

import json
import sys

from absl import app
from absl import flags
from absl import logging

from edmdbn_jax import errors
from edmdbn_jax import predict

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model directory.")
_VIDEO = flags.DEFINE_string("video", None, "A video file.")
_FRAMES = flags.DEFINE_string("frames", None, "A folder of frames.")
_ONSET = flags.DEFINE_integer("onset", None, "Onset frame.")
_APEX = flags.DEFINE_integer("apex", None, "Apex frame.")
_OFFSET = flags.DEFINE_integer("offset", None, "Offset frame.")
_ALIGN = flags.DEFINE_bool("align", True, "Detect and align the face "
                           "(--noalign for frames that are already aligned "
                           "face crops).")
_UPSAMPLE = flags.DEFINE_integer("upsample", 0, "Face detector upsampling.")
_CLASSES = flags.DEFINE_list("classes", None, "Expected class set: a count "
                             "(e.g. 5) or names; refuses a model for "
                             "another class set.")
_HEATMAP = flags.DEFINE_string("heatmap", None, "Write a Grad-CAM panel PNG.")
_JSON = flags.DEFINE_string("json", None, "Write the result as JSON.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
    # Orbax logs every checkpoint read at INFO.
    logging.set_verbosity(logging.WARNING)
  if not _CHECKPOINT.value:
    raise app.UsageError("--checkpoint is required.")
  if bool(_VIDEO.value) == bool(_FRAMES.value):
    raise app.UsageError("Pass exactly one of --video and --frames.")
  try:
    predictor = predict.Predictor(_CHECKPOINT.value, _CLASSES.value,
                                  align=_ALIGN.value, upsample=_UPSAMPLE.value)
    if _VIDEO.value:
      result = predictor.predict_video(_VIDEO.value, _ONSET.value,
                                       _APEX.value, _OFFSET.value)
    else:
      result = predictor.predict_frames(_FRAMES.value, _ONSET.value,
                                        _APEX.value, _OFFSET.value)
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  d = result.as_dict()
  how = "estimated" if result.apex_estimated else "given"
  print(f"onset {d['onset']}, apex {d['apex']} ({how}), offset {d['offset']}")
  for name, p in sorted(d["probabilities"].items(), key=lambda kv: -kv[1]):
    print(f"  {name:>12s}: {p:.3f}")
  print(f"predicted: {d['predicted']}")
  if _HEATMAP.value:
    result.save_heatmap(_HEATMAP.value)
    print(f"heatmap: {_HEATMAP.value}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(d, f, indent=2)


if __name__ == "__main__":
  app.run(main)
