"""SAMM (Davison et al., 2018): 159 micro-movement clips, 200 fps, greyscale.

Labels: the workbook's `Estimated Emotion` column (spelling varies between
copies, matched case-insensitively). 5-class task (EDMDBN): happiness,
surprise, anger, contempt, other (136 clips, 27 subjects). 3-class task: the
MEGC2019 mapping (negative = anger, contempt, disgust, fear, sadness).
"""

from etils import epath

from edmdbn_jax.datasets import common
from edmdbn_jax.errors import AnnotationError
from edmdbn_jax.errors import DataError

DATASET = "samm"
WORKBOOK = "SAMM_Micro_FACS_Codes_v2.xlsx"

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
SAMM is licence-gated: request it from Manchester Metropolitan University and
put the files under `<manual_dir>/SAMM/` exactly like this:

  <manual_dir>/SAMM/SAMM_Micro_FACS_Codes_v2.xlsx
  <manual_dir>/SAMM/006/006_1_2/006_05562.jpg   (<subject>/<clip>/<subject>_<frame>.jpg)

SAMM ships uncropped greyscale frames: the default configs ('5class_224', ...)
detect, align and crop the face (dlib); '..._resized' configs only resize the
frames (use them when the tree already holds face crops).
"""


def find_clips(manual_dir: epath.Path, class_set: common.ClassSet,
               variant: str, report: common.BuildReport
               ) -> list[common.ClipRecord]:
  """Parses the SAMM workbook into clip records (reads no frames).

  Raises:
    DataError: workbook or frame folder missing. AnnotationError: a bad row.
  """
  root = epath.Path(manual_dir) / "SAMM"
  if not root.exists():
    raise DataError(f"{root} does not exist.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  book = common.find_first([root / WORKBOOK], "SAMM workbook",
                           MANUAL_DOWNLOAD_INSTRUCTIONS)
  source = common.choose_source(
      variant, None,
      common.FrameSource("SAMM frames (face-aligned)", root, "", align=True),
      MANUAL_DOWNLOAD_INSTRUCTIONS, DATASET)
  report.frame_sources[DATASET] = f"{source.name}: {source.root}"
  report.notes.append(f"{DATASET}: labels from {book.name}, column "
                      "'Estimated Emotion'.")
  rows = common.read_sheet(
      book, ["Subject", "Filename", "Onset Frame", "Apex Frame",
             "Offset Frame", "Action Units", "Estimated Emotion"],
      report=report)
  records = []
  for row in rows:
    subject = common.normalize_subject(row.get("Subject"), 3, row.where)
    clip = str(row.get("Filename") or "").strip()
    if not clip:
      raise AnnotationError(f"{row.where}: the Filename cell is empty."
                            f"{common.ANNOTATION_FIX}")
    records.append(common.sheet_record(
        row, dataset=DATASET, subject=subject, clip=clip,
        class_set=class_set, frame_dir=source.root / subject / clip, prefix=f"{subject}_",
        align=source.align, columns=("Onset Frame", "Apex Frame", "Offset Frame")))
  return records


class Builder(common.ClipBuilder):
  """SAMM clips: 5 or 3 classes, 224/112/64 px, face-aligned or resized."""

  DATASET = DATASET
  HOMEPAGE = "http://www2.docm.mmu.ac.uk/STAFF/m.yap/dataset.php"
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.make_configs(common.CLASS_SETS[DATASET],
                                        variants=("", "resized"))

  FIND_CLIPS = staticmethod(find_clips)
