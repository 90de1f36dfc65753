"""MEGC2019 composite (See et al., 2019): SMIC-HS + CASME II + SAMM, 3 classes.

negative / positive / surprise by the MEGC2019 mapping (`common.megc_class_set`),
others (and CASME II sadness and fear) excluded. Subjects stay distinct across
the source datasets ('casme2/sub01', 'samm/006', 'smic_hs/s1'), so LOSO runs
over 68 subjects. Published counts (negative/positive/surprise/total): SMIC
70/51/43/164, CASME II 88/32/25/145 (2014 sheet), SAMM 92/26/15/133, all
250/109/83/442; the build report compares the counts this build produced
with these (`published_counts_differences`, and a note naming every count
that differs).

With the official MEGC2019 ground-truth file in the manual directory
(`GROUND_TRUTH_FILE`: rows `dataset, subject, filename, label`, labels 0
negative, 1 positive, 2 surprise), that file decides which clips are in the
set and their labels; the mapping above is only cross-checked against it
(disagreements are listed as repairs in the build report). Without it, the
set is derived from the three annotations by the mapping.
"""

import csv
import dataclasses
import io
import re
from typing import Any, NamedTuple

from etils import epath

from edmdbn_jax.datasets import common
from edmdbn_jax.datasets.casme2 import casme2_dataset_builder as casme2
from edmdbn_jax.datasets.samm import samm_dataset_builder as samm
from edmdbn_jax.datasets.smic_hs import smic_hs_dataset_builder as smic_hs
from edmdbn_jax.errors import AnnotationError

DATASET = "megc2019_composite"
# MEGC2019 was defined on the 2014 CASME II sheet: prefer it here.
CASME2_WORKBOOKS = tuple(reversed(casme2.WORKBOOKS))
PUBLISHED_COUNTS = {
    "smic_hs": {"negative": 70, "positive": 51, "surprise": 43},
    "casme2": {"negative": 88, "positive": 32, "surprise": 25},
    "samm": {"negative": 92, "positive": 26, "surprise": 15},
}

# The official clip list, copied by the user into the manual directory under
# this name (the challenge distributed it with the data, as a CSV of
# `dataset, subject, filename, label` rows).
GROUND_TRUTH_FILE = "MEGC2019_ground_truth.csv"
GROUND_TRUTH_REASON = "not in the official MEGC2019 ground-truth list"
_GT_DATASETS = {"casme2": "casme2", "casmeii": "casme2", "casme": "casme2",
                "samm": "samm", "smic": "smic_hs", "smichs": "smic_hs"}
_GT_LABELS = {"0": "negative", "1": "positive", "2": "surprise",
              "negative": "negative", "positive": "positive",
              "surprise": "surprise"}
# A first row holding one of these is the header (not a clip).
_GT_HEADER_WORDS = frozenset({
    "dataset", "database", "source", "subject", "sub", "filename", "file",
    "clip", "video", "label", "class", "emotion", "objective class"})

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "The MEGC2019 composite is built from three licence-gated datasets in one "
    "manual directory; lay out each as its own builder describes:\n\n"
    # The composite prefers the 2014 sheet (below), not the 2019 one.
    + casme2.MANUAL_DOWNLOAD_INSTRUCTIONS.replace(
        "the 2019 sheet is used when both exist",
        "the composite uses the 2014 one when both exist") + "\n"
    + samm.MANUAL_DOWNLOAD_INSTRUCTIONS + "\n"
    + smic_hs.MANUAL_DOWNLOAD_INSTRUCTIONS
    + "\nCASME II labels come from CASME2-coding-20140508.xlsx when present "
    "(the sheet MEGC2019 used), else from the 2019 sheet.\n"
    f"Optional: the official MEGC2019 ground-truth file as "
    f"<manual_dir>/{GROUND_TRUTH_FILE} (rows 'dataset, subject, filename, "
    "label', label 0 negative, 1 positive, 2 surprise; a header row is "
    "allowed). When present it decides the clip list and the labels; "
    "without it they come from the emotion mapping.\n")


class GroundTruthRow(NamedTuple):
  label: str   # class name
  where: str   # file and line, for messages
  clip: str    # the filename field as written


def _clip_key(dataset: str, subject: str, clip: str) -> tuple[str, str, str]:
  """How a clip is matched between the list and the source annotations."""
  return (dataset, subject, clip.lower())


def _gt_subject(dataset: str, cell: str, where: str) -> str:
  """The ground truth's subject cell as the source builder writes it."""
  text = cell.strip().removesuffix(".0")  # '6.0' from a spreadsheet export
  digits = re.sub(r"^(sub|s)", "", text, flags=re.IGNORECASE)
  if not digits.isdigit():
    raise AnnotationError(
        f"{where}: subject {cell!r} is not a {dataset} subject id (a number, "
        "optionally with its 'sub' or 's' prefix).")
  n = int(digits)
  return {"casme2": f"sub{n:02d}", "samm": f"{n:03d}",
          "smic_hs": f"s{n}"}[dataset]


