"""Shared parts of the licensed micro-expression dataset builders.

Each builder (CASME II, SAMM, SMIC-HS, MMEW, the MEGC2019 composite) only
knows where its files are and how its annotation reads; everything else lives
here:

* Annotation parsing: `read_sheet` finds the header row by its first cell
  ('Subject'), maps column names loosely ('OnsetFrame' == 'Onset Frame'),
  and returns rows with their 1-based sheet row numbers so every
  `AnnotationError` names the sheet row. `normalize_subject` turns '01', 1 and
  1.0 into the same id; `parse_frame` reads frame numbers (and the '/' "no
  apex" marker); `ClassSet` maps emotions case-insensitively with spelling
  variants ('Other' / 'Others', 'Happy' / 'Happiness').
* Frame handling: `frames_by_number` indexes a clip folder by frame number
  (numeric, never lexical order); `choose_stored_frames` picks the frames a
  clip stores.
* `BuildReport`: every clip that is excluded by the class set, skipped or
  repaired, with the reason; logged and written as `build_report.json` next to
  the dataset files.
* `ClipBuilder`: the tfds `GeneratorBasedBuilder` base class all licensed
  builders share (configs, feature spec, example generation).

Rules applied to annotations (each application is recorded in the report):

* Apex given as '/' or blank (CASME II sub04/EP12_01f): the SMIC convention,
  the middle available frame of [onset, offset] (`middle_frame`).
* Apex outside [onset, offset] (SAMM 028_4_1, 032_3_1): treated as a missing
  apex, the middle available frame (clamping onto the neutral onset or
  offset would leave the clip with no whole-face motion). The annotated
  value is kept in the report.
* Onset or offset frame file missing, or the apex frame file missing: the clip
  is skipped (recorded with the expected path). A clip cannot be represented
  faithfully without its keyframes, and one bad clip should not stop a build
  of hundreds.
* Frames missing strictly inside (onset, offset): the clip is kept with the
  frames that exist (their original numbers are stored in `frame_numbers`),
  recorded as a repair.
* The clip folder itself missing or holding no images: `MissingFrameError`
  naming the clip, its sheet row and the folder. That means the tree is laid
  out wrongly (or a download is incomplete), which the user must fix: building
  a silently smaller dataset would be worse. Every labelled clip's folder is
  listed before any frame is read (`list_clip_frames`), and one error lists
  all the problem folders.
* No face found in the onset frame of a clip that is face-aligned: the clip
  is skipped (recorded with the onset frame file and what to do), so one bad
  clip does not abort a build of hundreds.
* Frames missing strictly inside (onset, offset) and the apex rules above
  are recorded as repairs only for clips that are kept (a clip skipped
  later, for an unreadable frame or no face, is listed as skipped only).
* Apex annotated on the onset frame: kept as annotated (its apex - onset
  motion is zero), named in the report's notes.
* Frames of one clip of different sizes: face-aligned, the clip is skipped
  (the onset's transform fits only its size); only resized (official
  crops), each frame is resized on its own and the clip recorded as a
  repair (right for one face box per frame, wrong for a stray frame).
* Non-square frames only resized (faces stretched): named in the notes.
* Onset equal to offset (a one-frame clip): the clip is skipped (no
  motion to recognise).
* Onset after offset, a non-numeric, negative or empty frame number, an
  unknown emotion, a duplicated clip: `AnnotationError` naming the file,
  sheet and row. A workbook whose
  annotation columns are named twice, whose header row is on no sheet (or
  not on the first and on two later ones), or that has no annotation rows
  is refused likewise (a notes sheet before the annotation sheet is passed
  over). One subject number written two ways within a dataset ('S1' and
  '01') is refused too: it would make two LOSO subjects of one person.
"""

import collections
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import shlex
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from edmdbn_jax.datasets.features import DEFAULT_MAX_STORED_FRAMES
from edmdbn_jax.datasets.features import clip_features
from edmdbn_jax.datasets.features import config_name
from edmdbn_jax.errors import AnnotationError
from edmdbn_jax.errors import DataError
from edmdbn_jax.errors import MissingFrameError
from edmdbn_jax.errors import NoFaceError

REPORT_FILENAME = "build_report.json"

# What to do about a bad annotation cell, appended to its error.
ANNOTATION_FIX = (" Correct the cell in a copy of the workbook saved under "
                  "the same name, or delete the row to leave the clip out, "
                  "then build again.")

# Stored resolutions every licensed builder offers.
IMAGE_SIZES = (224, 112, 64)

# Frame-source variants (the `variant` part of the config name):
#   ''        the dataset's preferred source: its official face crops with
#             align=False when the dataset ships them and they are present
#             (CASME II `Cropped`, SMIC `reg_image*`), else the raw frames
#             with face alignment (dlib landmarks, OpenFace affine, the EDMDBN
#             crop). A choice: the reference states the EDMDBN authors'
#             alignment but not which frames they ran it on (WORKSPACE,
#             "Official crops by default").
#   'aligned' always the raw frames, face-aligned by this toolkit.
#   'resized' the frames as found (official crops when present, else raw),
#             only resized to S x S: for trees that already hold face crops.
VARIANTS = ("", "aligned", "resized")

# --------------------------------------------------------------------------
# Emotions and class sets.
# --------------------------------------------------------------------------

# Spelling variants seen across copies of the workbooks -> canonical emotion.
_EMOTION_ALIASES = {
    "other": "others",
    "others": "others",
    "happy": "happiness",
    "happiness": "happiness",
    "surprised": "surprise",
    "surprise": "surprise",
    "disgusted": "disgust",
    "disgust": "disgust",
    "repression": "repression",
    "repressed": "repression",
    "sad": "sadness",
    "sadness": "sadness",
    "fear": "fear",
    "fearful": "fear",
    "anger": "anger",
    "angry": "anger",
    "contempt": "contempt",
    "negative": "negative",
    "positive": "positive",
}


def canonical_emotion(text: Any) -> str:
  """Lower-cases, trims and un-aliases an emotion: ' Others ' -> 'others'.

  Returns '' for a blank cell; unknown words are returned lower-cased and
  trimmed (`ClassSet.label` decides whether they are an error).
  """
  if text is None:
    return ""
  key = re.sub(r"\s+", " ", str(text)).strip().lower()
  return _EMOTION_ALIASES.get(key, key)


@dataclasses.dataclass(frozen=True)
class ClassSet:
  """A task's classes and how canonical emotions map onto them.

  Attributes:
    classes: class names in label order.
    mapping: canonical emotion -> class name.
    excluded: canonical emotions that exist in the dataset but are dropped by
      this class set (counted in the report, not errors).
  """
  classes: tuple[str, ...]
  mapping: Mapping[str, str]
  excluded: frozenset[str] = frozenset()

  def label(self, emotion: Any, where: str) -> Optional[str]:
    """Class name of `emotion`, or None when the class set drops it.

    Raises:
      AnnotationError: naming `where` when the emotion is unknown.
    """
    canon = canonical_emotion(emotion)
    if canon in self.mapping:
      return self.mapping[canon]
    if canon in self.excluded:
      return None
    known = sorted(set(self.mapping) | set(self.excluded))
    raise AnnotationError(
        f"{where}: emotion {emotion!r} is not one of this dataset's emotions "
        f"{known} (matched case-insensitively). Fix the cell, or check that "
        "this is the dataset's official annotation file.")


