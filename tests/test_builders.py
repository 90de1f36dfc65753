"""Licensed-dataset builders on fabricated look-alike trees (tests/fabricate.py).

Every expected number below is counted by hand from the rows in
tests/fabricate.py, not computed with the code under test.
"""

import collections
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

from etils import epath
import numpy as np
import pytest

from edmdbn_jax import datasets
from edmdbn_jax.datasets import common
from edmdbn_jax.datasets.megc2019_composite import megc2019_composite_dataset_builder
from edmdbn_jax.datasets.smic_hs import smic_hs_dataset_builder as smic
from edmdbn_jax.errors import AnnotationError
from edmdbn_jax.errors import DataError
from edmdbn_jax.errors import MissingFrameError
from tests import fabricate

import edmdbn_jax.preprocess  # noqa: F401  (the builders read frames with it)

REPO = pathlib.Path(__file__).resolve().parents[1]


def _text(v):
  return v.decode() if isinstance(v, bytes) else str(v)


def _examples(source):
  return [source[i] for i in range(len(source))]


def _build(name, manual_dir, data_dir, num_classes, variant="resized",
           image_size=64):
  builder, source = datasets.load(
      name, num_classes=num_classes, image_size=image_size,
      data_dir=str(data_dir), manual_dir=str(manual_dir), variant=variant)
  return builder, _examples(source), common.read_report(builder)


def _counts(examples):
  return dict(collections.Counter(_text(e["label_name"]) for e in examples))


def _subjects(examples):
  return sorted({_text(e["subject"]) for e in examples})


def _by_clip(examples):
  return {(_text(e["subject"]), _text(e["clip"])): e for e in examples}


def _check_geometry(examples, size, stamped=True):
  """Shapes, order and keyframes; with `stamped` (noise frames), also that
  every stored frame was read from the file its frame number names."""
  for e in examples:
    if stamped:
      assert [fabricate.read_code(f) for f in e["frames"]] == pytest.approx(
          [fabricate.frame_code(n) for n in e["frame_numbers"]], abs=4), (
              _text(e["clip"]))
    n = e["frames"].shape[0]
    assert e["frames"].shape == (n, size, size, 3)
    assert e["frames"].dtype == np.uint8
    assert e["frame_numbers"].shape == (n,)
    assert np.all(np.diff(e["frame_numbers"]) > 0)
    assert e["onset"] == 0 and e["offset"] == n - 1
    assert 0 <= e["apex"] <= e["offset"]
    assert n <= common.DEFAULT_MAX_STORED_FRAMES


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
  root = tmp_path_factory.mktemp("manual")
  dirs = {name: root / name for name in
          ("casme2", "samm", "smic_hs", "mmew", "megc")}
  fabricate.fabricate_casme2(dirs["casme2"])
  fabricate.fabricate_samm(dirs["samm"])
  fabricate.fabricate_smic_hs(dirs["smic_hs"])
  fabricate.fabricate_mmew(dirs["mmew"])
  fabricate.fabricate_megc2019(dirs["megc"])
  return dirs


# ---------------------------------------------------------------------------
# Builders.
# ---------------------------------------------------------------------------


def test_casme2_5class(trees, tmp_path):
  builder, ex, report = _build("casme2", trees["casme2"], tmp_path, 5,
                               variant="")
  assert builder.info.features["label"].names == [
      "happiness", "repression", "surprise", "disgust", "others"]
  assert _counts(ex) == {"happiness": 1, "others": 2, "disgust": 2,
                         "repression": 1, "surprise": 1}
  assert _subjects(ex) == ["casme2/sub01", "casme2/sub02", "casme2/sub04",
                           "casme2/sub05"]
  _check_geometry(ex, 64)
  clips = _by_clip(ex)
  # Same clip name under two subjects stays two clips.
  assert ("casme2/sub01", "EP02_01f") in clips
  assert ("casme2/sub02", "EP02_01f") in clips
  long = clips[("casme2/sub02", "EP09_05")]  # 40 frames -> 33 stored.
  assert long["frames"].shape[0] == 33
  assert long["frame_numbers"][0] == 100
  assert long["frame_numbers"][-1] == 139
  assert long["frame_numbers"][long["apex"]] == 120
  slash = clips[("casme2/sub04", "EP12_01f")]  # '/' apex -> middle of 20..30.
  assert slash["frame_numbers"][slash["apex"]] == 25
  assert list(slash["frame_numbers"]) == list(range(20, 31))
  gap = clips[("casme2/sub01", "EP04_02")]
  assert list(gap["frame_numbers"]) == [1, 2, 3, 5, 6]
  assert _text(clips[("casme2/sub05", "EP05_03")]["emotion"]) == "Others"
  assert _text(clips[("casme2/sub01", "EP02_01f")]["action_units"]) == "12"
  # The report: what was skipped, repaired and excluded, and why.
  assert report["num_clips"] == 7
  assert "Cropped" in report["frame_sources"]["casme2"]
  assert any("CASME2-coding-20190701.xlsx" in n for n in report["notes"])
  assert [s["clip"] for s in report["skipped"]] == ["casme2/sub05/EP07_01"]
  assert "offset frame 16" in report["skipped"][0]["reason"]
  assert "row 10" in report["skipped"][0]["where"]
  assert sorted((r["clip"], r["rule"]) for r in report["repaired"]) == [
      ("casme2/sub01/EP04_02", "frames_missing_in_range"),
      ("casme2/sub04/EP12_01f", "apex_missing_middle_frame")]
  assert report["excluded_by_class_set"] == {"fear": 1, "sadness": 1}
  on_disk = pathlib.Path(builder.data_dir) / common.REPORT_FILENAME
  assert json.loads(on_disk.read_text())["num_clips"] == 7


