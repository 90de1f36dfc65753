"""MMEW (Ben et al., 2021): 300 micro-expression clips, 90 fps, 7 emotions.

Labels: the workbook's `Estimated Emotion` column. Tasks: 5 classes
(happiness, surprise, disgust, fear, others; anger and sadness excluded), 4
classes as in the EDMDBN released code (happiness, surprise, disgust, others;
fear, anger and sadness excluded) and 3 classes (the MEGC2019 mapping).
"""

from etils import epath

from edmdbn_jax.datasets import common
from edmdbn_jax.errors import AnnotationError
from edmdbn_jax.errors import DataError

DATASET = "mmew"
WORKBOOK = "MMEW_Micro_Exp.xlsx"

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
MMEW is licence-gated: request it from its authors and put the files under
`<manual_dir>/MMEW/` exactly like this:

  <manual_dir>/MMEW/MMEW_Micro_Exp.xlsx
  <manual_dir>/MMEW/MMEW_Final/Micro_Expression/<emotion>/<clip>/<n>.jpg
      e.g. <manual_dir>/MMEW/MMEW_Final/Micro_Expression/happiness/S01_..._01/12.jpg

The clip folder is found by its name (the workbook's `Filename`) under any
emotion folder. The default configs ('5class_224', ...) detect, align and
crop the face (dlib); '..._resized' configs only resize the frames.
"""


def _clip_folders(micro: epath.Path) -> dict[str, epath.Path]:
  """Clip name -> folder over all emotion folders; DataError on duplicates."""
  out = {}
  for emo in sorted(p for p in micro.iterdir() if p.is_dir()):
    for clip in sorted(p for p in emo.iterdir() if p.is_dir()):
      if clip.name in out:
        raise DataError(f"Clip folder {clip.name} exists twice: {out[clip.name]}"
                        f" and {clip}. Keep one.")
      out[clip.name] = clip
  return out


def find_clips(manual_dir: epath.Path, class_set: common.ClassSet,
               variant: str, report: common.BuildReport
               ) -> list[common.ClipRecord]:
  """Parses the MMEW workbook into clip records (reads no frames).

  Raises:
    DataError: workbook or frame folder missing. AnnotationError: a bad row.
    (A labelled clip without a folder is reported, with all the others, by
    `common.list_clip_frames` before any frame is read.)
  """
  root = epath.Path(manual_dir) / "MMEW"
  if not root.exists():
    raise DataError(f"{root} does not exist.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  book = common.find_first([root / WORKBOOK], "MMEW workbook",
                           MANUAL_DOWNLOAD_INSTRUCTIONS)
  micro = root / "MMEW_Final" / "Micro_Expression"
  source = common.choose_source(
      variant, None,
      common.FrameSource("MMEW frames (face-aligned)", micro, "", align=True),
      MANUAL_DOWNLOAD_INSTRUCTIONS, DATASET)
  report.frame_sources[DATASET] = f"{source.name}: {source.root}"
  report.notes.append(f"{DATASET}: labels from {book.name}, column "
                      "'Estimated Emotion'.")
  folders = _clip_folders(micro)
  rows = common.read_sheet(
      book, ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
             "Estimated Emotion"], report=report)
  records = []
  for row in rows:
    subject = common.normalize_subject(row.get("Subject"), 2, row.where)
    clip = str(row.get("Filename") or "").strip()
    if not clip:
      raise AnnotationError(f"{row.where}: the Filename cell is empty."
                            f"{common.ANNOTATION_FIX}")
    # A clip without a folder gets a path that cannot exist: the check of
    # every labelled clip's folder (`common.list_clip_frames`) then lists it
    # with all the others, and a clip the class set drops is never asked for.
    frame_dir = folders.get(clip, micro / "<no emotion folder holds it>" / clip)
    records.append(common.sheet_record(
        row, dataset=DATASET, subject=subject, clip=clip,
        class_set=class_set, frame_dir=frame_dir, prefix="",
        align=source.align, columns=("OnsetFrame", "ApexFrame", "OffsetFrame")))
  # Cross-checks, reported (labels come from the workbook either way).
  listed = {r.clip for r in records}
  differ = [f"{r.clip} (workbook {r.emotion!r}, folder "
            f"{folders[r.clip].parent.name!r})" for r in records
            if r.clip in folders and common.canonical_emotion(
                folders[r.clip].parent.name) != common.canonical_emotion(
                    r.emotion)]
  if differ:
    report.notes.append(
        f"{DATASET}: {len(differ)} clip(s) sit in an emotion folder other "
        f"than their workbook label (the label is used): "
        f"{', '.join(differ[:10])}{' ...' if len(differ) > 10 else ''}.")
  unlisted = sorted(c for c in folders if c not in listed)
  if unlisted:
    report.notes.append(
        f"{DATASET}: {len(unlisted)} clip folder(s) under {micro} are not "
        f"in {book.name} and are not used: {', '.join(unlisted[:10])}"
        f"{' ...' if len(unlisted) > 10 else ''}.")
  return records


class Builder(common.ClipBuilder):
  """MMEW clips: 5, 4 or 3 classes, 224/112/64 px, aligned or resized."""

  DATASET = DATASET
  HOMEPAGE = "https://doi.org/10.1109/TPAMI.2021.3067464"
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.make_configs(common.CLASS_SETS[DATASET],
                                        variants=("", "resized"))

  FIND_CLIPS = staticmethod(find_clips)