def read_ground_truth(path: epath.PathLike
                      ) -> dict[tuple[str, str, str], GroundTruthRow]:
  """(dataset, subject, lower-cased clip) -> label from the official file.

  Rows are `dataset, subject, filename, label`, comma- or tab-separated
  (fields may be quoted, as spreadsheet exports write them), in UTF-8 or
  UTF-16 with a byte-order mark (Excel's "Unicode Text"; other encodings
  are refused); blank lines
  are skipped, and so is the first row when it holds a header word
  ('dataset', 'subject', 'filename', 'label', ...). Any other row that
  cannot be read is an error, never dropped. Dataset names are matched
  loosely ('CASME II', 'casme2', 'SMIC', 'smic_hs', 'SAMM'); subject ids in
  any padding ('6' and '006' are SAMM subject 006, '1' is CASME II sub01 and
  SMIC s1).

  Raises:
    AnnotationError: naming the file and line of a row that cannot be read,
      or of a clip listed twice.
  """
  path = epath.Path(path)
  out: dict[tuple[str, str, str], GroundTruthRow] = {}
  raw = path.read_bytes()
  # Excel's "Unicode Text" export is UTF-16 (with a byte-order mark).
  encoding = ("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff")
              else "utf-8-sig")
  try:
    text = raw.decode(encoding)
  except UnicodeDecodeError as e:
    raise AnnotationError(
        f"{path} cannot be read as {encoding} text ({e.reason} at byte "
        f"{e.start}); save it as 'CSV UTF-8' (comma-separated) and build "
        "again.") from e
  first = next((l for l in text.splitlines() if l.strip()), "")
  delimiter = "\t" if "\t" in first and "," not in first else ","
  reader = csv.reader(io.StringIO(text), delimiter=delimiter)
  seen_row = False
  for cells in reader:
    n = reader.line_num
    if not any(c.strip() for c in cells):
      continue
    where = f"{path}, line {n}"
    cells = [c.strip() for c in cells]
    while len(cells) > 4 and not cells[-1]:
      cells.pop()  # trailing separators
    if not seen_row and _GT_HEADER_WORDS.intersection(c.lower() for c in cells):
      seen_row = True
      continue  # the header row
    seen_row = True
    if len(cells) != 4:
      raise AnnotationError(
          f"{where}: expected 4 fields 'dataset, subject, filename, label', "
          f"found {len(cells)} in {delimiter.join(cells)!r}.")
    dataset_cell, subject_cell, clip, label_cell = cells
    label = _GT_LABELS.get(label_cell.lower().removesuffix(".0"))
    dataset = _GT_DATASETS.get(re.sub(r"[^a-z0-9]", "",
                                      dataset_cell.lower()))
    if dataset is None:
      raise AnnotationError(
          f"{where}: dataset {dataset_cell!r} is not one of CASME II, SAMM, "
          "SMIC (the MEGC2019 composite's sources).")
    if label is None:
      raise AnnotationError(
          f"{where}: label {label_cell!r} is not 0 (negative), 1 (positive) "
          "or 2 (surprise).")
    if not clip:
      raise AnnotationError(f"{where}: the filename field is empty.")
    key = _clip_key(dataset, _gt_subject(dataset, subject_cell, where), clip)
    if key in out:
      raise AnnotationError(
          f"{where}: {'/'.join(key[:2])}/{clip} is listed again (first at "
          f"{out[key].where}).")
    out[key] = GroundTruthRow(label, where, clip)
  if not out:
    raise AnnotationError(f"{path} lists no clips.")
  return out