def test_only_kept_clips_count_as_repaired_and_apex_at_onset_is_said(
    tmp_path):
  import openpyxl  # pylint: disable=g-import-not-at-top
  root = fabricate.fabricate_casme2(tmp_path / "m")
  # EP04_02 (frame 4 missing: a repair) loses its apex frame 3 too: it is
  # skipped, so it was not repaired.
  (root / "Cropped" / "sub01" / "EP04_02" / "reg_img3.jpg").unlink()
  # EP03_02's apex annotated on its onset frame 10: kept as annotated, said.
  path = root / "CASME2-coding-20190701.xlsx"
  wb = openpyxl.load_workbook(path)
  ws = wb.worksheets[0]
  assert ws.cell(3, 2).value == "EP03_02"
  ws.cell(3, 5).value = 10
  wb.save(path)
  builder, ex, report = _build("casme2", tmp_path / "m", tmp_path / "d", 5,
                               variant="")
  # The build's skips are recalled when it is reused: replacing a bad frame
  # under its own name does not show in the folder listings.
  checked = builder.check_build(tmp_path / "m")
  assert "2 clip(s) were skipped at the build (" in checked
  assert "EP04_02" in checked and "EP07_01" in checked
  skipped = {s["clip"]: s["reason"] for s in report["skipped"]}
  assert sorted(skipped) == ["casme2/sub01/EP04_02", "casme2/sub05/EP07_01"]
  assert "apex frame 3 not found" in skipped["casme2/sub01/EP04_02"]
  assert [(r["clip"], r["rule"]) for r in report["repaired"]] == [
      ("casme2/sub04/EP12_01f", "apex_missing_middle_frame")]
  note = [n for n in report["notes"] if n.startswith("casme2/sub01/EP03_02")]
  assert len(note) == 1 and "apex is the onset frame 10" in note[0]
  clip = _by_clip(ex)[("casme2/sub01", "EP03_02")]
  assert clip["apex"] == 0


def test_stretched_faces_are_said_in_the_report(tmp_path):
  import cv2  # pylint: disable=g-import-not-at-top
  root = fabricate.fabricate_casme2(tmp_path / "m")
  for f in (root / "Cropped" / "sub01" / "EP03_02").iterdir():
    cv2.imwrite(str(f), cv2.resize(cv2.imread(str(f)), (96, 72)))
  # One crop of another size: kept (crops may be one face box per frame),
  # each frame resized on its own, recorded as a repair.
  odd = root / "Cropped" / "sub02" / "EP02_01f" / "reg_img9.jpg"
  cv2.imwrite(str(odd), cv2.resize(cv2.imread(str(odd)), (80, 80)))
  _, ex, report = _build("casme2", tmp_path / "m", tmp_path / "d", 5,
                         variant="")
  assert ("casme2/sub01", "EP03_02") in _by_clip(ex)
  assert ("casme2/sub02", "EP02_01f") in _by_clip(ex)
  sizes = [r for r in report["repaired"]
           if r["rule"] == "frames_of_several_sizes_resized_each"]
  assert [r["clip"] for r in sizes] == ["casme2/sub02/EP02_01f"]
  assert "2 sizes (48x48, 80x80)" in sizes[0]["detail"]
  note = [n for n in report["notes"] if "non-square" in n]
  assert note == [
      "casme2: 1 clip(s) of non-square frames (96x72) were resized to 64x64 "
      "without face alignment, so their faces are stretched: "
      "casme2/sub01/EP03_02. The released code resizes official crops so "
      "too; an '_aligned' config aligns and crops square faces instead."]


def test_a_one_frame_clip_is_skipped_and_bad_frame_numbers_refused(
    tmp_path):
  rec = common.ClipRecord(
      dataset="casme2", subject="01", clip="EP", emotion="x", label="x",
      frame_dir=epath.Path(tmp_path), prefix="reg_img", align=False,
      where="s.xlsx, sheet 'S', row 4", onset=46, apex=46, offset=46)
  report = common.BuildReport("casme2", "5class_64")
  assert common.resolve_keyframes(rec, {45: "a", 46: "b", 47: "c"},
                                  report) is None
  assert report.skipped == [{
      "clip": rec.key,
      "where": "s.xlsx, sheet 'S', row 4",
      "reason": "onset and offset are both frame 46: a one-frame clip holds "
                "no motion to recognise (the model reads frame differences "
                "from the onset); check its annotation"}]
  with pytest.raises(AnnotationError, match=r"row 4: column 'OnsetFrame' "
                     r"holds -3, expected a frame number"):
    common.parse_frame(-3, "OnsetFrame", "row 4")
  with pytest.raises(AnnotationError, match=r"row 4: column 'OnsetFrame' is "
                     r"empty.*formula cell"):
    common.parse_frame(None, "OnsetFrame", "row 4")


def test_casme2_3class(trees, tmp_path):
  _, ex, report = _build("casme2", trees["casme2"], tmp_path, 3)
  assert _counts(ex) == {"negative": 3, "positive": 1, "surprise": 1}
  assert report["excluded_by_class_set"] == {"fear": 1, "others": 2,
                                             "sadness": 1}
  assert "resized only" in report["frame_sources"]["casme2"]


