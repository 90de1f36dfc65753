"""Annotation, frame-choice and class-set helpers of datasets/common.py."""

import dataclasses
import logging

from etils import epath
import pytest

from edmdbn_jax.datasets import common
from edmdbn_jax.errors import AnnotationError
from edmdbn_jax.errors import DataError
from edmdbn_jax.errors import MissingFrameError
from tests import fabricate


def test_choose_stored_frames_keeps_keyframes():
  numbers = list(range(100, 110))
  assert common.choose_stored_frames(numbers, 104, 33) == (numbers, 4)
  numbers = list(range(100, 140))  # 40 frames, cap 33.
  for apex in (100, 101, 117, 120, 138, 139):
    kept, a = common.choose_stored_frames(numbers, apex, 33)
    assert len(kept) == 33 and len(set(kept)) == 33
    assert kept == sorted(kept)
    assert kept[0] == 100 and kept[-1] == 139 and kept[a] == apex


def test_annotation_helpers():
  assert common.normalize_subject(1, 2, "x") == "01"
  assert common.normalize_subject(1.0, 2, "x") == "01"
  assert common.normalize_subject(" 01 ", 2, "x") == "01"
  assert common.normalize_subject(6, 3, "x") == "006"
  assert common.normalize_subject("s1", 2, "x") == "s1"
  assert common.parse_frame("/", "ApexFrame", "x", allow_missing=True) is None
  assert common.parse_frame(46.0, "OnsetFrame", "x") == 46
  assert common.parse_frame("46", "OnsetFrame", "x") == 46
  with pytest.raises(AnnotationError, match="row 7.*'OnsetFrame'"):
    common.parse_frame("/", "OnsetFrame", "row 7")
  samm5 = common.CLASS_SETS["samm"][5]
  assert samm5.label(" Others", "x") == "other"
  assert samm5.label("OTHER", "x") == "other"
  assert samm5.label("Disgust", "x") is None
  with pytest.raises(AnnotationError, match="row 3.*'joy'"):
    samm5.label("joy", "row 3")
  casme3 = common.CLASS_SETS["casme2"][3]
  assert casme3.label("repression", "x") == "negative"
  assert casme3.label("sadness", "x") is None  # MEGC drops CASME II sadness.
  assert common.CLASS_SETS["samm"][3].label("sadness", "x") == "negative"


@pytest.mark.parametrize("header_row", [fabricate.SAMM_HEADER_ROW, 5, 11, 17])
def test_samm_header_found_below_notes(tmp_path, header_row):
  # The common copy has its header on row 14; others may not (do not
  # hard-code it).
  fabricate.fabricate_samm(tmp_path, header_row=header_row)
  rows = common.read_sheet(
      tmp_path / "SAMM" / "SAMM_Micro_FACS_Codes_v2.xlsx",
      ["Subject", "Onset Frame"])
  assert len(rows) == len(fabricate.SAMM_ROWS)
  assert rows[0].where.endswith(f"row {header_row + 1}")
  assert rows[-1].where.endswith(
      f"row {header_row + len(fabricate.SAMM_ROWS)}")
  assert rows[0].get("OnsetFrame") == 5562  # 'Onset Frame' matched loosely.
  assert [r.get("Filename") for r in rows] == [
      c for _, c, *_ in fabricate.SAMM_ROWS]


def _workbook(path, sheets):
  """An .xlsx of {sheet title: rows}, in order."""
  import openpyxl  # pylint: disable=g-import-not-at-top
  wb = openpyxl.Workbook()
  wb.remove(wb.active)
  for title, rows in sheets.items():
    ws = wb.create_sheet(title)
    for row in rows:
      ws.append(row)
  wb.save(path)
  return path


HEADER = ["Subject", "Filename", "Estimated Emotion"]


def test_read_sheet_finds_the_annotation_sheet_and_refuses_ambiguity(
    tmp_path):
  rows = [HEADER, [1, "EP01", "happiness"], [2, "EP02", "others"]]
  # A notes sheet before the annotations is passed over.
  path = _workbook(tmp_path / "a.xlsx", {"ReadMe": [["see the paper"]],
                                         "Sheet1": rows})
  got = common.read_sheet(path, HEADER)
  assert [r.get("Filename") for r in got] == ["EP01", "EP02"]
  assert got[0].where == "a.xlsx, sheet 'Sheet1', row 2"
  # No sheet with the header: every sheet is named.
  path = _workbook(tmp_path / "b.xlsx", {"ReadMe": [["x"]], "S": [["y"]]})
  with pytest.raises(AnnotationError, match="in any sheet .'ReadMe', 'S'."):
    common.read_sheet(path, HEADER)
  # The first sheet holds the header: a later one (a summary) is not read.
  path = _workbook(tmp_path / "c.xlsx", {"A": rows, "B": rows[:2]})
  assert len(common.read_sheet(path, HEADER)) == 2
  # Not on the first sheet but on two later ones: unclear which.
  path = _workbook(tmp_path / "c2.xlsx", {"N": [["x"]], "A": rows, "B": rows})
  with pytest.raises(AnnotationError, match="sheets 'A', 'B' each have"):
    common.read_sheet(path, HEADER)
  # A required column named twice: the last one used to win unseen.
  path = _workbook(tmp_path / "d.xlsx", {"S": [
      HEADER + ["Estimated Emotion"], [1, "EP01", "others", "happiness"]]})
  with pytest.raises(AnnotationError,
                     match="columns C, D .* named 'Estimated Emotion'"):
    common.read_sheet(path, HEADER)
  # A header and nothing below it.
  path = _workbook(tmp_path / "e.xlsx", {"S": [HEADER, [None, " "]]})
  with pytest.raises(AnnotationError, match="no annotation rows"):
    common.read_sheet(path, HEADER)


