"""CASME II (Yan et al., 2014): 255 spontaneous micro-expression clips, 26 subjects, 200 fps.

Labels: the workbook's `Estimated Emotion` column. 5-class task (EDMDBN):
happiness, repression, surprise, disgust, others (sadness and fear are
excluded; 249 clips with the 2019 sheet, 246 with the 2014 one). 3-class task:
the MEGC2019 mapping (negative = disgust + repression).
"""

import re
from typing import Sequence

from etils import epath

from edmdbn_jax.datasets import common
from edmdbn_jax.errors import AnnotationError
from edmdbn_jax.errors import DataError

DATASET = "casme2"
WORKBOOKS = ("CASME2-coding-20190701.xlsx", "CASME2-coding-20140508.xlsx")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
CASME II is licence-gated: request it from its authors (Institute of
Psychology, Chinese Academy of Sciences) and put the files under
`<manual_dir>/CASME2/` exactly like this:

  <manual_dir>/CASME2/CASME2-coding-20190701.xlsx   (or CASME2-coding-20140508.xlsx;
                                                     the 2019 sheet is used when both exist)
  <manual_dir>/CASME2/Cropped/sub01/EP02_01f/reg_img46.jpg       (official face crops)
  <manual_dir>/CASME2/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg  (raw frames)

Either frame folder is enough. The default configs ('5class_224', ...) use
`Cropped` when present (the dataset's own face crops, not aligned again)
and otherwise align the raw frames; '..._aligned' configs always align
`CASME2_RAW_selected`;
'..._resized' configs only resize whatever frames are present.
"""


def workbook_path(root: epath.Path, prefer: Sequence[str] = WORKBOOKS
                  ) -> epath.Path:
  """The first of `prefer` that exists under `root` (= <manual_dir>/CASME2)."""
  return common.find_first([root / w for w in prefer], "CASME II workbook",
                           MANUAL_DOWNLOAD_INSTRUCTIONS)


def find_clips(manual_dir: epath.Path, class_set: common.ClassSet,
               variant: str, report: common.BuildReport,
               prefer: Sequence[str] = WORKBOOKS
               ) -> list[common.ClipRecord]:
  """Parses the CASME II workbook into clip records (reads no frames).

  Args:
    manual_dir: the folder holding `CASME2/`.
    class_set: the task's classes.
    variant: frame-source variant (see `common.VARIANTS`).
    report: receives the chosen workbook and frame source.
    prefer: workbook file names in order of preference.

  Raises:
    DataError: workbook or frame folder missing. AnnotationError: a bad row.
  """
  root = epath.Path(manual_dir) / "CASME2"
  if not root.exists():
    raise DataError(
        f"{root} does not exist.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  book = workbook_path(root, prefer)
  source = common.choose_source(
      variant,
      common.FrameSource("Cropped (official crops, align=False)",
                         root / "Cropped", "reg_img", align=False),
      common.FrameSource("CASME2_RAW_selected (raw, face-aligned)",
                         root / "CASME2_RAW_selected", "img", align=True),
      MANUAL_DOWNLOAD_INSTRUCTIONS, DATASET)
  report.frame_sources[DATASET] = f"{source.name}: {source.root}"
  report.notes.append(f"{DATASET}: labels from {book.name}, column "
                      "'Estimated Emotion'.")
  rows = common.read_sheet(
      book, ["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
             "Action Units", "Estimated Emotion"], report=report)
  records = []
  for row in rows:
    cell = row.get("Subject")
    if isinstance(cell, str):  # Some copies write 'sub01' instead of '01'.
      cell = re.sub(r"^\s*sub", "", cell, flags=re.IGNORECASE)
    subject = "sub" + common.normalize_subject(cell, 2, row.where)
    clip = str(row.get("Filename") or "").strip()
    if not clip:
      raise AnnotationError(f"{row.where}: the Filename cell is empty."
                            f"{common.ANNOTATION_FIX}")
    records.append(common.sheet_record(
        row, dataset=DATASET, subject=subject, clip=clip,
        class_set=class_set, frame_dir=source.root / subject / clip, prefix=source.prefix,
        align=source.align, columns=("OnsetFrame", "ApexFrame", "OffsetFrame")))
  return records


class Builder(common.ClipBuilder):
  """CASME II clips: 5 or 3 classes, 224/112/64 px, crops or aligned raw."""

  DATASET = DATASET
  HOMEPAGE = "http://casme.psych.ac.cn/casme/e2"
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.make_configs(common.CLASS_SETS[DATASET])

  FIND_CLIPS = staticmethod(find_clips)