def test_samm_5class(trees, tmp_path):
  builder, ex, report = _build("samm", trees["samm"], tmp_path, 5)
  assert builder.info.features["label"].names == [
      "happiness", "surprise", "anger", "contempt", "other"]
  assert _counts(ex) == {"happiness": 1, "anger": 2, "other": 2,
                         "surprise": 1, "contempt": 1}
  assert _subjects(ex) == ["samm/006", "samm/007", "samm/011", "samm/028"]
  _check_geometry(ex, 64)
  clips = _by_clip(ex)
  first = clips[("samm/006", "006_1_2")]
  assert list(first["frame_numbers"]) == list(range(5562, 5571))
  assert first["frame_numbers"][first["apex"]] == 5566
  # Greyscale frames come back as 3 equal channels.
  assert np.array_equal(first["frames"][..., 0], first["frames"][..., 2])
  late = clips[("samm/028", "028_4_1")]  # apex 415 > offset 410.
  assert late["frame_numbers"][late["apex"]] == 405  # middle of 400..410
  assert [(r["clip"], r["rule"]) for r in report["repaired"]] == [
      ("samm/028/028_4_1", "apex_outside_range_middle_frame")]
  assert "415" in report["repaired"][0]["detail"]
  assert report["skipped"] == []
  assert report["excluded_by_class_set"] == {"disgust": 1, "fear": 1}


def test_samm_3class(trees, tmp_path):
  _, ex, report = _build("samm", trees["samm"], tmp_path, 3)
  assert _counts(ex) == {"negative": 5, "positive": 1, "surprise": 1}
  assert sorted(r["clip"] for r in report["repaired"]) == [
      "samm/028/028_4_1", "samm/032/032_3_1"]
  clip = _by_clip(ex)[("samm/032", "032_3_1")]
  # apex 95 < onset 100: the middle frame of 100..106, not the onset.
  assert clip["frame_numbers"][clip["apex"]] == 103


def test_smic_hs(trees, tmp_path):
  builder, ex, report = _build("smic_hs", trees["smic_hs"], tmp_path, 3,
                               variant="")
  assert builder.info.features["label"].names == [
      "negative", "positive", "surprise"]
  assert _counts(ex) == {"negative": 3, "positive": 1, "surprise": 1}
  assert _subjects(ex) == ["smic_hs/s1", "smic_hs/s10", "smic_hs/s2"]
  _check_geometry(ex, 64)
  pos = _by_clip(ex)[("smic_hs/s1", "s1_po_01")]
  assert list(pos["frame_numbers"]) == list(range(99998, 100004))
  assert pos["apex"] == 3  # middle of 6 frames (later of the two).
  neg = _by_clip(ex)[("smic_hs/s10", "s10_ne_02")]
  assert neg["apex"] == 4 and neg["offset"] == 8
  assert report["frame_sources"]["smic_hs"] == (
      "reg_image* (official crops, align=False): 5 clips")
  assert report["skipped"] == [] and report["repaired"] == []


def test_mmew_class_sets(trees, tmp_path):
  expected = {
      5: {"happiness": 1, "surprise": 1, "disgust": 1, "fear": 1,
          "others": 1},
      4: {"happiness": 1, "surprise": 1, "disgust": 1, "others": 1},
      3: {"negative": 4, "positive": 1, "surprise": 1},
  }
  for k, counts in expected.items():
    _, ex, report = _build("mmew", trees["mmew"], tmp_path, k)
    assert _counts(ex) == counts, k
    _check_geometry(ex, 64)
  assert _subjects(ex) == ["mmew/01", "mmew/02", "mmew/03"]
  sur = _by_clip(ex)[("mmew/01", "S01_sur_01")]
  assert list(sur["frame_numbers"]) == list(range(2, 12))  # 10 after 9.
  assert sur["frame_numbers"][sur["apex"]] == 5
  assert report["excluded_by_class_set"] == {"others": 1}


def test_megc2019_composite(trees, tmp_path):
  _, ex, report = _build("megc2019_composite", trees["megc"], tmp_path, 3)
  assert _counts(ex) == {"negative": 11, "positive": 3, "surprise": 2}
  _check_geometry(ex, 64)
  assert report["class_counts_by_dataset"] == {
      "casme2": {"negative": 3, "positive": 1},
      "samm": {"negative": 5, "positive": 1, "surprise": 1},
      "smic_hs": {"negative": 3, "positive": 1, "surprise": 1},
  }
  # The 2014 sheet is used (EP12_01f is sadness there, so dropped).
  assert any("CASME2-coding-20140508.xlsx" in n for n in report["notes"])
  assert _subjects(ex) == [
      "casme2/sub01", "casme2/sub02", "samm/006", "samm/011", "samm/028",
      "samm/032", "smic_hs/s1", "smic_hs/s10", "smic_hs/s2"]
  assert {_text(e["dataset"]) for e in ex} == {"casme2", "samm", "smic_hs"}
  # The fabricated set is not the published one, and the report says so.
  diff = report["published_counts_differences"]
  assert diff["casme2"]["negative"] == {"built": 3, "published": 88}
  assert diff["samm"]["surprise"] == {"built": 1, "published": 15}
  assert any(n.startswith("This build is NOT the published MEGC2019 set: 16 "
                          "clips (published 442)") and
             "casme2 negative 3 (published 88)" in n and
             "MEGC2019_ground_truth.csv" in n for n in report["notes"])


def test_megc2019_published_counts_comparison():
  megc = megc2019_composite_dataset_builder
  report = common.BuildReport("megc2019_composite", "3class_64px")
  for src, counts in megc.PUBLISHED_COUNTS.items():
    for cls, n in counts.items():
      for i in range(n):
        report.keep(common.ClipRecord(
            dataset=src, subject=f"s{i % 7}", clip=f"{cls}{i}", emotion=cls,
            label=cls, frame_dir=None, prefix="", align=False, where="test"))
  assert megc.compare_with_published(report) == {}
  assert report.notes == ["Class counts per source equal the published "
                          "MEGC2019 set's (442 clips)."]
  # Two extra CASME II negatives (the 2014 sheet without the official list).
  report.notes.clear()
  for i in range(2):
    report.keep(common.ClipRecord(
        dataset="casme2", subject="s1", clip=f"extra{i}", emotion="disgust",
        label="negative", frame_dir=None, prefix="", align=False,
        where="test"))
  assert megc.compare_with_published(report) == {
      "casme2": {"negative": {"built": 90, "published": 88}}}
  assert "casme2 negative 90 (published 88)" in report.notes[0]