MEGC_NEGATIVE = frozenset({"anger", "contempt", "disgust", "fear", "sadness",
                           "repression", "negative"})


def megc_class_set(known: Iterable[str],
                   negative: Iterable[str] = MEGC_NEGATIVE) -> ClassSet:
  """The MEGC2019 3-class mapping restricted to a dataset's emotions.

  negative = `negative` (by default anger, contempt, disgust, fear, sadness,
  repression), positive = happiness, surprise = surprise; everything else in
  `known` is excluded. For CASME II MEGC2019 counts only disgust and
  repression as negative (its sadness and fear clips are dropped).
  """
  negative = set(negative)
  mapping = {}
  for e in known:
    if e in negative:
      mapping[e] = "negative"
    elif e in ("happiness", "positive"):
      mapping[e] = "positive"
    elif e == "surprise":
      mapping[e] = "surprise"
  excluded = frozenset(set(known) - set(mapping))
  return ClassSet(("negative", "positive", "surprise"), mapping, excluded)


def simple_class_set(classes: Sequence[str], known: Iterable[str]) -> ClassSet:
  """Classes that are emotions themselves; the other `known` ones excluded."""
  canon = {canonical_emotion(c): c for c in classes}
  return ClassSet(tuple(classes), canon,
                  frozenset(set(known) - set(canon)))


# The emotions each dataset's annotation uses (canonical spelling). CASME II
# sadness and fear, SAMM disgust/fear/sadness and MMEW anger/sadness drop out
# of the 5-class (and 4-class) tasks; 'others' drops out of the 3-class task.
_CASME2_EMOTIONS = ("happiness", "repression", "surprise", "disgust", "others",
                    "sadness", "fear")
_SAMM_EMOTIONS = ("anger", "others", "happiness", "surprise", "contempt",
                  "disgust", "fear", "sadness")
_MMEW_EMOTIONS = ("happiness", "anger", "surprise", "disgust", "fear",
                  "sadness", "others")
_SMIC_EMOTIONS = ("negative", "positive", "surprise")

CLASS_SETS: dict[str, dict[int, ClassSet]] = {
    "casme2": {
        5: simple_class_set(
            ("happiness", "repression", "surprise", "disgust", "others"),
            _CASME2_EMOTIONS),
        3: megc_class_set(_CASME2_EMOTIONS,
                          negative=("disgust", "repression")),
    },
    "samm": {
        5: simple_class_set(
            ("happiness", "surprise", "anger", "contempt", "other"),
            _SAMM_EMOTIONS),
        3: megc_class_set(_SAMM_EMOTIONS),
    },
    "smic_hs": {3: megc_class_set(_SMIC_EMOTIONS)},
    "mmew": {
        5: simple_class_set(
            ("happiness", "surprise", "disgust", "fear", "others"),
            _MMEW_EMOTIONS),
        4: simple_class_set(
            ("happiness", "surprise", "disgust", "others"), _MMEW_EMOTIONS),
        3: megc_class_set(_MMEW_EMOTIONS),
    },
}

# --------------------------------------------------------------------------
# Workbooks.
# --------------------------------------------------------------------------


def _column_key(name: Any) -> str:
  """'Onset Frame', 'OnsetFrame', 'onset_frame' -> 'onsetframe'."""
  return re.sub(r"[^0-9a-z]", "", str(name).lower()) if name is not None else ""


@dataclasses.dataclass(frozen=True)
class SheetRow:
  """One annotation row: `values` keyed by normalised column name."""
  where: str  # e.g. "CASME2-coding-20190701.xlsx, sheet 'Sheet1', row 17"
  values: Mapping[str, Any]

  def get(self, column: str) -> Any:
    return self.values.get(_column_key(column))


def read_sheet(path: epath.PathLike, required: Sequence[str],
               first_header: str = "Subject",
               report: Optional["BuildReport"] = None) -> list[SheetRow]:
  """Reads the annotation rows of a workbook.

  The header row is the first row whose first non-empty cell is
  `first_header` (SAMM has a block of notes above it), on the first sheet,
  or, when that has none, on the one later sheet that has it (a notes
  sheet put before the annotations is passed over). Unnamed columns (CASME
  II has two blank ones) are ignored. Entirely blank rows are skipped.

  Args:
    path: the .xlsx file.
    required: column names that must be present (matched loosely).
    first_header: text of the header row's first cell.
    report: when given, the workbook is recorded as an input of the build.

  Returns:
    The rows below the header, each naming its sheet row.

  Raises:
    AnnotationError: unreadable workbook, no header row (or, past the
      first sheet, one on two sheets), missing or twice-named required
      columns, no annotation rows.
  """
  import openpyxl  # pylint: disable=g-import-not-at-top
  path = epath.Path(path)
  if not path.exists():
    raise DataError(f"Annotation workbook {path} does not exist.")
  try:
    with path.open("rb") as f:
      wb = openpyxl.load_workbook(f, data_only=True)
  except Exception as e:  # openpyxl raises many types on a bad file.
    raise AnnotationError(
        f"Cannot read the annotation workbook {path} ({e}). Use the .xlsx "
        "file exactly as the dataset's authors distribute it.") from e
  if report is not None:
    report.record_input(path)
  # The annotation sheet: the first sheet, as distributed; when it has no
  # header row (a copy with a notes sheet put first), the one later sheet
  # that has it (two such sheets are ambiguous).
  def header_of(ws):
    for r, cells in enumerate(ws.iter_rows(min_row=1, values_only=True), 1):
      first = next((c for c in cells if c is not None and str(c).strip()),
                   None)
      if first is not None and _column_key(first) == _column_key(first_header):
        return ws, r, [_column_key(c) for c in cells]
    return None

  found = [header_of(wb.worksheets[0])]
  if found[0] is None:
    found = [h for h in map(header_of, wb.worksheets[1:]) if h]
  names = [w.title for w in wb.worksheets]
  if not found:
    raise AnnotationError(
        f"{path}: no header row starting with {first_header!r} in any sheet "
        f"({', '.join(map(repr, names))}). Is this the dataset's annotation "
        "workbook?")
  if len(found) > 1:
    raise AnnotationError(
        f"{path}: its first sheet has no header row starting with "
        f"{first_header!r}, and sheets "
        f"{', '.join(repr(f[0].title) for f in found)} each have one; keep "
        "the one with the dataset's annotations (the workbook as its authors "
        "distribute it has them on its first sheet).")
  ws, header_row, header = found[0]
  missing = [c for c in required if _column_key(c) not in header]
  if missing:
    raise AnnotationError(
        f"{path}: the header row (sheet {ws.title!r}, row {header_row}) lacks "
        f"columns {missing}; it has {[h for h in header if h]}. Use the "
        "workbook exactly as the dataset's authors distribute it (or restore "
        "the renamed column headers).")
  # A column named twice would let the last one win unseen.
  from openpyxl.utils import get_column_letter  # pylint: disable=g-import-not-at-top
  for c in required:
    cols = [get_column_letter(i + 1) for i, h in enumerate(header)
            if h == _column_key(c)]
    if len(cols) > 1:
      raise AnnotationError(
          f"{path}: columns {', '.join(cols)} of the header row (sheet "
          f"{ws.title!r}, row {header_row}) are all named {c!r}; which one "
          "holds the annotations is unclear. Rename or remove the extra "
          "column.")
  rows = []
  for r, cells in enumerate(
      ws.iter_rows(min_row=header_row + 1, values_only=True), header_row + 1):
    if all(c is None or (isinstance(c, str) and not c.strip())
           for c in cells):
      continue
    values = {k: v for k, v in zip(header, cells) if k}
    rows.append(SheetRow(f"{path.name}, sheet {ws.title!r}, row {r}", values))
  if not rows:
    raise AnnotationError(
        f"{path}: sheet {ws.title!r} has its header row (row {header_row}) "
        "but no annotation rows below it. Use the workbook exactly as the "
        "dataset's authors distribute it.")
  return rows


