"""Fabricated look-alike raw trees of the licensed micro-expression datasets.

No licensed file is used: the workbooks are written with openpyxl using the
real header rows and the quirks documented in
shared/reference/datasets.md (blank unnamed columns, text and numeric
subject ids mixed, a '/' apex, a notes block above SAMM's header, 'Other' /
'Others' spellings, apexes outside [onset, offset], a missing frame file),
and the frames are 48 x 48 noise images (greyscale for SAMM) with the real
file naming. `face=True` trees use `skimage.data.astronaut()` (public domain)
as raw frames so the face-alignment path has a face to find.

Each `fabricate_*` writes under `manual_dir` the folder its builder reads
(CASME2/, SAMM/, SMIC/, MMEW/) and returns that folder. The expected counts
for each tree are written out by hand in tests/test_builders.py.
"""

import pathlib
import re
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np
import openpyxl

_SIZE = 48


def _noise(rng: np.random.Generator, grey: bool = False) -> np.ndarray:
  shape = (_SIZE, _SIZE) if grey else (_SIZE, _SIZE, 3)
  return rng.integers(0, 256, shape, dtype=np.uint8)


def _face(rng: np.random.Generator, i: int, small: bool = False
          ) -> np.ndarray:
  """Astronaut photo (BGR), shifted by up to 2 px so frames differ.

  `small`: the photo at half size on a grey 512 x 512 canvas, a face of
  about 45 px that dlib finds only with one upsampling pass.
  """
  from skimage import data  # pylint: disable=g-import-not-at-top
  img = data.astronaut()[:, :, ::-1]
  if small:
    half = cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    img = np.full_like(img, 128)
    img[100:100 + half.shape[0], 100:100 + half.shape[1]] = half
  dx = int(rng.integers(-2, 3)) if i else 0
  return np.ascontiguousarray(np.roll(img, dx, axis=1))


STAMP = 16  # Noise frames carry their frame number in this top-left square.


def frame_code(number: int) -> int:
  """The grey level stamped on noise frame `number` (see `read_code`).

  Consecutive numbers differ by 23 levels, so JPEG and resizing (a few
  levels) cannot turn one frame's code into another's.
  """
  return 16 + (23 * number) % 224


def read_code(frame: np.ndarray) -> int:
  """The stamp's grey level in a stored frame (any size >= the source's)."""
  k = frame.shape[0] * STAMP // (2 * _SIZE)  # The stamp's centre.
  return int(np.round(np.mean(frame[k - 1:k + 2, k - 1:k + 2])))


def _write_frames(folder: pathlib.Path, names: Iterable[str],
                  rng: np.random.Generator, grey: bool = False,
                  face: bool = False, small: bool = False):
  folder.mkdir(parents=True, exist_ok=True)
  for i, name in enumerate(names):
    if face:
      img = _face(rng, i, small)
    else:
      img = _noise(rng, grey)
      # A flat JPEG block-aligned square: stored pixels can be traced back
      # to the file (and so the frame number) they were read from.
      img[:STAMP, :STAMP] = frame_code(int(re.findall(r"\d+", name)[-1]))
    if not cv2.imwrite(str(folder / name), img):
      raise OSError(f"could not write {folder / name}")


def _workbook(path: pathlib.Path, rows: Sequence[Sequence[object]],
              title: str = "Sheet1"):
  wb = openpyxl.Workbook()
  ws = wb.active
  ws.title = title
  for r in rows:
    ws.append(list(r))
  path.parent.mkdir(parents=True, exist_ok=True)
  wb.save(path)


# --------------------------------------------------------------------------
# CASME II
# --------------------------------------------------------------------------

CASME2_HEADER = ("Subject", "Filename", None, "OnsetFrame", "ApexFrame",
                 "OffsetFrame", None, "Action Units", "Estimated Emotion")
# (subject cell, clip, onset, apex, offset, emotion 2019, emotion 2014, AUs)
CASME2_ROWS = (
    ("01", "EP02_01f", 46, 50, 55, "happiness", "happiness", "12"),
    (1, "EP03_02", 10, 12, 14, "others", "others", "4"),
    (2, "EP02_01f", 5, 9, 12, "disgust", "disgust", "9"),
    ("02", "EP09_05", 100, 120, 139, "repression", "repression", "14"),
    # '/' apex, and relabelled sadness -> surprise in the 2019 sheet.
    (4, "EP12_01f", 20, "/", 30, "surprise", "sadness", "1+2"),
    (4, "EP13_02", 3, 5, 8, "sadness", "sadness", "1"),
    ("05", "EP01_01", 1, 3, 6, "fear", "fear", "4+5"),
    # A 'sub05' subject cell and capitalised 'Others'.
    ("sub05", "EP05_03", 30, 33, 36, "Others", "Others", "R4"),
    # Offset frame 16 is missing on disk: skipped.
    (5, "EP07_01", 10, 14, 16, "happiness", "happiness", "12"),
    # Frame 4 is missing inside the range: kept with a repair.
    ("01", "EP04_02", 1, 3, 6, "disgust", "disgust", "9+L10"),
)
CASME2_MISSING = {("sub05", "EP07_01"): (16,), ("sub01", "EP04_02"): (4,)}
# Frames on disk outside [onset, offset] (as in the real folders).
_CASME2_EXTRA_BEFORE = 2


