"""SMIC-HS (Li et al., 2013): 164 micro-expression clips, 16 subjects, 100 fps.

There is no annotation sheet for the pre-cut clips: the label is the emotion
folder (negative, positive, surprise), the first frame is the onset, the last
the offset, and the apex is the middle frame (`common.middle_frame`; the
input pipeline can re-estimate it with `smic_apex='max_diff'`). One task: 3
classes.
"""

import collections
import re

from etils import epath

from edmdbn_jax.datasets import common
from edmdbn_jax.errors import AnnotationError
from edmdbn_jax.errors import DataError

DATASET = "smic_hs"
EMOTIONS = ("negative", "positive", "surprise")

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
SMIC is licence-gated: request it from the University of Oulu and put the
high-speed (HS) clips under `<manual_dir>/SMIC/HS/` exactly like this:

  <manual_dir>/SMIC/HS/s1/micro/negative/s1_ne_01/reg_image302845.bmp  (official crops)
  <manual_dir>/SMIC/HS/s1/micro/negative/s1_ne_01/image302845.bmp      (raw frames)

(emotion folders `negative`, `positive`, `surprise`). A clip folder may hold
either kind or both. The default configs ('3class_224', ...) use the
`reg_image*` crops where present (no alignment) and otherwise align the raw
`image*` frames; '..._aligned' configs always align the raw frames;
'..._resized' configs only resize (crops where present, else raw).
"""

_CROP, _RAW = "reg_image", "image"


def _has_frames(directory: epath.Path, prefix: str) -> bool:
  pattern = re.compile(re.escape(prefix) + r"\d+")
  return any(pattern.fullmatch(p.stem) for p in directory.iterdir())


def _subject_folders(root: epath.Path,
                     report: common.BuildReport) -> list[epath.Path]:
  """The subject folders `s<number>` of `root` (any case), sorted by number.

  Other folders under `root` are not SMIC-HS subjects: each is recorded as a
  report note (logged as a warning), never dropped silently.

  Raises:
    DataError: two folders name one subject ('s3' and 'S3').
  """
  subjects, others = {}, []
  for p in sorted(root.iterdir()):
    if not p.is_dir():
      continue
    if not re.fullmatch(r"s\d+", p.name, flags=re.IGNORECASE):
      others.append(p.name)
      continue
    number = int(p.name[1:])
    if number in subjects:
      raise DataError(
          f"{subjects[number]} and {p} are both subject s{number}; merge "
          "them into one folder.")
    subjects[number] = p
  if others:
    report.notes.append(
        f"{DATASET}: ignored folders {others} under {root}: not subject "
        "folders (expected s1, s2, ...).")
  return [subjects[n] for n in sorted(subjects)]


def _micro_folder(subj: epath.Path) -> epath.Path:
  """`<subject>/micro` (any case).

  Raises:
    DataError: the subject folder has no `micro` folder, naming it and the
      expected layout.
  """
  micro = [p for p in subj.iterdir()
           if p.is_dir() and p.name.lower() == "micro"]
  if len(micro) != 1:
    found = sorted(p.name for p in subj.iterdir())
    raise DataError(
        f"{subj}: expected one folder `micro` in this SMIC-HS subject folder "
        f"(`{subj.name}/micro/<emotion>/<clip>/`), found {found or 'nothing'}. "
        "Move the emotion folders under `micro/`, or remove the subject "
        f"folder if it holds no micro-expression clips.\n"
        f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  return micro[0]


def find_clips(manual_dir: epath.Path, class_set: common.ClassSet,
               variant: str, report: common.BuildReport
               ) -> list[common.ClipRecord]:
  """Walks `SMIC/HS/s*/micro/<emotion>/<clip>/` into clip records.

  Subject (`s1`, `S1`) and `micro` folders match in any case; subject ids are
  written lower-case ('s1'). Frames are not read here; clip folders without
  the needed frames are reported (all at once) before generation.

  Raises:
    DataError: no HS folder, no clips, or a subject folder without `micro/`.
      AnnotationError: an unknown emotion folder.
  """
  root = epath.Path(manual_dir) / "SMIC" / "HS"
  if not root.exists():
    raise DataError(f"{root} does not exist.\n{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  records = []
  sources = collections.Counter()
  # Files where folders are expected (a clip still zipped, say): SMIC-HS
  # has no annotation sheet to miss the clip, so they are reported.
  from edmdbn_jax.preprocess import io as pio  # pylint: disable=g-import-not-at-top

  def files(folder):  # not folders, and not what the system leaves
    return [p for p in folder.iterdir()
            if not p.is_dir() and not pio.is_system_file(p.name)]

  stray = files(root)
  for subj in _subject_folders(root, report):
    subject = f"s{int(subj.name[1:])}"  # 'S01' and 's1' are both 's1'
    micro = _micro_folder(subj)
    stray += files(micro)
    for emo_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
      stray += files(emo_dir)
      if emo_dir.name.lower() not in EMOTIONS:
        raise AnnotationError(
            f"{emo_dir}: unknown emotion folder; SMIC-HS uses {EMOTIONS}. "
            "Move or remove this folder (e.g. a '__MACOSX' left by unzipping) "
            "and build again.")
      for clip_dir in sorted(p for p in emo_dir.iterdir() if p.is_dir()):
        crops = _has_frames(clip_dir, _CROP)
        if variant == "aligned":
          prefix, align = _RAW, True
        elif variant == "resized":
          prefix, align = (_CROP if crops else _RAW), False
        else:
          prefix, align = (_CROP, False) if crops else (_RAW, True)
        kind = ("face-aligned" if align else
                "official crops, align=False" if variant != "resized" else
                "resized only")
        sources[f"{prefix}* ({kind})"] += 1
        emotion = emo_dir.name.lower()
        records.append(common.ClipRecord(
            dataset=DATASET, subject=subject, clip=clip_dir.name,
            emotion=emotion, label=class_set.label(emotion, str(emo_dir)),
            frame_dir=clip_dir, prefix=prefix, align=align,
            where=str(clip_dir)))
  if not records:
    raise DataError(
        f"No clips under {root}/s*/micro/<emotion>/.\n"
        f"{MANUAL_DOWNLOAD_INSTRUCTIONS}")
  if stray:
    stray = sorted(map(str, stray))
    archives = [p for p in stray
                if p.lower().endswith((".zip", ".rar", ".7z", ".tar", ".gz"))]
    report.notes.append(
        f"{DATASET}: ignored {len(stray)} file(s) where subject, emotion or "
        f"clip folders are expected: {stray[:10]}"
        f"{' and more' if len(stray) > 10 else ''}. A clip is a folder of "
        "frames" + (f"; unpack the archives ({len(archives)}) in place and "
                    "build again with --overwrite" if archives else "") + ".")
  report.frame_sources[DATASET] = ", ".join(
      f"{k}: {v} clips" for k, v in sorted(sources.items()))
  report.notes.append(
      f"{DATASET}: labels from the emotion folders; onset = first frame, "
      "offset = last frame, apex = middle frame (no apex annotation exists).")
  return records


class Builder(common.ClipBuilder):
  """SMIC-HS clips: 3 classes, 224/112/64 px, crops or aligned raw."""

  DATASET = DATASET
  HOMEPAGE = "https://www.oulu.fi/en/university/faculties-and-units/faculty-information-technology-and-electrical-engineering/center-machine-vision-and-signal-analysis"
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  BUILDER_CONFIGS = common.make_configs(common.CLASS_SETS[DATASET])

  FIND_CLIPS = staticmethod(find_clips)