def normalize_subject(value: Any, width: int, where: str) -> str:
  """Subject cell -> zero-padded id text: '01', 1, 1.0 -> '01' (width 2).

  Non-numeric text ('s1', 'S01') is returned trimmed, unchanged.

  Raises:
    AnnotationError: blank cell.
  """
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  if isinstance(value, int):
    return str(value).zfill(width)
  text = "" if value is None else str(value).strip()
  if not text:
    raise AnnotationError(
        f"{where}: the Subject cell is empty.{ANNOTATION_FIX}")
  if text.isdigit():
    return text.zfill(width)
  return text


def parse_frame(value: Any, column: str, where: str,
                allow_missing: bool = False) -> Optional[int]:
  """A frame-number cell -> int. '/' or blank -> None when `allow_missing`.

  Raises:
    AnnotationError: naming `where` and `column` for anything else.
  """
  if isinstance(value, float) and value.is_integer():
    value = int(value)
  if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
    return value
  text = "" if value is None else str(value).strip()
  if text.isdigit():
    return int(text)
  if allow_missing and text in ("", "/", "-"):
    return None
  if not text:
    raise AnnotationError(
        f"{where}: column {column!r} is empty, expected a frame number. Fix "
        "that cell of the workbook (a formula cell whose value was never "
        "saved reads as empty: open and save the workbook in a spreadsheet "
        "program).")
  raise AnnotationError(
      f"{where}: column {column!r} holds {value!r}, expected a frame number "
      "(a whole number, 0 or more). Fix that cell of the workbook.")


def find_first(candidates: Sequence[epath.Path], what: str,
               instructions: str) -> epath.Path:
  """The first existing path of `candidates`; DataError naming all of them."""
  for c in candidates:
    if c.exists():
      return c
  listed = "\n  ".join(str(c) for c in candidates)
  raise DataError(
      f"{what} not found; looked for:\n  {listed}\n{instructions}")


# --------------------------------------------------------------------------
# Clips and frames.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FrameSource:
  """Where a clip's frames come from.

  Attributes:
    name: recorded in the report ('Cropped (official crops)', ...).
    root: folder holding the per-clip folders.
    prefix: file-name prefix of the frames ('reg_img', 'img', '').
    align: whether FacePreprocessor aligns (True) or only resizes.
  """
  name: str
  root: epath.Path
  prefix: str
  align: bool


@dataclasses.dataclass(frozen=True)
class ClipRecord:
  """One annotated clip, before its frames are read.

  `onset` / `offset` None mean "first / last frame of the folder" (SMIC-HS);
  `apex` None means "the middle frame" (SMIC-HS, CASME II '/').
  """
  dataset: str
  subject: str  # dataset-local id: '01', '006', 's1'
  clip: str
  emotion: str  # as annotated
  label: Optional[str]  # class name, None when the class set excludes it
  frame_dir: epath.Path
  prefix: str
  align: bool
  where: str  # sheet row or folder, for messages
  onset: Optional[int] = None
  apex: Optional[int] = None
  offset: Optional[int] = None
  action_units: str = ""
  # Why a clip with label None is left out; '' means the class set drops
  # its emotion (the common case). The MEGC2019 composite sets it for clips
  # that its official ground-truth list leaves out.
  exclude_reason: str = ""

  @property
  def global_subject(self) -> str:
    return f"{self.dataset}/{self.subject}"

  @property
  def key(self) -> str:
    return f"{self.dataset}/{self.subject}/{self.clip}"


def sheet_record(row: SheetRow, *, dataset: str, subject: str, clip: str,
                 class_set: ClassSet, frame_dir: epath.Path, prefix: str,
                 align: bool, columns: Sequence[str]) -> ClipRecord:
  """A ClipRecord from an annotation row.

  Args:
    columns: the row's (onset, apex, offset) column names; the apex may be
      missing ('/'), the onset must come before the offset.

  Raises:
    AnnotationError naming the sheet row.
  """
  onset_col, apex_col, offset_col = columns
  onset = parse_frame(row.get(onset_col), onset_col, row.where)
  apex = parse_frame(row.get(apex_col), apex_col, row.where,
                     allow_missing=True)
  offset = parse_frame(row.get(offset_col), offset_col, row.where)
  if onset > offset:
    raise AnnotationError(
        f"{row.where}: {onset_col} {onset} is after {offset_col} {offset}."
        f"{ANNOTATION_FIX}")
  emotion = str(row.get("Estimated Emotion") or "").strip()
  return ClipRecord(
      dataset=dataset, subject=subject, clip=clip, emotion=emotion,
      label=class_set.label(emotion, row.where), frame_dir=frame_dir,
      prefix=prefix, align=align, where=row.where, onset=onset, apex=apex,
      offset=offset, action_units=str(row.get("Action Units") or "").strip())


def frames_by_number(directory: epath.Path, prefix: str = "",
                     clip: str = "", where: str = "") -> dict[int, epath.Path]:
  """Frame number -> file for the images in `directory` named `prefix*`.

  Uses `edmdbn_jax.preprocess.list_frames`, which sorts numerically
  ('img9' < 'img10'). With `prefix` '' the folder must hold one family of
  frames (`list_frames` raises DataError for, e.g., both `img*` and
  `reg_img*`); with a prefix only the `<prefix><number>` images count.

  Raises:
    MissingFrameError: the folder is missing or holds no matching images,
      naming the clip, `where` (its sheet row) and the folder.
    DataError: two files share a frame number, or (no prefix) the folder
      holds two families of frames.
  """
  from edmdbn_jax.preprocess import io as pio  # pylint: disable=g-import-not-at-top
  try:
    paths = pio.list_frames(directory, prefix=prefix or None)
  except MissingFrameError as e:
    raise MissingFrameError(
        f"Clip {clip} ({where}): no frames in {directory}. Check the layout "
        f"described in the builder's MANUAL_DOWNLOAD_INSTRUCTIONS. ({e})"
    ) from e
  except DataError as e:
    raise DataError(f"Clip {clip} ({where}): {e}") from e
  # list_frames has refused two files with one frame number.
  return {pio.frame_number(p): epath.Path(p) for p in paths}


