r"""Predicts the micro-expression class of a new clip.

  python -m experiments.predict --checkpoint=runs/.../final_model \
      --video=clip.mp4 [--onset=0 --apex=12 --offset=30] [--heatmap=out.png]
  python -m experiments.predict --checkpoint=DIR --frames=DIR \
      [--onset=46 --apex=59 --offset=86]

For a video the keyframes are 0-based frame indices; for a frame folder they
are the frame numbers in the file names (as in the datasets' annotations).
Without keyframes: onset = first frame, offset = last, apex = the frame most
different from the onset (for a SMIC-HS model, the apex rule its training
used). The frames are prepared as the model's training frames were (face-
aligned or not, greyscale or not, as recorded with the model; --align or
--noalign when it cannot tell). Prints the class probabilities (and --json
writes them, with how the frames were prepared); exits non-zero with a
message on bad input.
"""

import json
import os
import sys

from absl import app
from absl import flags

from edmdbn_jax import errors
from edmdbn_jax import predict
from experiments import cli

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags.

  Called only when the module runs as a script, so that importing it (e.g.
  `experiments.gradcam.run` in a notebook) next to other experiments modules
  defines no flags that could clash with theirs.
  """
  flags.DEFINE_string("checkpoint", None, "Model directory.")
  flags.DEFINE_string("video", None, "A video file.")
  flags.DEFINE_string("frames", None, "A folder of frames.")
  flags.DEFINE_integer("onset", None, "Onset frame.")
  flags.DEFINE_integer("apex", None, "Apex frame.")
  flags.DEFINE_integer("offset", None, "Offset frame.")
  flags.DEFINE_bool("align", None, "Detect and align the face (--align) "
                    "or only resize the frames (--noalign, for face crops "
                    "like the model's training frames). Default: as the "
                    "model's training frames were prepared, when it records "
                    "that they were all face-aligned; otherwise an error "
                    "asks which.")
  flags.DEFINE_integer("upsample", 0, "Face detector upsampling.")
  flags.DEFINE_list("classes", None, "Expected class set: a count "
                    "(e.g. 5) or names; refuses a model for "
                    "another class set.")
  flags.DEFINE_string("prefix", None, "With --frames: only the frames "
                      "named <prefix><number> (a folder holding two families "
                      "of frames, e.g. SMIC's image* and reg_image*).")
  flags.DEFINE_string("heatmap", None, "Write a class activation map panel "
                      "(HiResCAM on the fused features) PNG.")
  flags.DEFINE_string("json", None, "Write the result as JSON.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  cli.quiet_orbax_logs()
  if not FLAGS.checkpoint:
    raise app.UsageError("--checkpoint is required.")
  if bool(FLAGS.video) == bool(FLAGS.frames):
    raise app.UsageError("Pass exactly one of --video and --frames.")
  if FLAGS.prefix and not FLAGS.frames:
    raise app.UsageError("--prefix applies to --frames only.")
  # Output paths are checked before the work, not after it.
  heatmap = FLAGS.heatmap
  if heatmap:
    suffix = os.path.splitext(heatmap)[1].lower()
    if not suffix:
      heatmap += ".png"
    elif suffix not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
      raise app.UsageError(f"--heatmap={heatmap}: use a .png, .jpg, .pdf or "
                           ".svg file name.")
  for out in (heatmap, FLAGS.json):
    if out:
      try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
      except OSError as e:  # a file where a folder of the path should be
        print(f"error: cannot write {out}: {e.strerror} "
              f"({e.filename}).", file=sys.stderr)
        sys.exit(2)
  def status(text):  # progress on stderr; stdout holds the result
    print(text, file=sys.stderr, flush=True)

  try:
    status(f"Loading the model from {FLAGS.checkpoint} ...")
    predictor = predict.Predictor(FLAGS.checkpoint, FLAGS.classes,
                                  align=FLAGS.align, upsample=FLAGS.upsample)
    plan = predictor.inputs
    status(f"Reading {'and aligning ' if plan.align else 'and resizing '}"
           f"the frames{' (greyscale)' if plan.greyscale else ''}, then the "
           "forward pass (its first call compiles the model: seconds on a "
           "GPU, longer on a CPU) ...")
    if FLAGS.video:
      result = predictor.predict_video(FLAGS.video, FLAGS.onset,
                                       FLAGS.apex, FLAGS.offset)
    else:
      result = predictor.predict_frames(FLAGS.frames, FLAGS.onset,
                                        FLAGS.apex, FLAGS.offset,
                                        prefix=FLAGS.prefix)
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  d = result.as_dict()
  how = "estimated" if result.apex_estimated else "given"
  print(f"onset {d['onset']}, apex {d['apex']} ({how}), offset {d['offset']}")
  missing = d.get("missing_frame_numbers")
  if missing:
    print(f"note: {len(missing)} frame number(s) between the onset and "
          f"offset have no file ({_ranges(missing)}); the frames present "
          "were used, as the dataset builders do.")
  for name, p in sorted(d["probabilities"].items(), key=lambda kv: -kv[1]):
    print(f"  {name:>12s}: {p:.3f}")
  print(f"predicted: {d['predicted']}")
  if heatmap:
    result.save_heatmap(heatmap, title=f"model {FLAGS.checkpoint}")
    print(f"heatmap: {heatmap}")
  if FLAGS.json:
    with open(FLAGS.json, "w", encoding="utf-8") as f:
      json.dump(d, f, indent=2)
    print(f"json: {FLAGS.json}")


def _ranges(numbers) -> str:
  """[13, 14, 17, 18, 19] -> '13-14, 17-19'."""
  out, start = [], None
  for i, n in enumerate(numbers):
    if start is None:
      start = n
    if i + 1 == len(numbers) or numbers[i + 1] != n + 1:
      out.append(str(start) if start == n else f"{start}-{n}")
      start = None
  return ", ".join(out)


if __name__ == "__main__":
  define_flags()
  app.run(main)
