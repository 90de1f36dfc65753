r"""Aligns and crops the faces of every clip under a folder (or one video).

  python -m experiments.preprocess --input=CASME2/Cropped --output=aligned \
      [--image_size=224] [--noalign] [--workers=2] [--upsample=0] \
      [--face_rule=largest] [--prefix=reg_img] [--allow_failures]

--input is a video file, a folder of frames, or a tree in which every folder
that holds images is a clip (video files inside the tree are clips too).
Frames are written as PNG under --output/<clip path relative to --input>,
keeping their original file stems (video frames: frame_00000.png, ...).
A frame folder must hold one family of frames (img1.jpg, img2.jpg, ...); a
folder holding two (SMIC's image*.bmp and reg_image*.bmp) fails unless
--prefix picks one (--prefix=reg_image). --output must not be --input, lie
inside a clip folder of --input, or contain --input: the run refuses before
any work rather than overwrite or mix with the source frames.
At the end the run prints a summary and writes report.json (per clip: ok or
failed + reason; `folders_without_frames`: folders holding files but no
frames or video, e.g. frames in a format not read, which are said on stderr
too) and failures.txt into --output. The exit code is 1 when any clip
failed, unless --allow_failures; no clip is ever skipped silently.
"""

import functools
import json
import multiprocessing
import os
import pathlib
import sys
import time
from typing import Optional

from absl import app
from absl import flags
import cv2
from tqdm import tqdm

from edmdbn_jax import errors
from edmdbn_jax.preprocess import face
from edmdbn_jax.preprocess import io as pio

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg",
                  ".wmv", ".webm")

FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags; called only when run as a script (see
  experiments.gradcam.define_flags)."""
  flags.DEFINE_string("input", None, "Video, frame folder or tree.")
  flags.DEFINE_string("output", None, "Output folder.")
  flags.DEFINE_integer("image_size", 224, "Side S of the crops.")
  flags.DEFINE_bool("align", True, "Detect, align and crop the face; "
                    "--noalign only resizes (official crops).")
  flags.DEFINE_integer("workers", 1, "Worker processes.")
  flags.DEFINE_integer("upsample", 0, "dlib upsampling passes "
                       "(1 for small faces; slower).")
  flags.DEFINE_enum("face_rule", "largest", list(face.FACE_RULES),
                    "Which face when several are found.")
  flags.DEFINE_string(
      "prefix", None, "Only the frames named <prefix><number> (e.g. reg_image "
      "or image for SMIC); by default every image of a folder, which must then "
      "all be named alike.")
  flags.DEFINE_bool("allow_failures", False,
                    "Exit 0 even when some clips failed.")


# Files that are not material: a folder holding only these (system files,
# annotation sheets and documents beside the clips) is not reported as
# passed over.
_NOT_MATERIAL_SUFFIXES = (".xlsx", ".xls", ".csv", ".txt", ".md", ".pdf",
                          ".json", ".doc", ".docx", ".bib", ".html")


def find_clips(root: pathlib.Path, output: pathlib.Path,
               passed_over: Optional[list] = None
               ) -> list[tuple[str, pathlib.Path, str]]:
  """(relative clip path, source, kind) for every clip, sorted by path.

  kind is "video" or "frames". A video or frame folder given directly is the
  clip ".". The output folder is never searched. `passed_over`, when given,
  receives {'folder', 'files', 'suffixes'} of every folder that holds files
  but no frame or video (e.g. frames in a format not read): nothing under
  the input is left out unsaid.
  """
  if root.is_file():
    if root.suffix.lower() not in VIDEO_SUFFIXES:
      raise errors.DataError(
          f"{root}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder.")
    return [(".", root, "video")]
  if not root.is_dir():
    raise errors.DataError(f"{root}: no such file or folder.")
  out = output.resolve()
  clips = []
  # Linked clip folders are followed (trees are often assembled with
  # links); each real folder is visited once, so a link loop ends.
  seen = {root.resolve()}
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    d = pathlib.Path(dirpath)
    keep = []
    for n in sorted(dirnames):
      real = (d / n).resolve()
      if real != out and real not in seen:
        seen.add(real)
        keep.append(n)
    dirnames[:] = keep
    rel = d.relative_to(root).as_posix()
    found = len(clips)
    if any(pio.is_image(n) for n in filenames):
      clips.append((rel, d, "frames"))
    for n in sorted(filenames):
      if pathlib.Path(n).suffix.lower() in VIDEO_SUFFIXES:
        vrel = (pathlib.PurePosixPath(rel) / pathlib.Path(n).stem).as_posix()
        clips.append((vrel, d / n, "video"))
    material = [n for n in filenames if not pio.is_system_file(n)
                and not n.lower().endswith(_NOT_MATERIAL_SUFFIXES)]
    if passed_over is not None and len(clips) == found and material:
      passed_over.append({
          "folder": rel, "files": len(material),
          "suffixes": sorted({pathlib.Path(n).suffix.lower() or "(none)"
                              for n in material})})
  if not clips:
    raise errors.DataError(
        f"{root}: no folder of images ({', '.join(pio.IMAGE_SUFFIXES)}) and "
        "no video found under it.")
  rels = [c[0] for c in clips]
  dup = sorted({r for r in rels if rels.count(r) > 1})
  if dup:
    raise errors.DataError(
        f"{root}: clip paths {dup} collide (a video named like a frame "
        "folder); rename one.")
  return sorted(clips)


def _holds_images(folder: pathlib.Path) -> bool:
  return folder.is_dir() and any(
      p.is_file() and pio.is_image(p) for p in folder.iterdir())


def check_paths(input_path, output) -> None:
  """Refuses an --output that would overwrite or mix with the source frames.

  Compares resolved real paths (symbolic links followed).

  Raises:
    ConfigError: --output is --input, contains --input (a folder), is a
      frame folder of --input, or lies inside one.
  """
  src = pathlib.Path(os.path.realpath(input_path))
  out = pathlib.Path(os.path.realpath(output))
  hint = ("Choose an --output folder outside the input, e.g. a sibling "
          "folder of it.")
  if out.exists() and not out.is_dir():
    raise errors.ConfigError(
        f"--output {output} is a file; give a folder (new or existing) for "
        "the crops.")
  if out == src:
    raise errors.ConfigError(
        f"--output {output} is the input {input_path} itself ({src}); the "
        f"crops would overwrite the source frames. {hint}")
  if src.is_file():
    return  # A video: only its own path is off limits.
  if out in src.parents:
    raise errors.ConfigError(
        f"--input {input_path} ({src}) lies inside --output {output} "
        f"({out}); the crops could land on or among the source frames. "
        f"{hint}")
  if src in out.parents:
    inside = out
    while inside != src.parent:
      if _holds_images(inside):
        raise errors.ConfigError(
            f"--output {output} ({out}) is or lies inside {inside}, a frame "
            f"folder of the input {input_path}; the crops would be written "
            f"among the source frames. {hint}")
      inside = inside.parent


@functools.lru_cache(maxsize=None)
def _preprocessor(image_size, align, upsample, face_rule):
  return face.FacePreprocessor(image_size=image_size, align=align,
                               upsample=upsample, face_rule=face_rule)


def process_one(task) -> tuple[str, dict]:
  """Processes one clip; returns (relative path, report entry). Never raises."""
  rel, source, kind, out_dir, settings, prefix = task
  dest = pathlib.Path(out_dir) / rel
  try:
    extra = {}
    if kind == "video":
      images = list(pio.read_video(source))
      stems = [f"frame_{i:05d}" for i in range(len(images))]
      extra["reference_frame"] = "frame 0"
    else:
      paths = pio.list_frames(source, prefix=prefix)
      stems = [p.stem for p in paths]  # unique: one file per frame number
      numbers = [pio.frame_number(p) for p in paths]
      missing = pio.missing_frame_numbers(numbers, numbers[0], numbers[-1])
      if missing:  # kept as found, but listed: frames are not consecutive
        extra["missing_frame_numbers"] = missing
      extra["reference_frame"] = paths[0].name
      images = [pio.load_image(p) for p in paths]
    crops, info = _preprocessor(**settings).process_clip_with_info(
        images, clip=str(source))
    dest.mkdir(parents=True, exist_ok=True)
    for stem, crop in zip(stems, crops):
      target = dest / f"{stem}.png"
      ok, png = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
      if not ok:
        raise errors.DataError(f"{target}: could not encode the frame.")
      png.tofile(str(target))  # non-ASCII paths on every platform
    stale = _remove_stale_frames(dest, keep=stems)
    entry = {"status": "ok", "source": str(source),
             "frames": int(len(crops)), **extra, **info}
    if stale:
      entry["removed_stale_frames"] = stale
    return rel, entry
  except Exception as e:  # pylint: disable=broad-except
    # Reported per clip (report.json, failures.txt, exit code), not skipped.
    reason = str(e) if isinstance(e, errors.EdmdbnError) else (
        f"{type(e).__name__}: {e}")
    if isinstance(e, errors.NoFaceError):
      # No annotations here: the reference is the first frame, not
      # necessarily the onset the dataset builders align on.
      reason += (f" The frame searched: {extra.get('reference_frame')} (the "
                 "first of the clip; this command reads no annotation).")
    entry = {"status": "failed", "source": str(source), "reason": reason}
    # Frames an earlier run wrote for this clip would pass for this run's.
    stale = _remove_stale_frames(dest, keep=[])
    if stale:
      entry["removed_stale_frames"] = stale
    return rel, entry


def _remove_stale_frames(dest: pathlib.Path, keep) -> int:
  """Deletes the clip's PNG frames (not sub-clips) an earlier run left."""
  if not dest.is_dir():
    return 0
  keep = set(keep)
  stale = [p for p in dest.iterdir()
           if p.is_file() and p.suffix == ".png" and p.stem not in keep]
  for p in stale:
    p.unlink()
  return len(stale)