def middle_frame(numbers: Sequence[int]) -> int:
  """The SMIC convention for a clip without an apex: the middle frame.

  Args:
    numbers: sorted frame numbers of [onset, offset] that exist.

  Returns:
    numbers[len // 2] (for an even count, the later of the two middle ones).
  """
  return numbers[len(numbers) // 2]


def choose_stored_frames(numbers: Sequence[int], apex: int,
                         max_frames: int = DEFAULT_MAX_STORED_FRAMES
                         ) -> tuple[list[int], int]:
  """Frames a clip stores: all of them, or an even subsample with the apex.

  Args:
    numbers: sorted frame numbers from onset to offset (inclusive) that
      exist; numbers[0] is the onset and numbers[-1] the offset.
    apex: the apex frame number, one of `numbers`.
    max_frames: the most frames to keep (>= 3).

  Returns:
    (kept, apex_index): `kept` sorted frame numbers, `len(kept) <=
    max_frames`, always holding numbers[0], apex and numbers[-1] (indices 0,
    apex_index and len(kept) - 1). When subsampling, the frames are spread
    evenly over the index range, and the sample nearest the apex is moved
    onto the apex.
  """
  if max_frames < 3:
    raise ValueError(f"max_frames must be >= 3, got {max_frames}.")
  numbers = list(numbers)
  a = numbers.index(apex)
  if len(numbers) <= max_frames:
    return numbers, a
  pos = np.round(np.linspace(0, len(numbers) - 1, max_frames)).astype(int)
  if a not in pos:
    # Spacing > 1, so the nearest sample is an interior one unless the apex
    # is next to an end; either way replacing it keeps `pos` sorted/unique.
    nearest = int(np.argmin(np.abs(pos - a)))
    if nearest == 0:
      nearest = 1
    elif nearest == len(pos) - 1:
      nearest = len(pos) - 2
    pos[nearest] = a
    pos = np.sort(pos)
  kept = [numbers[i] for i in pos]
  return kept, kept.index(apex)


# --------------------------------------------------------------------------
# The build report.
# --------------------------------------------------------------------------


CLASS_SET_REASON = "emotion not in this class set"


@dataclasses.dataclass
class BuildReport:
  """What a build kept, excluded, skipped and repaired, and why.

  `excluded`: clips whose emotion the class set drops, or that a ground-truth
    list leaves out (`ClipRecord.exclude_reason`); not errors.
  `skipped`: clips that could not be built (missing keyframe files, no face
    in the onset frame).
  `repaired`: clips built after a documented rule changed an annotation.
  """
  dataset: str
  config: str
  frame_sources: dict[str, str] = dataclasses.field(default_factory=dict)
  notes: list[str] = dataclasses.field(default_factory=list)
  kept: list[dict[str, str]] = dataclasses.field(default_factory=list)
  excluded: list[dict[str, str]] = dataclasses.field(default_factory=list)
  skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
  repaired: list[dict[str, str]] = dataclasses.field(default_factory=list)
  # Builder-specific facts about the build's inputs, written as top-level
  # keys of the report (e.g. the MEGC2019 ground-truth file used).
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  # Annotation files read (path -> sha256 of the contents): a prepared
  # dataset whose files have since changed is refused (`ClipBuilder.
  # check_build`).
  # Keys are relative to `manual_dir` when under it, so a moved manual
  # directory still matches its build.
  inputs: dict[str, str] = dataclasses.field(default_factory=dict)
  manual_dir: Optional[str] = None
  # Clip key -> `listing_digest` of its frame folder, for every labelled
  # clip (kept or skipped): frames added to, removed from or renamed in a
  # clip's folder since the build (a missing frame supplied, say) make the
  # build stale too.
  frame_listings: dict[str, str] = dataclasses.field(default_factory=dict)

  def record_input(self, path: epath.PathLike):
    """Records an annotation file the clip list or labels came from."""
    path = epath.Path(path)
    key = str(path)
    if self.manual_dir:
      try:  # relative to the manual directory when under it (any OS)
        key = pathlib.PurePath(os.path.relpath(
            os.fspath(path), self.manual_dir)).as_posix()
        if key.startswith("../"):
          key = str(path)
      except ValueError:  # another drive
        key = str(path)
    self.inputs[key] = hashlib.sha256(path.read_bytes()).hexdigest()

  def keep(self, rec: ClipRecord):
    self.kept.append({"clip": rec.key, "subject": rec.global_subject,
                      "label": rec.label or "", "aligned": rec.align})

  def exclude(self, rec: ClipRecord):
    self.excluded.append({"clip": rec.key, "where": rec.where,
                          "emotion": rec.emotion,
                          "reason": rec.exclude_reason or CLASS_SET_REASON})

  def skip(self, rec: ClipRecord, reason: str):
    self.skipped.append({"clip": rec.key, "where": rec.where,
                         "reason": reason})

  def repair(self, rec: ClipRecord, rule: str, detail: str):
    self.repaired.append({"clip": rec.key, "where": rec.where, "rule": rule,
                          "detail": detail})

  def counts_by_dataset(self) -> dict[str, collections.Counter]:
    """Kept clips per source dataset and class."""
    by_dataset = collections.defaultdict(collections.Counter)
    for k in self.kept:
      by_dataset[k["subject"].split("/")[0]][k["label"]] += 1
    return by_dataset

  def alignment(self) -> dict[str, dict[str, int]]:
    out = collections.defaultdict(lambda: {"aligned": 0, "not_aligned": 0})
    for k in self.kept:
      out[k["subject"].split("/")[0]][
          "aligned" if k["aligned"] else "not_aligned"] += 1
    return dict(sorted(out.items()))

  def to_dict(self) -> dict[str, Any]:
    counts = collections.Counter(k["label"] for k in self.kept)
    subjects = sorted({k["subject"] for k in self.kept})
    by_dataset = self.counts_by_dataset()
    return {
        "dataset": self.dataset,
        "config": self.config,
        "num_clips": len(self.kept),
        "class_counts": dict(sorted(counts.items())),
        "class_counts_by_dataset": {
            d: dict(sorted(c.items())) for d, c in sorted(by_dataset.items())},
        "num_subjects": len(subjects),
        "subjects": subjects,
        "frame_sources": self.frame_sources,
        # Per source dataset, kept clips whose frames the toolkit face-
        # aligned and those only resized (official crops, '_resized'
        # configs): what experiments.predict must repeat on new material.
        "alignment": self.alignment(),
        "manual_dir": self.manual_dir,
        "inputs": self.inputs,
        "frame_listings": dict(sorted(self.frame_listings.items())),
        "excluded_by_class_set": dict(sorted(collections.Counter(
            canonical_emotion(e["emotion"]) for e in self.excluded
            if e["reason"] == CLASS_SET_REASON).items())),
        # Clips left out for another reason (e.g. not in the MEGC2019
        # ground-truth list), counted per reason.
        "excluded_other": dict(sorted(collections.Counter(
            e["reason"] for e in self.excluded
            if e["reason"] != CLASS_SET_REASON).items())),
        **self.extra,
        "notes": self.notes,
        "skipped": self.skipped,
        "repaired": self.repaired,
        "excluded": self.excluded,
    }

  def log(self):
    """Logs the summary, then each skip, repair and note as a warning.

    The summary is a warning when any clip was skipped, so that it shows
    with the default log level outside absl's app.run.
    """
    d = self.to_dict()
    level = logging.WARNING if self.skipped else logging.INFO
    logging.log(
        level,
        "%s [%s]: %d clips %s from %d subjects; frames from %s; excluded by "
        "class set %s%s; %d skipped; %d repaired.", self.dataset, self.config,
        d["num_clips"], d["class_counts"], d["num_subjects"],
        d["frame_sources"], d["excluded_by_class_set"],
        "".join(f"; excluded, {r}: {n}"
                for r, n in d["excluded_other"].items()),
        len(self.skipped), len(self.repaired))
    for s in self.skipped:
      logging.warning("Skipped %s (%s): %s", s["clip"], s["where"],
                      s["reason"])
    for r in self.repaired:
      logging.warning("Repaired %s (%s): %s: %s", r["clip"], r["where"],
                      r["rule"], r["detail"])
    for n in self.notes:
      logging.warning("%s", n)

  def write(self, directory: epath.PathLike) -> epath.Path:
    path = epath.Path(directory) / REPORT_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(self.to_dict(), indent=1))
    return path