# An official-style ground-truth file for the fabricated composite: a header,
# SAMM and CASME II subjects unpadded, dataset names spelled as people do.
_MEGC_GT = """dataset,subject,filename,label
CASME II,1,EP02_01f,1
casme2,sub02,EP09_05,0
casme2,2,EP02_01f,2
casme2,4,EP12_01f,0

SAMM,6,006_1_2,1
SAMM,28.0,028_4_1,0
SMIC,s1,s1_ne_01,0
smic,10,s10_ne_02,0
"""


def test_megc2019_composite_official_ground_truth(tmp_path):
  manual = tmp_path / "m"
  fabricate.fabricate_megc2019(manual)
  _build("megc2019_composite", manual, tmp_path / "old", 3)
  (manual / "MEGC2019_ground_truth.csv").write_text(_MEGC_GT)
  # A build made before the file was there is refused, not silently reused.
  with pytest.raises(DataError, match=r"(?s)no longer matches.*"
                     r"MEGC2019_ground_truth.csv: read now, but not when.*"
                     r"Rebuild it: python -m edmdbn_jax.datasets.build "
                     r"megc2019_composite --config=3class_64_resized "
                     r".*--overwrite"):
    _build("megc2019_composite", manual, tmp_path / "old", 3)
  _, ex, report = _build("megc2019_composite", manual, tmp_path / "d", 3)
  assert report["ground_truth"] == str(manual / "MEGC2019_ground_truth.csv")
  assert set(report["inputs"]) == {
      "MEGC2019_ground_truth.csv", "CASME2/CASME2-coding-20140508.xlsx",
      "SAMM/SAMM_Micro_FACS_Codes_v2.xlsx"}
  # ... and so is one made with the file once it is edited or removed.
  gt = manual / "MEGC2019_ground_truth.csv"
  gt.write_text(_MEGC_GT.replace("SMIC,s1,s1_ne_01,0", "SMIC,s1,s1_ne_01,2"))
  with pytest.raises(DataError, match=r"(?s)MEGC2019_ground_truth.csv: its "
                     r"contents have changed"):
    _build("megc2019_composite", manual, tmp_path / "d", 3)
  gt.unlink()
  with pytest.raises(DataError, match=r"(?s)MEGC2019_ground_truth.csv: read "
                     r"when it was built, but not now"):
    _build("megc2019_composite", manual, tmp_path / "d", 3)
  # Exactly the listed clips, with the listed labels (counted from _MEGC_GT).
  assert _counts(ex) == {"negative": 5, "positive": 2, "surprise": 1}
  assert report["class_counts_by_dataset"] == {
      "casme2": {"negative": 2, "positive": 1, "surprise": 1},
      "samm": {"negative": 1, "positive": 1},
      "smic_hs": {"negative": 2},
  }
  clips = _by_clip(ex)
  assert _text(clips[("casme2/sub02", "EP02_01f")]["label_name"]) == "surprise"
  assert _text(clips[("casme2/sub04", "EP12_01f")]["label_name"]) == "negative"
  assert ("samm/006", "006_1_2") in clips
  # Where the list and the emotion mapping disagree, the report says so.
  gt_repairs = {r["clip"]: r["detail"] for r in report["repaired"]
                if r["rule"] == "MEGC2019 ground truth"}
  assert set(gt_repairs) == {"casme2/sub02/EP02_01f", "casme2/sub04/EP12_01f"}
  assert "line 4" in gt_repairs["casme2/sub02/EP02_01f"]
  assert "mapping gives negative for 'disgust'" in gt_repairs[
      "casme2/sub02/EP02_01f"]
  assert "mapping gives excluded for 'sadness'" in gt_repairs[
      "casme2/sub04/EP12_01f"]
  # Clips the mapping would keep but the list does not have: 2 CASME II
  # (EP04_02, EP07_01), 5 SAMM, 3 SMIC; those the mapping drops keep that
  # reason.
  assert report["excluded_other"] == {
      "not in the official MEGC2019 ground-truth list": 10}
  assert report["excluded_by_class_set"] == {"fear": 1, "others": 4,
                                             "sadness": 1}
  assert any("official ground truth" in n for n in report["notes"])


def test_prepared_dataset_checked_against_the_manual_dir(tmp_path):
  manual = tmp_path / "m"
  fabricate.fabricate_casme2(manual, sheets=("2014",))
  _, ex, report = _build("casme2", manual, tmp_path / "d", 5)
  assert report["inputs"] == {"CASME2/CASME2-coding-20140508.xlsx": (
      __import__("hashlib").sha256(
          (manual / "CASME2" / "CASME2-coding-20140508.xlsx").read_bytes()
      ).hexdigest())}
  # Unchanged, and moved elsewhere: reused.
  _build("casme2", manual, tmp_path / "d", 5)
  shutil.move(manual, tmp_path / "moved")
  _, again, _ = _build("casme2", tmp_path / "moved", tmp_path / "d", 5)
  assert len(again) == len(ex)
  # The 2019 sheet added: the standalone builder now prefers it.
  fabricate.fabricate_casme2(tmp_path / "m2", sheets=("2019",), crops=False)
  shutil.copy(tmp_path / "m2" / "CASME2" / "CASME2-coding-20190701.xlsx",
              tmp_path / "moved" / "CASME2")
  with pytest.raises(DataError, match=r"(?s)no longer matches.*"
                     r"CASME2-coding-20140508.xlsx: read when it was built, "
                     r"but not now.*CASME2-coding-20190701.xlsx: read now.*"
                     r"Rebuild it: .* casme2 --config=5class_64_resized"):
    _build("casme2", tmp_path / "moved", tmp_path / "d", 5)
  # Another frame source (the official crops gone, raw frames present).
  m3 = fabricate.fabricate_casme2(tmp_path / "m3", raw="noise")
  _build("casme2", tmp_path / "m3", tmp_path / "d3", 5, variant="")
  shutil.rmtree(m3 / "Cropped")
  with pytest.raises(DataError, match=r"casme2 frames: built from Cropped .*"
                     r"now CASME2_RAW_selected"):
    _build("casme2", tmp_path / "m3", tmp_path / "d3", 5, variant="")