def run(input_path, output, image_size=224, align=True, workers=1,
        upsample=0, face_rule="largest", prefix=None) -> dict:
  """Preprocesses every clip; writes report.json + failures.txt; returns it.

  Args:
    prefix: None: every image of a frame folder (one family of names); a
      string: only the frames named `<prefix><number>` (see
      `pio.list_frames`).

  Raises:
    ConfigError: bad settings, or --output overlapping --input
      (`check_paths`); both before any work.
    DataError: no clip found under the input.
  """
  root, out = pathlib.Path(input_path), pathlib.Path(output)
  settings = dict(image_size=int(image_size), align=bool(align),
                  upsample=int(upsample), face_rule=face_rule)
  face.FacePreprocessor(**settings)  # Bad settings fail before any work.
  check_paths(root, out)
  passed_over = []
  clips = find_clips(root, out, passed_over)
  out.mkdir(parents=True, exist_ok=True)
  tasks = [(rel, src, kind, str(out), settings, prefix)
           for rel, src, kind in clips]
  results = {}
  start = time.time()
  bar = dict(total=len(tasks), desc="preprocess", unit="clip")
  if workers <= 1 or len(tasks) == 1:
    for task in tqdm(tasks, **bar):
      rel, entry = process_one(task)
      results[rel] = entry
  else:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(workers, len(tasks))) as pool:
      for rel, entry in tqdm(pool.imap_unordered(process_one, tasks), **bar):
        results[rel] = entry
  failed = {r: e for r, e in sorted(results.items())
            if e["status"] != "ok"}
  report = dict(input=str(root), output=str(out), **settings, prefix=prefix,
                num_clips=len(results), num_ok=len(results) - len(failed),
                num_failed=len(failed), seconds=round(time.time() - start, 2),
                # Folders holding files but no frames or video: not clips.
                folders_without_frames=passed_over,
                clips=dict(sorted(results.items())))
  (out / "report.json").write_text(
      json.dumps(report, indent=2, ensure_ascii=False) + "\n",
      encoding="utf-8")
  (out / "failures.txt").write_text(
      "".join(f"{r}\t{e['reason']}\n" for r, e in failed.items()),
      encoding="utf-8")
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.input or not FLAGS.output:
    raise app.UsageError("--input and --output are required.")
  try:
    report = run(FLAGS.input, FLAGS.output, FLAGS.image_size,
                 FLAGS.align, FLAGS.workers, FLAGS.upsample,
                 FLAGS.face_rule, FLAGS.prefix)
  except errors.EdmdbnError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(f"{report['num_ok']}/{report['num_clips']} clips preprocessed in "
        f"{report['seconds']} s -> {report['output']}")
  for rel, entry in report["clips"].items():
    if entry["status"] != "ok":
      print(f"FAILED {rel}: {entry['reason']}")
  skipped = report["folders_without_frames"]
  if skipped:
    listed = ", ".join(f"{f['folder']} ({f['files']} file(s): "
                       f"{' '.join(f['suffixes'])})" for f in skipped[:10])
    print(f"Passed over {len(skipped)} folder(s) holding files but no frames "
          f"({', '.join(pio.IMAGE_SUFFIXES)}) or video: {listed}"
          f"{' ...' if len(skipped) > 10 else ''}. Convert frames in another "
          "format to one of these to preprocess them (report.json lists "
          "every such folder).", file=sys.stderr)
  print(f"report: {pathlib.Path(report['output']) / 'report.json'}")
  if report["num_failed"] and not FLAGS.allow_failures:
    print(f"{report['num_failed']} clip(s) failed (see failures.txt); "
          "--allow_failures exits 0 anyway.", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