def listing_digest(available: Mapping[int, epath.Path]) -> str:
  """sha256 of a clip folder's frame numbers and file names (not contents:
  listing a tree is cheap, reading every frame is not)."""
  text = "\n".join(f"{n}\t{p.name}" for n, p in sorted(available.items()))
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_report(builder) -> dict[str, Any]:
  """The `build_report.json` of a prepared builder."""
  path = epath.Path(builder.data_dir) / REPORT_FILENAME
  if not path.exists():
    raise DataError(f"{path} does not exist: was the dataset built by this "
                    "toolkit's builder?")
  return json.loads(path.read_text())


# --------------------------------------------------------------------------
# Resolving one clip into an example.
# --------------------------------------------------------------------------


def resolve_keyframes(rec: ClipRecord, available: Mapping[int, epath.Path],
                      report: BuildReport
                      ) -> Optional[tuple[list[int], int, list]]:
  """Applies the module's annotation rules to one clip.

  Args:
    rec: the clip.
    available: frame number -> file, from `frames_by_number`.
    report: receives skips.

  Returns:
    (numbers, apex, repairs): the sorted existing frame numbers of [onset,
    offset], the apex number among them, and the (rule, detail) repairs
    made, for the caller to record once the clip is kept (a clip skipped
    later, for a bad frame or no face, was not repaired); None when the
    clip is skipped.
  """
  ordered = sorted(available)
  onset = ordered[0] if rec.onset is None else rec.onset
  offset = ordered[-1] if rec.offset is None else rec.offset
  for what, n in (("onset", onset), ("offset", offset)):
    if n not in available:
      report.skip(rec, f"{what} frame {n} not found in {rec.frame_dir} "
                  f"(expected a file named {rec.prefix or ''}{n} or "
                  f"zero-padded; the folder holds frames {ordered[0]}.."
                  f"{ordered[-1]})")
      return None
  if onset == offset:
    # Skipped, not an error: a row the class set drops must not end a build.
    report.skip(rec, f"onset and offset are both frame {onset}: a one-frame "
                "clip holds no motion to recognise (the model reads frame "
                "differences from the onset); check its annotation")
    return None
  numbers = [n for n in ordered if onset <= n <= offset]
  repairs = []
  gap = (offset - onset + 1) - len(numbers)
  if gap:
    repairs.append(("frames_missing_in_range",
                    f"{gap} frame(s) of [{onset}, {offset}] are not on disk; "
                    "stored the ones that are"))
  apex = rec.apex
  if apex is None:
    apex = middle_frame(numbers)
    if rec.onset is not None:  # SMIC-HS has no apex by design: not a repair.
      repairs.append(("apex_missing_middle_frame",
                      f"no apex annotated; used the middle frame {apex} of "
                      f"[{onset}, {offset}]"))
  elif not onset <= apex <= offset:
    # Not clamped: the onset and offset are the neutral ends of the clip, so
    # an apex clamped onto either would make apex - onset (the whole-face
    # input) near zero. An impossible apex is treated as a missing one.
    middle = middle_frame(numbers)
    repairs.append(("apex_outside_range_middle_frame",
                    f"annotated apex {apex} is outside [{onset}, {offset}]; "
                    f"used the middle frame {middle} instead (clamping it "
                    "onto the neutral onset or offset would leave no "
                    "motion)"))
    apex = middle
  if apex not in available:
    report.skip(rec, f"apex frame {apex} not found in {rec.frame_dir}")
    return None
  return numbers, apex, repairs


def make_example(rec: ClipRecord, available: Mapping[int, epath.Path],
                 numbers: Sequence[int], apex: int, preprocessors: Sequence,
                 max_frames: int) -> tuple[dict[str, Any], int, tuple]:
  """Reads, aligns and packs one clip as a `clip_features` example.

  Args:
    preprocessors: FacePreprocessors tried in order while one finds no face
      (the frames are read once); the last one's NoFaceError propagates.

  Returns:
    (example, i, sizes): the example dict, `frames` uint8 (N, S, S, 3),
    N <= max_frames, with onset at index 0, offset at N - 1; the index of
    the preprocessor that made it; the source frames' (h, w) sizes, the
    onset's first.
  """
  from edmdbn_jax.preprocess import io as pio  # pylint: disable=g-import-not-at-top
  kept, apex_idx = choose_stored_frames(numbers, apex, max_frames)
  images = [pio.load_image(available[n]) for n in kept]
  for used, preprocessor in enumerate(preprocessors):
    try:
      frames = preprocessor.process_clip(images, clip=rec.key)
      break
    except NoFaceError:
      if used == len(preprocessors) - 1:
        raise
  frames = np.asarray(frames, dtype=np.uint8)
  return {
      "frames": frames,
      "frame_numbers": np.asarray(kept, dtype=np.int32),
      "onset": 0,
      "apex": apex_idx,
      "offset": len(kept) - 1,
      "label": rec.label,
      "label_name": rec.label,
      "emotion": rec.emotion,
      "subject": rec.global_subject,
      "dataset": rec.dataset,
      "clip": rec.clip,
      "action_units": rec.action_units,
  }, used, list(dict.fromkeys(tuple(i.shape[:2]) for i in images))


