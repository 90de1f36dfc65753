"""MEGC2019 composite (See et al., 2019): SMIC-HS + CASME II + SAMM, 3 classes.

negative / positive / surprise by the MEGC2019 mapping (`common.megc_class_set`),
others (and CASME II sadness and fear) excluded. Subjects stay distinct across
the source datasets ('casme2/sub01', 'samm/006', 'smic_hs/s1'), so LOSO runs
over 68 subjects. Published counts (negative/positive/surprise/total): SMIC
70/51/43/164, CASME II 88/32/25/145 (2014 sheet), SAMM 92/26/15/133, all
250/109/83/442; the build report lists the counts this build produced.
"""

from etils import epath

from edmdbn_jax.datasets import common
from edmdbn_jax.datasets.casme2 import casme2_dataset_builder as casme2
from edmdbn_jax.datasets.samm import samm_dataset_builder as samm
from edmdbn_jax.datasets.smic_hs import smic_hs_dataset_builder as smic_hs

DATASET = "megc2019_composite"
# MEGC2019 was defined on the 2014 CASME II sheet: prefer it here.
CASME2_WORKBOOKS = tuple(reversed(casme2.WORKBOOKS))
PUBLISHED_COUNTS = {
    "smic_hs": {"negative": 70, "positive": 51, "surprise": 43},
    "casme2": {"negative": 88, "positive": 32, "surprise": 25},
    "samm": {"negative": 92, "positive": 26, "surprise": 15},
}

MANUAL_DOWNLOAD_INSTRUCTIONS = (
    "The MEGC2019 composite is built from three licence-gated datasets in one "
    "manual directory; lay out each as its own builder describes:\n\n"
    + casme2.MANUAL_DOWNLOAD_INSTRUCTIONS + "\n"
    + samm.MANUAL_DOWNLOAD_INSTRUCTIONS + "\n"
    + smic_hs.MANUAL_DOWNLOAD_INSTRUCTIONS
    + "\nCASME II labels come from CASME2-coding-20140508.xlsx when present "
    "(the sheet MEGC2019 used), else from the 2019 sheet.\n")


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
  report.notes.append(
      "MEGC2019 published counts per source (negative/positive/surprise): "
      f"{PUBLISHED_COUNTS}; compare with class counts per source below.")
  return records


class Builder(common.ClipBuilder):
  """The MEGC2019 composite: 3 classes, 224/112/64 px, 68 subjects."""

  DATASET = DATASET
  HOMEPAGE = "https://facial-micro-expressiongc.github.io/MEGC2019/"
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.make_configs(
      {3: common.megc_class_set(["negative", "positive", "surprise"])})

  def find_clips(self, manual_dir, report):
    return find_clips(manual_dir, self.builder_config.variant, report)