def test_build_from_a_relative_manual_dir_loads_by_absolute_path(
    tmp_path, monkeypatch):
  # The report's paths are absolute: a frame source recorded relative to
  # the working directory ('o') once failed the check ("Cr<manual_dir>pped").
  fabricate.fabricate_casme2(tmp_path / "o", sheets=("2014",))
  monkeypatch.chdir(tmp_path)
  _, ex, report = _build("casme2", "o", tmp_path / "d", 5)
  assert report["manual_dir"] == str(tmp_path / "o")
  _, again, _ = _build("casme2", tmp_path / "o", tmp_path / "d", 5)
  assert len(again) == len(ex)


def test_first_build_logs_no_tfds_variant_folder_warning(tmp_path, caplog):
  # tfds warned 'Variant folder ... has no dataset_info.json' before every
  # first build: the is-it-built check ran on the folder tfds had just made.
  fabricate.fabricate_casme2(tmp_path / "m", sheets=("2014",))
  with caplog.at_level(logging.WARNING):
    builder, ex, _ = _build("casme2", tmp_path / "m", tmp_path / "d", 5)
  assert ex and datasets.is_built(builder)
  assert "Variant folder" not in caplog.text
  assert f"{len(ex)} clips" in caplog.text  # The build summary still shows.


def test_prepared_dataset_refused_when_the_sheet_no_longer_parses(
    tmp_path, monkeypatch):
  manual = tmp_path / "m"
  fabricate.fabricate_casme2(manual, sheets=("2014",))
  # `--manual_dir=~/m` reaches Python with the ~ unexpanded.
  monkeypatch.setenv("HOME", str(tmp_path))
  _build("casme2", "~/m", tmp_path / "d", 5)
  sheet = manual / "CASME2" / "CASME2-coding-20140508.xlsx"
  import openpyxl  # pylint: disable=g-import-not-at-top
  wb = openpyxl.load_workbook(sheet)
  wb.active["I2"] = "Tense"  # Not an emotion the builder knows.
  wb.save(sheet)
  # The edit is an input changed since the build: refused, not "could not
  # check, using it as built".
  with pytest.raises(DataError, match=r"(?s)cannot be checked against the "
                     r"manual directory .*CASME2-coding-20140508.xlsx: its "
                     r"contents have changed.*'Tense'.*leave out the manual "
                     r"directory"):
    _build("casme2", "~/m", tmp_path / "d", 5)


def test_frames_supplied_after_the_build_make_it_stale(tmp_path):
  manual = tmp_path / "m"
  root = fabricate.fabricate_casme2(manual)
  _, ex, report = _build("casme2", manual, tmp_path / "d", 5)
  assert "casme2/sub05/EP07_01" in {s["clip"] for s in report["skipped"]}
  # The skip reason says the offset frame is missing; the user supplies it.
  folder = root / "Cropped" / "sub05" / "EP07_01"
  shutil.copy(folder / "reg_img15.jpg", folder / "reg_img16.jpg")
  with pytest.raises(DataError, match=r"(?s)no longer matches.*"
                     r"casme2/sub05/EP07_01: its frame folder .*EP07_01 "
                     r"lists other frames.*--overwrite"):
    _build("casme2", manual, tmp_path / "d", 5)
  # The build command says so too, rather than reusing the build silently,
  # and --overwrite rebuilds it with the clip.
  env = dict(os.environ, PYTHONPATH=str(REPO))
  cmd = [sys.executable, "-m", "edmdbn_jax.datasets.build", "casme2",
         "--config=5class_64_resized", f"--manual_dir={manual}",
         f"--data_dir={tmp_path / 'd'}"]
  stale = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         cwd=REPO)
  assert stale.returncode == 2, stale.stderr
  assert "EP07_01: its frame folder" in stale.stderr
  assert "Traceback" not in stale.stderr
  subprocess.run(cmd + ["--overwrite"], check=True, env=env, cwd=REPO)
  again = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         cwd=REPO, check=True)
  assert "already built" in again.stderr
  assert "annotation files, frame source and 8 clip folders unchanged" in (
      again.stderr)
  _, rebuilt, report = _build("casme2", manual, tmp_path / "d", 5)
  assert len(rebuilt) == len(ex) + 1
  assert "casme2/sub05/EP07_01" not in {s["clip"] for s in report["skipped"]}


def test_megc2019_without_ground_truth_says_so(trees, tmp_path):
  _, _, report = _build("megc2019_composite", trees["megc"], tmp_path, 3)
  assert any("No official ground-truth file" in n and
             "MEGC2019_ground_truth.csv" in n for n in report["notes"])
  assert report["ground_truth"] is None
  assert report["excluded_other"] == {}