def test_one_subject_written_two_ways_is_refused(tmp_path):
  def rec(subject, clip, row):
    return common.ClipRecord(
        dataset="mmew", subject=subject, clip=clip, emotion="x", label="x",
        frame_dir=epath.Path(tmp_path) / clip, prefix="", align=False,
        where=f"MMEW.xlsx, row {row}")
  common.check_unique([rec("01", "a", 2), rec("01", "b", 3),
                       rec("02", "c", 4)])
  # Ids that are not letters then a number are not compared ('s1_2' and
  # 's12' share digits, not a number).
  common.check_unique([rec("s1_2", "a", 2), rec("s12", "b", 3)])
  # The composite: one number in three datasets is three people.
  common.check_unique([
      dataclasses.replace(rec("sub01", "a", 2), dataset="casme2"),
      dataclasses.replace(rec("001", "b", 3), dataset="samm"),
      dataclasses.replace(rec("s1", "c", 4), dataset="smic_hs")])
  with pytest.raises(AnnotationError,
                     match=r"mmew: subject 1 is written 2 ways: '01' "
                           r"\(MMEW.xlsx, row 2\); 'S1' \(MMEW.xlsx, row 4\)"):
    common.check_unique([rec("01", "a", 2), rec("01", "b", 3),
                         rec("S1", "c", 4)])


def _record(tmp_path, clip, label="negative", prefix=""):
  return common.ClipRecord(
      dataset="toy", subject="01", clip=clip, emotion=label, label=label,
      frame_dir=epath.Path(tmp_path) / clip, prefix=prefix, align=False,
      where=f"toy.xlsx, row {len(clip)}")


def _summary(caplog):
  return [r for r in caplog.records if "clips" in r.getMessage()
          and "skipped" in r.getMessage()]


def test_report_summary_is_a_warning_when_clips_were_skipped(tmp_path,
                                                              caplog):
  caplog.set_level(logging.INFO, logger="absl")
  report = common.BuildReport("toy", "3class_64")
  report.keep(_record(tmp_path, "a"))
  report.log()
  assert [r.levelno for r in _summary(caplog)] == [logging.INFO]
  caplog.clear()
  report.skip(_record(tmp_path, "b"), "onset frame 3 not found")
  report.log()
  assert [r.levelno for r in _summary(caplog)] == [logging.WARNING]
  assert "1 skipped" in _summary(caplog)[0].getMessage()


def test_frames_by_number_rejects_two_frame_families(tmp_path):
  clip = tmp_path / "s1_ne_01"
  clip.mkdir()
  for n in (9, 10, 11):
    for prefix in ("image", "reg_image"):
      (clip / f"{prefix}{n}.bmp").write_bytes(b"x")  # Names only: not read.
  with pytest.raises(DataError, match=r"toy/01/s1_ne_01.*row 8.*s1_ne_01: "
                     r"this frame folder holds 2 families.*'image', "
                     r"'reg_image'"):
    common.frames_by_number(clip, "", "toy/01/s1_ne_01", "row 8")
  got = common.frames_by_number(clip, "reg_image", "toy/01/s1_ne_01", "row 8")
  assert {n: p.name for n, p in got.items()} == {
      9: "reg_image9.bmp", 10: "reg_image10.bmp", 11: "reg_image11.bmp"}


def test_list_clip_frames_reports_every_bad_folder_at_once(tmp_path):
  good = _record(tmp_path, "good", prefix="img")
  (tmp_path / "good").mkdir()
  for n in (1, 2, 3):
    (tmp_path / "good" / f"img{n}.jpg").write_bytes(b"x")
  missing = _record(tmp_path, "missing", prefix="img")
  empty = _record(tmp_path, "empty_clip", prefix="img")
  (tmp_path / "empty_clip").mkdir()
  wrong = _record(tmp_path, "wrong_names", prefix="img")
  (tmp_path / "wrong_names").mkdir()
  (tmp_path / "wrong_names" / "frame1.jpg").write_bytes(b"x")
  dropped = _record(tmp_path, "dropped_by_class_set", label=None)  # No folder.
  got = common.list_clip_frames([good, dropped])
  assert list(got) == ["toy/01/good"] and sorted(got["toy/01/good"]) == [1, 2,
                                                                         3]
  with pytest.raises(MissingFrameError) as e:
    common.list_clip_frames([good, missing, dropped, empty, wrong])
  msg = str(e.value)
  assert "3 of 4 labelled clips" in msg
  for rec in (missing, empty, wrong):
    assert rec.key in msg and rec.where in msg and str(rec.frame_dir) in msg
  assert "dropped_by_class_set" not in msg