def check_unique(records: Sequence[ClipRecord]):
  """AnnotationError naming both rows when two records share a key, or the
  rows where one dataset writes one subject number two ways."""
  seen = {}
  for r in records:
    if r.key in seen:
      raise AnnotationError(
          f"Clip {r.key} is annotated twice: {seen[r.key]} and {r.where}. "
          "Remove the duplicate row.")
    seen[r.key] = r.where
  # One person written two ways ('S1' and '01') would be two LOSO subjects:
  # held out under one spelling, trained on under the other.
  spellings = collections.defaultdict(dict)
  for r in records:
    # Ids of letters then a number ('sub01', 'S1', '006'); others ('s1_2')
    # are not compared.
    m = re.fullmatch(r"[A-Za-z]*(\d+)", r.subject)
    if m:
      spellings[r.dataset, int(m.group(1))].setdefault(r.subject, r.where)
  for (dataset, number), found in sorted(spellings.items()):
    if len(found) > 1:
      listed = "; ".join(f"{s!r} ({w})" for s, w in found.items())
      raise AnnotationError(
          f"{dataset}: subject {number} is written {len(found)} ways: "
          f"{listed}. They would be separate LOSO subjects (one person held "
          "out and trained on at once); write one id for each person.")


# --------------------------------------------------------------------------
# The builder base class.
# --------------------------------------------------------------------------


class ClipConfig(tfds.core.BuilderConfig):
  """A class set x stored size x frame-source variant."""

  def __init__(self, *, num_classes: int, image_size: int,
               class_names: Sequence[str], variant: str = "",
               max_frames: int = DEFAULT_MAX_STORED_FRAMES, **kwargs):
    if variant not in VARIANTS:
      raise ValueError(f"Unknown variant {variant!r}; choose from {VARIANTS}.")
    super().__init__(
        name=config_name(num_classes, image_size, variant), **kwargs)
    self.num_classes = num_classes
    self.image_size = image_size
    self.class_names = tuple(class_names)
    self.variant = variant
    self.max_frames = max_frames


def make_configs(class_sets: Mapping[int, ClassSet],
                 variants: Sequence[str] = VARIANTS) -> list[ClipConfig]:
  """Every class set x IMAGE_SIZES x variant."""
  out = []
  for k in sorted(class_sets, reverse=True):
    for s in IMAGE_SIZES:
      for v in variants:
        desc = (f"{k} classes {list(class_sets[k].classes)}, {s}x{s} frames, "
                f"frame source {v or 'default'}")
        out.append(ClipConfig(num_classes=k, image_size=s, variant=v,
                              class_names=class_sets[k].classes,
                              description=desc))
  return out