@pytest.mark.parametrize("text,match", [
    ("casme2,1,EP02_01f,3\n", r"line 1: label '3' is not 0"),
    ("casme2,1,EP02_01f\n", r"line 1: expected 4 fields"),
    ("CASME,1,EP02_01f,1\nSMIC HS,1,s1_ne_01,0\nMMEW,1,x,0\n",
     r"line 3: dataset 'MMEW' is not one of"),
    ("samm,6,006_1_2,1\nSAMM,006,006_1_2,1\n",
     r"line 2: samm/006/006_1_2 is listed again \(first at .*line 1\)"),
    ("samm,six,006_1_2,1\n", r"line 1: subject 'six' is not a samm"),
    ("dataset,subject,filename,label\n", "lists no clips"),
    # A first row that is neither a header nor a clip is not dropped.
    ("CASME3,1,EP02_01f,3\nsamm,6,006_1_2,1\n",
     r"line 1: dataset 'CASME3' is not one of"),
])
def test_megc2019_ground_truth_bad_rows(tmp_path, text, match):
  from edmdbn_jax.datasets.megc2019_composite import (  # pylint: disable=g-import-not-at-top
      megc2019_composite_dataset_builder as megc)
  path = tmp_path / "gt.csv"
  path.write_text(text)
  with pytest.raises(AnnotationError, match=match):
    megc.read_ground_truth(path)
  # Not UTF-8 (a cp1252 export with an accented note): the file is named.
  path.write_bytes("casme2,1,EP02_01f,1\nsamm,6,006_1_2,1 caf\u00e9\n"
                   .encode("cp1252"))
  with pytest.raises(AnnotationError, match=r"gt.csv cannot be read as "
                     r"utf-8-sig text.*save it as 'CSV UTF-8'"):
    megc.read_ground_truth(path)


@pytest.mark.parametrize("text,encoding", [
    ('dataset,subject,filename,label\nSAMM,6,006_1_2,1\n"CASME II","02",'
     '"EP09_05","0"\n', "utf-8"),  # quoted, as spreadsheet exports write
    ("Dataset\tSubject\tFilename\tLabel\r\nSAMM\t6\t006_1_2\t1\r\n"
     "casme2\t2\tEP09_05\t0\r\n", "utf-8"),  # tab-separated, CRLF
    ("SAMM,6,006_1_2,1,,\n\ncasme2, 2 ,EP09_05,0\n", "utf-8"),  # no header
    # Excel's "Unicode Text": UTF-16 with a byte-order mark, tabs.
    ("Dataset\tSubject\tFilename\tLabel\r\nSAMM\t6\t006_1_2\t1\r\n"
     "casme2\t2\tEP09_05\t0\r\n", "utf-16"),
    ("SAMM,6,006_1_2,1\ncasme2,2,EP09_05,0\n", "utf-8-sig"),
])
def test_megc2019_ground_truth_formats(tmp_path, text, encoding):
  from edmdbn_jax.datasets.megc2019_composite import (  # pylint: disable=g-import-not-at-top
      megc2019_composite_dataset_builder as megc)
  path = tmp_path / "gt.csv"
  path.write_bytes(text.encode(encoding))
  truth = megc.read_ground_truth(path)
  assert {k: v.label for k, v in truth.items()} == {
      ("samm", "006", "006_1_2"): "positive",
      ("casme2", "sub02", "ep09_05"): "negative"}


def test_megc2019_ground_truth_clip_not_in_sources(tmp_path):
  manual = tmp_path / "m"
  fabricate.fabricate_megc2019(manual)
  (manual / "MEGC2019_ground_truth.csv").write_text(
      "casme2,1,EP02_01f,1\nsamm,6,006_9_9,0\ncasme2,26,EP01_01,0\n")
  with pytest.raises(AnnotationError,
                     match=r"(?s)2 clip\(s\) of .*MEGC2019_ground_truth.csv"
                           r".*line 2: samm/006/006_9_9.*line 3: "
                           r"casme2/sub26/EP01_01"):
    _build("megc2019_composite", manual, tmp_path / "d", 3)


# ---------------------------------------------------------------------------
# Clear errors.
# ---------------------------------------------------------------------------


def test_missing_workbook(tmp_path):
  fabricate.fabricate_casme2(tmp_path / "m", sheets=())
  with pytest.raises(DataError, match="CASME2-coding-20190701.xlsx"):
    _build("casme2", tmp_path / "m", tmp_path / "d", 5)


def test_missing_manual_dir(tmp_path):
  with pytest.raises(DataError, match="manual directory"):
    _build("samm", tmp_path / "nowhere", tmp_path / "d", 5)
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "README").write_text("x")
  with pytest.raises(DataError, match=r"SAMM does not exist"):
    _build("samm", tmp_path / "other", tmp_path / "d", 5)


def test_bad_annotation_row(tmp_path):
  fabricate.fabricate_casme2(tmp_path / "m", bad_row=True)
  with pytest.raises(AnnotationError, match=r"row 12.*OnsetFrame.*'n/a'"):
    _build("casme2", tmp_path / "m", tmp_path / "d", 5)


def test_missing_clip_folders_all_listed_before_any_frame_is_read(tmp_path):
  root = fabricate.fabricate_casme2(tmp_path / "m")
  crops = root / "Cropped"
  # The first clip's onset frame is unreadable: generation would stop there.
  (crops / "sub01" / "EP02_01f" / "reg_img46.jpg").write_bytes(b"broken")
  shutil.rmtree(crops / "sub02" / "EP09_05")  # Row 5.
  for f in (crops / "sub05" / "EP05_03").iterdir():  # Row 9: empty folder.
    f.unlink()
  shutil.rmtree(crops / "sub04" / "EP13_02")  # Row 7, sadness: excluded.
  with pytest.raises(MissingFrameError) as e:
    _build("casme2", tmp_path / "m", tmp_path / "d", 5)
  msg = str(e.value)
  assert "2 of 8 labelled clips" in msg
  assert "casme2/sub02/EP09_05" in msg and "row 5" in msg
  assert str(crops / "sub02" / "EP09_05") in msg
  assert "casme2/sub05/EP05_03" in msg and "row 9" in msg
  assert "EP13_02" not in msg  # Not needed by the 5-class set.
  assert "decode" not in msg