def apply_ground_truth(records: list[common.ClipRecord],
                       truth: dict[tuple[str, str, str], GroundTruthRow],
                       source: str, report: common.BuildReport
                       ) -> list[common.ClipRecord]:
  """The records relabelled by the official list; the rest left out.

  Every listed clip must exist in the source annotations. A label that
  differs from the emotion mapping's is a repair in the report; a clip the
  mapping would keep but the list leaves out is excluded with
  `GROUND_TRUTH_REASON` (one the mapping drops keeps the class-set reason).

  Raises:
    AnnotationError: listing the rows whose clips the sources do not have.
  """
  def key(r):
    return _clip_key(r.dataset, r.subject, r.clip)

  have = {key(r) for r in records}
  missing = [f"{row.where}: {k[0]}/{k[1]}/{row.clip}"
             for k, row in truth.items() if k not in have]
  if missing:
    raise AnnotationError(
        f"{len(missing)} clip(s) of {source} are not in the source "
        "annotations found in the manual directory:\n  "
        + "\n  ".join(missing[:20]) + ("\n  ..." if len(missing) > 20 else "")
        + "\nCheck that each dataset is laid out as its builder describes "
        "(and that CASME II's sheet lists these clips), or that the file is "
        "the MEGC2019 3-class list.")
  out = []
  for r in records:
    row = truth.get(key(r))
    if row is None:
      # A clip the mapping drops keeps that reason; one it would keep is
      # left out because the list does not have it.
      out.append(r if r.label is None else dataclasses.replace(
          r, label=None, exclude_reason=GROUND_TRUTH_REASON))
      continue
    if row.label != r.label:
      report.repair(
          r, "MEGC2019 ground truth",
          f"label {row.label} ({row.where}); the emotion mapping gives "
          f"{r.label or 'excluded'} for {r.emotion!r}")
    out.append(dataclasses.replace(r, label=row.label))
  return out


def find_clips(manual_dir: epath.Path, variant: str,
               report: common.BuildReport) -> list[common.ClipRecord]:
  """CASME II, SAMM and SMIC-HS records under the MEGC2019 3-class mapping."""
  manual_dir = epath.Path(manual_dir)
  records = casme2.find_clips(manual_dir, common.CLASS_SETS["casme2"][3],
                              variant, report, prefer=CASME2_WORKBOOKS)
  records += samm.find_clips(
      manual_dir, common.CLASS_SETS["samm"][3],
      "resized" if variant == "resized" else "", report)
  records += smic_hs.find_clips(manual_dir, common.CLASS_SETS["smic_hs"][3],
                                variant, report)
  gt_path = manual_dir / GROUND_TRUTH_FILE
  if gt_path.exists():
    truth = read_ground_truth(gt_path)
    report.record_input(gt_path)
    records = apply_ground_truth(records, truth, str(gt_path), report)
    report.extra["ground_truth"] = str(gt_path)
    report.notes.append(
        f"Clip list and labels from the official ground truth {gt_path} "
        f"({len(truth)} clips); the emotion mapping is only cross-checked "
        "(disagreements are listed under 'repaired').")
  else:
    report.extra["ground_truth"] = None
    report.notes.append(
        f"No official ground-truth file at {gt_path}: the clip list and "
        "labels come from the emotion mapping, which can differ from the "
        "published set by a few clips (e.g. CASME II negatives). Copy the "
        "official file there and rebuild for the exact MEGC2019 set.")
  return records


def compare_with_published(report: common.BuildReport) -> dict[str, Any]:
  """The built set's class counts per source against the published ones.

  Returns {source: {class: {"built": n, "published": m}}} for every count
  that differs (empty when the build is the published set); also written to
  the report (`published_counts_differences`) with a note saying which
  counts differ, so a set that is not the published one cannot pass as it.
  """
  built = report.counts_by_dataset()
  diff = {}
  for src in sorted(set(PUBLISHED_COUNTS) | set(built)):
    published = PUBLISHED_COUNTS.get(src, {})
    for cls in sorted(set(published) | set(built[src])):
      n, m = built[src][cls], published.get(cls, 0)
      if n != m:
        diff.setdefault(src, {})[cls] = {"built": n, "published": m}
  report.extra["published_counts"] = PUBLISHED_COUNTS
  report.extra["published_counts_differences"] = diff
  total = sum(sum(c.values()) for c in PUBLISHED_COUNTS.values())
  if not diff:
    report.notes.append(
        f"Class counts per source equal the published MEGC2019 set's "
        f"({total} clips).")
  else:
    listed = "; ".join(
        f"{src} {cls} {d['built']} (published {d['published']})"
        for src, by_cls in diff.items() for cls, d in by_cls.items())
    report.notes.append(
        f"This build is NOT the published MEGC2019 set: {len(report.kept)} "
        f"clips (published {total}); counts that differ: {listed}. Scores "
        "on it are not comparable with MEGC2019 results as they stand; see "
        "the skipped, excluded and repaired clips in this report"
        + ("" if report.extra.get("ground_truth") else
           f", and copy the official {GROUND_TRUTH_FILE} into the manual "
           "directory") + ".")
  return diff


class Builder(common.ClipBuilder):
  """The MEGC2019 composite: 3 classes, 224/112/64 px, 68 subjects."""

  DATASET = DATASET
  HOMEPAGE = "https://facial-micro-expressiongc.github.io/MEGC2019/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.make_configs(
      {3: common.megc_class_set(["negative", "positive", "surprise"])})

  def find_clips(self, manual_dir, report):
    return find_clips(manual_dir, self.builder_config.variant, report)

  def finish_report(self, report):
    compare_with_published(report)