class ClipBuilder(tfds.core.GeneratorBasedBuilder):
  """Base of the licensed clip builders: one `train` split, LOSO later.

  Subclasses set DATASET, MANUAL_DOWNLOAD_INSTRUCTIONS, BUILDER_CONFIGS and
  implement `find_clips`.
  """

  VERSION = tfds.core.Version("1.2.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Aligned 64 and 112 px crops are aligned and cropped at 224 "
               "px, then shrunk: the same face region as the 224 px crop "
               "(the 10 px top margin was applied at the small size).",
      "1.2.0": "An apex annotated outside [onset, offset] is replaced by the "
               "middle frame (was clamped onto the onset or offset, leaving "
               "no whole-face motion); the build report records the "
               "annotation files read, so a build whose files changed is "
               "refused at load.",
  }
  DATASET = ""
  HOMEPAGE = ""

  # The dataset module's `find_clips(manual_dir, class_set, variant,
  # report)`, set by each subclass as a staticmethod.
  FIND_CLIPS = None

  def find_clips(self, manual_dir: epath.Path,
                 report: BuildReport) -> list[ClipRecord]:
    """Parses the annotation and chooses frame sources; reads no frames.

    Records the chosen frame source(s) in `report.frame_sources`.
    """
    cfg = self.builder_config
    return type(self).FIND_CLIPS(
        manual_dir, CLASS_SETS[self.DATASET][cfg.num_classes], cfg.variant,
        report)

  def preprocessing(self) -> dict[str, Any]:
    """What a prepared build's frames went through (from its report), for
    prediction on new material to repeat: per source dataset the frame
    source and how many kept clips were face-aligned by the toolkit or only
    resized (`alignment`; None for builds made before it was recorded),
    and the most frames a clip stores."""
    report = read_report(self)
    return {"frame_sources": report.get("frame_sources", {}),
            "alignment": report.get("alignment"),
            "max_stored_frames": int(self.builder_config.max_frames)}

  def check_build(self, manual_dir: Optional[epath.PathLike]) -> str:
    """Refuses a prepared dataset that no longer matches `manual_dir`.

    Called by `datasets.load` and the build command. tfds reuses a prepared
    dataset whatever the manual directory holds now, so an annotation file
    added, removed or edited since the build (a corrected sheet, the other
    CASME II sheet, the MEGC2019 ground-truth list), a frame source that
    changed, or frames added to or removed from a clip's folder (a missing
    frame supplied after the build skipped its clip) would be silently
    ignored. The annotation files read at the build are hashed again first;
    then the clip list is worked out again and every labelled clip's folder
    listed (annotations and file names only, no frame is read) and compared
    with the build's report. A manual directory that no longer yields a
    clip list is refused too: the build cannot be checked against it.

    Returns:
      What was compared, for the build command to say.

    Raises:
      DataError: listing what changed and how to rebuild.
    """
    built = read_report(self)
    if "inputs" not in built:
      # Built before inputs were recorded (builder 1.1.0): nothing to compare.
      logging.warning("The prepared dataset %s records no inputs (built by "
                      "an older version): it cannot be checked against the "
                      "manual directory; --overwrite rebuilds it.",
                      self.data_dir)
      return "not checked (built by an older version)"
    manual = epath.Path(os.path.abspath(os.path.expanduser(
        os.fspath(manual_dir))))
    if not manual.exists():
      logging.warning(
          "The manual directory %s does not exist, so the prepared dataset "
          "%s (built from %s) cannot be checked against it; using it as "
          "built. Leave out the manual directory to use a build without "
          "its source files.", manual, self.data_dir, built.get("manual_dir"))
      return f"not checked ({manual} does not exist)"
    changes, flagged = [], set()
    for key, digest in sorted(built["inputs"].items()):
      path = epath.Path(key) if os.path.isabs(key) else manual / key
      if not path.exists():
        changes.append(f"{key}: read when it was built, but not now (removed "
                       "since)")
      elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
        changes.append(f"{key}: its contents have changed since the build")
      else:
        continue
      flagged.add(key)
    now = BuildReport(self.name, self.builder_config.name,
                      manual_dir=str(manual))
    try:
      records = self.find_clips(manual, now)
      check_unique(records)
      listings = list_clip_frames(records)
    except DataError as e:
      listed = "".join(f"\n  {c}" for c in changes)
      raise DataError(
          f"The prepared dataset at {self.data_dir} cannot be checked "
          f"against the manual directory {manual}, which no longer yields "
          f"the clip list:{listed}\n{e}\nFix the manual directory and "
          f"rebuild ({self.rebuild_command(str(manual))}), or leave out the "
          "manual directory to use the build as it is.") from e
    for key in sorted(set(built["inputs"]) - set(now.inputs) - flagged):
      changes.append(f"{key}: read when it was built, but not now (another "
                     "file now takes precedence)")
    for key in sorted(set(now.inputs) - set(built["inputs"])):
      changes.append(f"{key}: read now, but not when it was built (added "
                     "since, or it now takes precedence)")
    def source(sources, ds, root):
      # Paths under the manual directory, made relative to it (a path
      # prefix, not any occurrence of the string: a relative root such as
      # 'o' would match inside words).
      text = sources.get(ds)
      if text and root:
        text = text.replace(root.rstrip("/") + "/", "<manual_dir>/")
      return text
    for ds in sorted(set(built["frame_sources"]) | set(now.frame_sources)):
      old = source(built["frame_sources"], ds, built.get("manual_dir"))
      new = source(now.frame_sources, ds, now.manual_dir)
      if old != new:
        changes.append(f"{ds} frames: built from {old}, now {new}")
    checked = "annotation files and frame source unchanged"
    if "frame_listings" not in built:  # Builds before 2026-12-02 lack them.
      logging.warning(
          "The prepared dataset %s predates frame-folder checks: frames "
          "added to or removed from clip folders since it was built (a "
          "missing frame supplied, say) are not detected; --overwrite "
          "rebuilds it with them.", self.data_dir)
      checked += "; frame folders not checked (built by an older version)"
    else:
      checked = (f"annotation files, frame source and {len(listings)} clip "
                 "folders unchanged")
      old_listings = built["frame_listings"]
      where = {r.key: r.frame_dir for r in records}
      for label, keys in (
          ("labelled now, not at the build",
           sorted(set(listings) - set(old_listings))),
          ("labelled at the build, not now",
           sorted(set(old_listings) - set(listings)))):
        if keys:
          changes.append(f"{len(keys)} clip(s) {label}: {', '.join(keys[:5])}"
                         f"{' ...' if len(keys) > 5 else ''}")
      differ = sorted(k for k in set(old_listings) & set(listings)
                      if old_listings[k] != listing_digest(listings[k]))
      for k in differ[:10]:
        changes.append(f"{k}: its frame folder {where[k]} lists other "
                       "frames than at the build (frames added, removed or "
                       "renamed)")
      if len(differ) > 10:
        changes.append(f"... and {len(differ) - 10} more clips whose frame "
                       "folders changed")
    if changes:
      listed = "\n  ".join(changes)
      raise DataError(
          f"The prepared dataset at {self.data_dir} no longer matches the "
          f"manual directory {manual}:\n  {listed}\nRebuild it: "
          f"{self.rebuild_command(str(manual))} (or delete "
          f"{epath.Path(self.data_dir).parent}, or pass another --data_dir)."
      )
    skipped = built.get("skipped", [])
    if skipped:
      # Folder listings compare file names: a bad frame replaced under its
      # own name does not show, so the skips are recalled here.
      checked += (f"; {len(skipped)} clip(s) were skipped at the build "
                  f"({', '.join(s['clip'] for s in skipped[:5])}"
                  f"{' ...' if len(skipped) > 5 else ''}: build_report.json "
                  "says why); a frame replaced under its own name is not "
                  "detected, so rebuild with --overwrite after fixing one")
    return f"checked against {manual}: {checked}"

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return self.dataset_info_from_configs(
        features=clip_features(cfg.image_size, cfg.class_names),
        homepage=self.HOMEPAGE)

  def _manual_dir(self, dl_manager) -> epath.Path:
    try:
      return epath.Path(dl_manager.manual_dir)
    except (AssertionError, OSError) as e:
      # (tfds's AssertionError repeats the instructions given below.)
      given = getattr(dl_manager, "_manual_dir", None)
      what = ("a file, not a folder" if given and os.path.isfile(given)
              else "missing or empty")
      raise DataError(
          f"The manual directory for {self.name}"
          f"{f' ({given})' if given else ''} is {what}. Pass manual_dir= "
          "(or --manual_dir) pointing at the folder that holds the licensed "
          f"files:\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}") from e

  def _split_generators(self, dl_manager):
    # Absolute: the report's paths must still match when the dataset is
    # loaded from another working directory.
    manual = epath.Path(os.path.abspath(os.fspath(
        self._manual_dir(dl_manager))))
    report = BuildReport(self.name, self.builder_config.name,
                         manual_dir=str(manual))
    records = self.find_clips(manual, report)
    check_unique(records)
    listings = list_clip_frames(records)
    report.frame_listings = {k: listing_digest(v) for k, v in listings.items()}
    return {"train": self._generate_examples(records, report, listings)}

  def rebuild_command(self, manual_dir: Optional[str] = None) -> str:
    """The command that rebuilds this config from scratch."""
    return (f"python -m edmdbn_jax.datasets.build {self.name} "
            f"--config={self.builder_config.name} "
            f"--manual_dir={shlex.quote(manual_dir) if manual_dir else 'DIR'} "
            f"--data_dir={shlex.quote(str(self.data_dir_root))} --overwrite")

  def finish_report(self, report: BuildReport):
    """Adds builder-specific findings once every clip was resolved (the
    report's kept, skipped and excluded lists are final here)."""
    del report

  def _generate_examples(self, records: Sequence[ClipRecord],
                         report: BuildReport,
                         listings: Optional[
                             Mapping[str, Mapping[int, epath.Path]]] = None
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (key, example) per kept clip; writes the build report.

    Args:
      records: the clips, from `find_clips`.
      report: receives kept, excluded, skipped and repaired clips.
      listings: clip key -> `frames_by_number` of every labelled clip, from
        `list_clip_frames` (computed here when None).
    """
    from edmdbn_jax.preprocess import FacePreprocessor  # pylint: disable=g-import-not-at-top
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    cfg = self.builder_config
    if listings is None:
      listings = list_clip_frames(records)
    preprocessors = {}
    stretched = collections.defaultdict(list)  # dataset -> [(clip, WxH)]

    def preprocessor(align, upsample):
      if (align, upsample) not in preprocessors:
        preprocessors[align, upsample] = FacePreprocessor(
            image_size=cfg.image_size, align=align, upsample=upsample)
      return preprocessors[align, upsample]

    for rec in tqdm(records, desc=f"{self.name} {cfg.name}", unit="clip"):
      if rec.label is None:
        report.exclude(rec)
        continue
      available = listings[rec.key]
      resolved = resolve_keyframes(rec, available, report)
      if resolved is None:
        continue
      numbers, apex, repairs = resolved
      onset_file = available[numbers[0]]
      try:
        # dlib's detector misses faces under about 80 px at its native
        # scale; one upsampling pass finds them (slower, so only then).
        example, upsampled, sizes = make_example(
            rec, available, numbers, apex,
            preprocessors=[preprocessor(rec.align, u) for u in (0, 1)],
            max_frames=cfg.max_frames)
      except NoFaceError:
        report.skip(rec, no_face_reason(onset_file))
        continue
      except DataError as e:
        # One bad clip (an undecodable frame, frames of two sizes) must not
        # end a build of hundreds after hours of alignment: skipped, with
        # the file and the fix, and listed in the report.
        report.skip(rec, f"{e} Fix it, then rebuild: "
                    f"{self.rebuild_command(report.manual_dir)}.")
        continue
      h, w = sizes[0]
      if not rec.align and h != w:
        stretched[rec.dataset].append((rec.key, f"{w}x{h}"))
      if len(sizes) > 1:  # (only resized: aligning refuses several sizes)
        repairs.append(several_sizes_repair(sizes, cfg.image_size))
      for rule, detail in repairs:
        report.repair(rec, rule, detail)
      if apex == numbers[0]:
        # Kept as annotated (the released code would use it too), but said:
        # the whole-face input apex - onset is zero for this clip.
        report.notes.append(
            f"{rec.key} ({rec.where}): the apex is the onset frame "
            f"{apex}, so the clip's apex - onset motion is zero (kept; "
            "check its annotation and frames).")
      if upsampled:
        report.repair(rec, "face_found_with_upsampling",
                      f"no face found in the onset frame {onset_file} at "
                      "the detector's native scale; found with one "
                      "upsampling pass (a small face: check the crop)")
      report.keep(rec)
      yield rec.key, example
    for dataset, clips in sorted(stretched.items()):
      # (The preprocessor's warning is logged once per process.)
      report.notes.append(stretched_note(dataset, clips, cfg.image_size))
    self.finish_report(report)
    report.log()
    if not report.kept:
      # tfds would fail with "No examples were yielded" and delete the
      # temporary folder holding the report: say why here instead.
      listed = "\n".join(f"  {s['clip']} ({s['where']}): {s['reason']}"
                         for s in report.skipped)
      raise DataError(
          f"{self.name} [{cfg.name}]: no clip could be built; "
          f"{len(report.skipped)} skipped, {len(report.excluded)} excluded "
          f"by the class set:\n{listed}\nFix the frames named above, or "
          "choose another config's frame source: the '_resized' or "
          "'_aligned' configs of the build command (from experiments.loso: "
          "--config.data.variant=resized or aligned).")
    # During download_and_prepare, data_path is the temporary folder that
    # tfds renames into place, so the report lands beside the record files.
    report.write(self.data_path)


def several_sizes_repair(sizes: Sequence[tuple[int, int]],
                         image_size: int) -> tuple[str, str]:
  """The (rule, detail) repair of a clip whose frames, only resized, come in
  several (h, w) `sizes`. Kept: official crops may be one face box per
  frame, for which resizing each is right; a stray frame of another size is
  not."""
  return ("frames_of_several_sizes_resized_each", (
      f"the frames come in {len(sizes)} sizes ("
      f"{', '.join(f'{b}x{a}' for a, b in sizes[:4])}"
      f"{' ...' if len(sizes) > 4 else ''}); each was resized to "
      f"{image_size}x{image_size} on its own. Right for crops of the face "
      "in each frame; if a frame was replaced from another source, its "
      "difference to the others is off: check the folder"))


def stretched_note(dataset: str, clips: Sequence[tuple[str, str]],
                   image_size: int) -> str:
  """The report note naming `clips` ((key, 'WxH')) of non-square frames that
  were resized without face alignment."""
  sizes = sorted({size for _, size in clips})
  return (
      f"{dataset}: {len(clips)} clip(s) of non-square frames "
      f"({', '.join(sizes[:3])}{' ...' if len(sizes) > 3 else ''}) were "
      f"resized to {image_size}x{image_size} without face alignment, so "
      f"their faces are stretched: {', '.join(k for k, _ in clips[:5])}"
      f"{' ...' if len(clips) > 5 else ''}. The released code resizes "
      "official crops so too; an '_aligned' config aligns and crops square "
      "faces instead.")


def no_face_reason(onset_file: epath.Path) -> str:
  """The report's reason for a clip skipped because no face was found."""
  return (
      f"no face found in the onset frame {onset_file} (dlib's detector, at "
      "its native scale and with one upsampling pass for small faces), so "
      "the clip cannot be face-aligned. The frames must show one roughly "
      "frontal face; check that file, or build the dataset's official-crops "
      "variant (the default config where the dataset ships crops, e.g. CASME "
      "II `Cropped`, SMIC `reg_image*`) if it has one, or a '_resized' config "
      "if your frames are already face crops (e.g. SAMM, MMEW cropped by "
      "you).")


def list_clip_frames(records: Sequence[ClipRecord]
                     ) -> dict[str, dict[int, epath.Path]]:
  """Lists the frame folder of every labelled clip before any frame is read.

  Only file names are read (`frames_by_number`), so a tree with missing or
  empty clip folders fails in seconds, with every problem folder listed,
  rather than one per run after hours of face alignment.

  Args:
    records: the clips; those the class set excludes (label None) are not
      listed.

  Returns:
    Clip key -> frame number -> file, for every labelled clip.

  Raises:
    MissingFrameError: some clip folders are missing or hold no frames; the
      message lists each with its clip, annotation row and folder.
    DataError: likewise, when some problems are of another kind (two files
      with one frame number, two families of frames in one folder).
  """
  listings, problems = {}, []
  for rec in records:
    if rec.label is None:
      continue
    try:
      listings[rec.key] = frames_by_number(rec.frame_dir, rec.prefix,
                                           rec.key, rec.where)
    except DataError as e:
      problems.append((rec.key, e))
  if problems:
    kind = (MissingFrameError
            if all(isinstance(e, MissingFrameError) for _, e in problems)
            else DataError)
    # Every clip is named, the first ones in full (a wrong frame source, an
    # empty `Cropped` folder say, fails hundreds of clips alike).
    shown = 20
    listed = "\n".join(f"  {i}. {e}"
                       for i, (_, e) in enumerate(problems[:shown], 1))
    if len(problems) > shown:
      rest = [key for key, _ in problems[shown:]]
      listed += (f"\n  ... and {len(rest)} more clips: {', '.join(rest)}")
    raise kind(
        f"{len(problems)} of {len(listings) + len(problems)} labelled clips "
        "have no usable frame folder (checked before reading any frame):\n"
        f"{listed}\nFix the tree as the builder's "
        "MANUAL_DOWNLOAD_INSTRUCTIONS describe (or complete the download), "
        "then build again.")
  return listings


def choose_source(variant: str, crops: Optional[FrameSource],
                  raw: Optional[FrameSource], instructions: str,
                  dataset: str) -> FrameSource:
  """Picks the frame source for `variant` (see VARIANTS).

  Args:
    variant: '', 'aligned' or 'resized'.
    crops: the official crops (align=False), None when the dataset has none.
    raw: the raw frames (align=True), None when the dataset has none.
    instructions: the builder's MANUAL_DOWNLOAD_INSTRUCTIONS, for errors.
    dataset: name for messages.

  Raises:
    DataError: naming the folders looked for when the needed one is absent.
  """
  have_crops = crops is not None and crops.root.exists()
  have_raw = raw is not None and raw.root.exists()
  if variant == "aligned":
    if have_raw:
      return raw
    looked = [raw.root] if raw is not None else []
  elif variant == "resized":
    src = crops if have_crops else raw if have_raw else None
    if src is not None:
      return dataclasses.replace(src, align=False,
                                 name=src.name + ", resized only")
    looked = [s.root for s in (crops, raw) if s is not None]
  else:
    if have_crops:
      return crops
    if have_raw:
      return raw
    looked = [s.root for s in (crops, raw) if s is not None]
  listed = "\n  ".join(str(p) for p in looked)
  raise DataError(
      f"{dataset}: no frame folder for variant {variant or 'default'!r}; "
      f"looked for:\n  {listed}\n{instructions}")