def test_mmew_folder_cross_checks_are_reported(tmp_path):
  root = fabricate.fabricate_mmew(tmp_path / "m")
  micro = root / "MMEW_Final" / "Micro_Expression"
  shutil.move(micro / "fear" / "S02_fea_01", micro / "disgust" / "S02_fea_01")
  shutil.copytree(micro / "happiness" / "S01_hap_01",
                  micro / "happiness" / "S09_hap_09")
  _, ex, report = _build("mmew", tmp_path / "m", tmp_path / "d", 5)
  clip = _by_clip(ex)[("mmew/02", "S02_fea_01")]
  assert _text(clip["label_name"]) == "fear"  # the workbook's label
  assert any("1 clip(s) sit in an emotion folder other than their workbook "
             "label" in n and "S02_fea_01 (workbook 'fear', folder 'disgust')"
             in n for n in report["notes"])
  assert any("1 clip folder(s)" in n and "S09_hap_09" in n
             for n in report["notes"])


def test_mmew_missing_folders_listed_together_and_dropped_clips_not_needed(
    tmp_path):
  root = fabricate.fabricate_mmew(tmp_path / "m")
  micro = root / "MMEW_Final" / "Micro_Expression"
  shutil.rmtree(micro / "anger" / "S03_ang_01")  # Not in the 5-class set.
  # An AppleDouble file from a macOS archive: not a second family of frames.
  (micro / "happiness" / "S01_hap_01" / "._3.jpg").write_bytes(b"\x00\x05")
  _, ex, _ = _build("mmew", tmp_path / "m", tmp_path / "d", 5)
  assert len(ex) == 5
  shutil.rmtree(micro / "happiness" / "S01_hap_01")
  shutil.rmtree(micro / "fear" / "S02_fea_01")
  with pytest.raises(MissingFrameError) as e:
    _build("mmew", tmp_path / "m", tmp_path / "d2", 5)
  msg = str(e.value)
  assert "2 of 5 labelled clips" in msg
  assert "S01_hap_01" in msg and "S02_fea_01" in msg
  assert "S03_ang_01" not in msg
  assert "MMEW_Micro_Exp.xlsx" in msg

def test_clip_without_a_face_is_skipped_not_fatal(tmp_path, caplog):
  fabricate.fabricate_casme2(tmp_path / "m", crops=False, raw="face",
                             faceless=("EP09_05",))
  caplog.set_level(logging.WARNING, logger="absl")
  _, ex, report = _build("casme2", tmp_path / "m", tmp_path / "d", 3,
                         variant="")
  # Without EP09_05 (repression -> negative) but every other clip is built.
  assert _counts(ex) == {"negative": 2, "positive": 1, "surprise": 1}
  # EP07_01 lacks its offset frame (as in every fabricated CASME II tree).
  assert [s["clip"] for s in report["skipped"]] == [
      "casme2/sub02/EP09_05", "casme2/sub05/EP07_01"]
  skipped = report["skipped"][0]
  assert "row 5" in skipped["where"]
  onset = (tmp_path / "m" / "CASME2" / "CASME2_RAW_selected" / "sub02" /
           "EP09_05" / "img100.jpg")
  assert f"no face found in the onset frame {onset}" in skipped["reason"]
  assert "roughly frontal" in skipped["reason"]
  assert "official-crops variant" in skipped["reason"]
  warned = [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING]
  assert any("Skipped casme2/sub02/EP09_05" in m for m in warned)
  assert any("2 skipped" in m for m in warned)  # The summary line.


def test_small_face_found_with_upsampling_and_bad_frame_skips_one_clip(
    tmp_path):
  root = fabricate.fabricate_casme2(tmp_path / "m", crops=False, raw="face",
                                    small_faces=("EP12_01f",))
  # A damaged frame inside one clip's range: that clip is skipped, naming
  # the file, and the build goes on (it used to end the whole build).
  bad = root / "CASME2_RAW_selected" / "sub02" / "EP02_01f" / "img7.jpg"
  bad.write_bytes(b"not a jpeg")
  _, ex, report = _build("casme2", tmp_path / "m", tmp_path / "d", 3,
                         variant="")
  clips = _by_clip(ex)
  assert ("casme2/sub04", "EP12_01f") in clips  # Found with upsampling.
  assert ("casme2/sub02", "EP02_01f") not in clips
  assert [r["clip"] for r in report["repaired"]
          if r["rule"] == "face_found_with_upsampling"] == [
              "casme2/sub04/EP12_01f"]
  skipped = {s["clip"]: s["reason"] for s in report["skipped"]}
  assert set(skipped) == {"casme2/sub02/EP02_01f", "casme2/sub05/EP07_01"}
  reason = skipped["casme2/sub02/EP02_01f"]
  assert str(bad) in reason and "cannot decode" in reason
  # The rebuild command as it can be pasted: the build's own manual_dir.
  assert ("python -m edmdbn_jax.datasets.build casme2 --config=3class_64 "
          f"--manual_dir={tmp_path / 'm'} ") in reason
  assert "--overwrite" in reason


def test_no_clip_with_a_face_is_a_clear_error(tmp_path):
  fabricate.fabricate_casme2(tmp_path / "m", crops=False, raw="noise")
  with pytest.raises(DataError, match=r"(?s)no clip could be built; 8 "
                     r"skipped.*casme2/sub01/EP02_01f.*no face found in the "
                     r"onset frame .*img46\.jpg"):
    _build("casme2", tmp_path / "m", tmp_path / "d", 5, variant="aligned")


def _smic_records(manual_dir, variant=""):
  report = common.BuildReport("smic_hs", "3class_64")
  recs = smic.find_clips(manual_dir, common.CLASS_SETS["smic_hs"][3],
                         variant, report)
  return recs, report