def fabricate_casme2(manual_dir: pathlib.Path,
                     sheets: Sequence[str] = ("2019",), crops: bool = True,
                     raw: Optional[str] = None, bad_row: bool = False,
                     faceless: Sequence[str] = (),
                     small_faces: Sequence[str] = (),
                     seed: int = 0) -> pathlib.Path:
  """Writes <manual_dir>/CASME2 with 10 annotated clips of 4 subjects.

  Args:
    manual_dir: the manual directory.
    sheets: which workbooks to write: '2019' (CASME2-coding-20190701.xlsx,
      with the `Objective Classes` column) and/or '2014'
      (CASME2-coding-20140508.xlsx, where EP12_01f is sadness).
    crops: write `Cropped/subXX/<clip>/reg_img<n>.jpg`.
    raw: None, 'noise' or 'face': write `CASME2_RAW_selected/.../img<n>.jpg`.
    bad_row: append a row whose OnsetFrame is 'n/a'.
    faceless: clips (e.g. 'EP09_05') whose raw frames are noise even when
      raw='face': no face for the aligner to find.
    small_faces: clips whose raw face frames (raw='face') show the face at
      about 45 px, found only with the detector's upsampling.
    seed: noise seed.

  Returns:
    <manual_dir>/CASME2.
  """
  root = pathlib.Path(manual_dir) / "CASME2"
  rng = np.random.default_rng(seed)
  for year in sheets:
    header = CASME2_HEADER + (("Objective Classes",) if year == "2019" else ())
    rows = [header]
    for subj, clip, on, ap, off, e19, e14, aus in CASME2_ROWS:
      emotion = e19 if year == "2019" else e14
      row = (subj, clip, None, on, ap, off, None, aus, emotion)
      rows.append(row + ((3,) if year == "2019" else ()))
    if bad_row:
      rows.append(("06", "EP01_02", None, "n/a", 5, 9, None, "4", "others"))
    name = ("CASME2-coding-20190701.xlsx" if year == "2019"
            else "CASME2-coding-20140508.xlsx")
    _workbook(root / name, rows)
  folders = []
  if crops:
    folders.append(("Cropped", "reg_img", False))
  if raw:
    folders.append(("CASME2_RAW_selected", "img", raw == "face"))
  for top, prefix, face in folders:
    for subj, clip, on, _, off, *_ in CASME2_ROWS:
      sub = "sub" + str(int(str(subj).replace("sub", ""))).zfill(2)
      missing = CASME2_MISSING.get((sub, clip), ())
      numbers = [n for n in range(on - _CASME2_EXTRA_BEFORE, off + 1)
                 if n >= 0 and n not in missing]
      _write_frames(root / top / sub / clip,
                    [f"{prefix}{n}.jpg" for n in numbers], rng,
                    face=face and clip not in faceless,
                    small=clip in small_faces)
  return root


# --------------------------------------------------------------------------
# SAMM
# --------------------------------------------------------------------------

SAMM_HEADER = ("Subject", "Filename", "Inducement Code", "Onset Frame",
               "Apex Frame", "Offset Frame", "Duration", "Micro",
               "Action Units", "Estimated Emotion", "Objective Classes",
               "Notes")
# (subject cell, clip, onset, apex, offset, emotion)
SAMM_ROWS = (
    ("006", "006_1_2", 5562, 5566, 5570, "Happiness"),
    ("006", "006_1_3", 1000, 1004, 1008, "Anger"),
    (7, "007_2_1", 200, 203, 206, "Other"),
    ("007", "007_3_1", 300, 302, 304, "Others"),
    ("011", "011_1_1", 50, 53, 57, "surprise"),
    ("011", "011_2_2", 60, 62, 64, "Contempt"),
    ("028", "028_4_1", 400, 415, 410, "Anger"),     # apex after offset
    ("028", "028_5_1", 500, 502, 504, "Disgust"),
    ("032", "032_3_1", 100, 95, 106, "Fear"),       # apex before onset
)
SAMM_HEADER_ROW = 14


