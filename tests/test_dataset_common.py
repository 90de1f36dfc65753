"""Annotation, frame-choice and class-set helpers of datasets/common.py."""

import pytest

from edmdbn_jax.datasets import common
from edmdbn_jax.errors import AnnotationError
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


def test_samm_header_found_below_notes(tmp_path):
  fabricate.fabricate_samm(tmp_path)
  rows = common.read_sheet(
      tmp_path / "SAMM" / "SAMM_Micro_FACS_Codes_v2.xlsx",
      ["Subject", "Onset Frame"])
  assert len(rows) == len(fabricate.SAMM_ROWS)
  assert rows[0].where.endswith(f"row {fabricate.SAMM_HEADER_ROW + 1}")
  assert rows[0].get("OnsetFrame") == 5562  # 'Onset Frame' matched loosely.