def test_smic_subject_folders_any_case(tmp_path):
  root = fabricate.fabricate_smic_hs(tmp_path)
  (root / "HS" / "s10").rename(root / "HS" / "S10")
  (root / "HS" / "S02" / "micro").rename(root / "HS" / "S02" / "Micro")
  (root / "HS" / "notes").mkdir()
  recs, report = _smic_records(tmp_path)
  assert sorted(r.key for r in recs) == [
      "smic_hs/s1/s1_ne_01", "smic_hs/s1/s1_po_01", "smic_hs/s10/s10_ne_02",
      "smic_hs/s10/s10_ne_03", "smic_hs/s2/s2_sur_01"]
  assert any("'notes'" in n and "not subject folders" in n
             for n in report.notes)
  # A clip still zipped (and other files among the folders) is reported:
  # SMIC-HS has no sheet to show the clip missing.
  clip = root / "HS" / "S10" / "micro" / "negative" / "s10_ne_02"
  shutil.make_archive(str(clip), "zip", clip)
  shutil.rmtree(clip)
  (root / "HS" / "readme.txt").write_text("x")
  (root / "HS" / "S10" / "micro" / ".DS_Store").write_text("x")  # not said
  recs, report = _smic_records(tmp_path)
  assert "smic_hs/s10/s10_ne_02" not in [r.key for r in recs]
  note = [n for n in report.notes if "ignored 2 file(s)" in n]
  assert len(note) == 1 and "s10_ne_02.zip" in note[0], report.notes
  assert "readme.txt" in note[0] and "unpack the archives (1)" in note[0]
  (root / "HS" / "s10").mkdir()  # Now both s10 and S10.
  with pytest.raises(DataError, match=r"S10 and .*s10 are both subject s10"):
    _smic_records(tmp_path)


def test_smic_subject_without_micro_is_an_error(tmp_path):
  root = fabricate.fabricate_smic_hs(tmp_path)
  subj = root / "HS" / "S02"
  (subj / "micro" / "surprise").rename(subj / "surprise")
  (subj / "micro").rmdir()
  with pytest.raises(DataError, match=r"(?s)HS/S02: expected one folder "
                     r"`micro`.*S02/micro/<emotion>/<clip>/.*found "
                     r"\['surprise'\].*SMIC/HS/s1/micro/negative"):
    _smic_records(tmp_path)


def test_smic_aligned_needs_raw_frames_in_every_clip(tmp_path):
  # Only s1_ne_01 holds raw image* frames beside its reg_image* crops: the
  # aligned variant lists the 4 other clips in one error, before reading.
  fabricate.fabricate_smic_hs(tmp_path / "m")
  with pytest.raises(MissingFrameError, match=r"(?s)4 of 5 labelled clips.*"
                     r"smic_hs/s1/s1_po_01.*no image named 'image<number>'"):
    _build("smic_hs", tmp_path / "m", tmp_path / "d", 3, variant="aligned")


def test_unknown_config():
  with pytest.raises(ValueError, match="no 4-class config"):
    datasets.get_builder("casme2", num_classes=4, image_size=64)


# ---------------------------------------------------------------------------
# The aligned path on a real face, and the command line.
# ---------------------------------------------------------------------------


def test_casme2_raw_frames_are_face_aligned(tmp_path):
  fabricate.fabricate_casme2(tmp_path / "m", crops=False, raw="face")
  _, ex, report = _build("casme2", tmp_path / "m", tmp_path / "d", 3,
                         variant="")
  assert "CASME2_RAW_selected" in report["frame_sources"]["casme2"]
  assert "face-aligned" in report["frame_sources"]["casme2"]
  assert _counts(ex) == {"negative": 3, "positive": 1, "surprise": 1}
  _check_geometry(ex, 64, stamped=False)
  # An aligned face crop, not the 512 x 512 photo squeezed to 64 x 64.
  from edmdbn_jax.preprocess import FacePreprocessor  # pylint: disable=g-import-not-at-top
  from skimage import data  # pylint: disable=g-import-not-at-top
  squeezed = FacePreprocessor(image_size=64, align=False).process_clip(
      [data.astronaut()], clip="astronaut")[0]
  first = ex[0]["frames"][0].astype(np.float32)
  assert np.abs(first - squeezed.astype(np.float32)).mean() > 10


@pytest.mark.slow
def test_build_command_line(trees, tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  r = subprocess.run(
      [sys.executable, "-m", "edmdbn_jax.datasets.build", "smic_hs",
       "--config=3class_64", f"--manual_dir={trees['smic_hs']}",
       f"--data_dir={tmp_path}"], check=True, env=env, cwd=REPO,
      capture_output=True, text=True)
  # The outcome is said last, before the path.
  assert ("5 clips of 3 subjects; 0 skipped, 0 repaired, 0 excluded"
          in r.stderr.splitlines()[-1]), r.stderr[-2000:]
  reports = list(tmp_path.glob("smic_hs/3class_64/*/build_report.json"))
  assert len(reports) == 1
  assert json.loads(reports[0].read_text())["num_clips"] == 5
  # Mistakes are one line each, not a traceback.
  a_file = tmp_path / "notes.txt"
  a_file.write_text("x")
  for args, message in (
      (["casme3", "--config=5class_64"], "error: Unknown dataset 'casme3'"),
      (["smic_hs", "--config=3class_64", f"--manual_dir={a_file}",
        f"--data_dir={tmp_path / 'd2'}"],
       f"({a_file}) is a file, not a folder"),
      (["smic_hs", "--config=3class_64", f"--manual_dir={tmp_path / 'no'}",
        f"--data_dir={tmp_path / 'd3'}"], "is missing or empty")):
    r = subprocess.run(
        [sys.executable, "-m", "edmdbn_jax.datasets.build", *args], env=env,
        cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-2000:]
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr
    # tfds's own copy of the instructions is not printed as well.
    assert "download/extract dataset artifacts" not in r.stderr, r.stderr