def fabricate_samm(manual_dir: pathlib.Path, seed: int = 1,
                   header_row: int = SAMM_HEADER_ROW) -> pathlib.Path:
  """Writes <manual_dir>/SAMM: 9 clips of 5 subjects, header on `header_row`.

  The notes above the header mention 'Subject' inside their text (not as a
  first cell), so only a reader that finds the header by its first cell
  gets the rows right.
  """
  root = pathlib.Path(manual_dir) / "SAMM"
  rng = np.random.default_rng(seed)
  preamble = [("SAMM Micro-Expression Database",), (),
              ("Notes: the Subject column is the participant id",),
              ("Micro-movements coded with FACS", "Subject to change")]
  if header_row - 1 < len(preamble):
    raise ValueError(f"header_row must be > {len(preamble)}")
  preamble += [()] * (header_row - 1 - len(preamble))
  rows = list(preamble) + [SAMM_HEADER]
  for i, (subj, clip, on, ap, off, emotion) in enumerate(SAMM_ROWS):
    rows.append((subj, clip, i % 3 + 1, on, ap, off, off - on + 1, "Micro",
                 "R12", emotion, "I", None))
  _workbook(root / "SAMM_Micro_FACS_Codes_v2.xlsx", rows, title="FACS_Codes")
  for subj, clip, on, _, off, _ in SAMM_ROWS:
    s = str(int(subj)).zfill(3)
    _write_frames(root / s / clip,
                  [f"{s}_{n:05d}.jpg" for n in range(on, off + 1)], rng,
                  grey=True)
  return root


# --------------------------------------------------------------------------
# SMIC-HS
# --------------------------------------------------------------------------

# (subject, emotion, clip, first frame, number of frames, raw too)
SMIC_CLIPS = (
    ("s1", "negative", "s1_ne_01", 302845, 7, True),
    ("s1", "positive", "s1_po_01", 99998, 6, False),  # crosses 5 -> 6 digits
    ("S02", "surprise", "s2_sur_01", 1200, 5, False),  # folder spelt S02
    ("s10", "negative", "s10_ne_02", 50, 9, False),
    ("s10", "negative", "s10_ne_03", 80, 4, False),
)


def fabricate_smic_hs(manual_dir: pathlib.Path, seed: int = 2
                      ) -> pathlib.Path:
  """Writes <manual_dir>/SMIC/HS: 5 clips of 3 subjects (.bmp frames)."""
  root = pathlib.Path(manual_dir) / "SMIC"
  rng = np.random.default_rng(seed)
  for subj, emotion, clip, first, n, with_raw in SMIC_CLIPS:
    folder = root / "HS" / subj / "micro" / emotion / clip
    numbers = range(first, first + n)
    _write_frames(folder, [f"reg_image{k}.bmp" for k in numbers], rng)
    if with_raw:
      _write_frames(folder, [f"image{k}.bmp" for k in numbers], rng)
  return root


# --------------------------------------------------------------------------
# MMEW
# --------------------------------------------------------------------------

MMEW_HEADER = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
               "Action Units", "Estimated Emotion", "remarks")
# (subject cell, clip, onset, apex, offset, emotion, emotion folder)
MMEW_ROWS = (
    (1, "S01_hap_01", 1, 4, 8, "happiness", "happiness"),
    (1, "S01_sur_01", 2, 5, 11, "surprise", "surprise"),
    (2, "S02_dis_01", 1, 3, 6, "disgust", "disgust"),
    (2, "S02_fea_01", 1, 3, 5, "fear", "fear"),
    ("03", "S03_oth_01", 3, 6, 10, "Others", "others"),
    (3, "S03_ang_01", 1, 2, 4, "anger", "anger"),
    ("03", "S03_sad_01", 1, 2, 4, "sadness", "sadness"),
)


def fabricate_mmew(manual_dir: pathlib.Path, seed: int = 3) -> pathlib.Path:
  """Writes <manual_dir>/MMEW: 7 clips of 3 subjects, frames <n>.jpg."""
  root = pathlib.Path(manual_dir) / "MMEW"
  rng = np.random.default_rng(seed)
  rows = [MMEW_HEADER]
  for subj, clip, on, ap, off, emotion, _ in MMEW_ROWS:
    rows.append((subj, clip, on, ap, off, "AU12", emotion, None))
  _workbook(root / "MMEW_Micro_Exp.xlsx", rows)
  for _, clip, on, _, off, _, folder in MMEW_ROWS:
    _write_frames(root / "MMEW_Final" / "Micro_Expression" / folder / clip,
                  [f"{n}.jpg" for n in range(1, off + 2)], rng)
  return root


def fabricate_megc2019(manual_dir: pathlib.Path) -> pathlib.Path:
  """CASME II (2014 and 2019 sheets), SAMM and SMIC-HS in one manual dir."""
  fabricate_casme2(manual_dir, sheets=("2014", "2019"))
  fabricate_samm(manual_dir)
  fabricate_smic_hs(manual_dir)
  return pathlib.Path(manual_dir)
