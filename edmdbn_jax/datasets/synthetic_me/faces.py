"""Procedural faces and micro-expressions (NumPy + OpenCV, no data files).

Every subject is a distinct identity: face shape, feature geometry, skin and
lip colour, a smooth texture field, lighting direction and strength. A clip
starts neutral at the onset, a facial action rises to the apex and decays by
the offset. Actions are smooth local displacement fields (Gaussian windows)
at action-unit sites, warped into the neutral face with `cv2.remap`:

  AU1+2  brow raise (inner + outer brow up)     AU4  brow lower (down, inward)
  AU5    upper-lid raise                        AU12 lip-corner pull (up, out)
  AU14   dimpler (corners inward)               AU15 lip-corner depress
  AU17   chin raise (chin and lower lip up)     AU26 jaw drop (lower face down)

Amplitudes are given in pixels at 224 px (0.5 to 3 px, as real micro-
expressions) and scaled with the image size. Distractors carry no label:
blinks, small head drift (translation and rotation), illumination flicker and
sensor noise.

Classes follow AU combinations the way CASME II's objective classes do (see
CLASS_RECIPES). Shared AUs (AU15 in disgust and repression, AU26 in surprise
and others, AU4 in disgust and others) make the task learnable but not trivial.
"""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

# Each class: list of (weight, recipe); a recipe maps AU -> relative
# amplitude, with optional AUs given as (amplitude, probability).
CLASS_RECIPES: Dict[str, List[Tuple[float, Dict[str, Tuple[float, float]]]]] = {
    "happiness": [(1.0, {"AU12": (1.0, 1.0), "AU26": (0.4, 0.3)})],
    "surprise": [(1.0, {"AU1+2": (1.0, 1.0), "AU5": (0.8, 0.6),
                        "AU26": (0.6, 0.4)})],
    "disgust": [(1.0, {"AU4": (1.0, 1.0), "AU15": (0.5, 0.4)})],
    "repression": [(0.4, {"AU14": (1.0, 1.0), "AU17": (0.6, 0.5)}),
                   (0.3, {"AU15": (1.0, 1.0), "AU17": (0.6, 0.5)}),
                   (0.3, {"AU17": (1.0, 1.0), "AU14": (0.5, 0.5)})],
    "others": [(0.35, {"AU5": (1.0, 1.0)}),
               (0.35, {"AU26": (1.0, 1.0)}),
               (0.3, {"AU1+2": (0.7, 1.0), "AU4": (0.7, 1.0)})],
}
# 3-class (MEGC-style): negative = disgust or repression recipes.
THREE_CLASS = {"negative": ("disgust", "repression"),
               "positive": ("happiness",), "surprise": ("surprise",)}
FIVE_CLASS = ("happiness", "repression", "surprise", "disgust", "others")


@dataclasses.dataclass
class Identity:
  """Geometry in units of the image size S (multiply by S to get pixels)."""
  cx: float
  cy: float
  ax: float            # face half-width
  ay: float            # face half-height
  eye_dx: float        # eye centre offset from the midline
  eye_y: float
  eye_w: float
  eye_h: float
  brow_gap: float      # brow above eye centre
  brow_len: float
  brow_thick: float
  brow_tilt: float     # radians, outer end up (+) or down (-)
  nose_y: float
  mouth_y: float
  mouth_w: float
  lip_thick: float
  skin: np.ndarray     # RGB 0..255
  lip: np.ndarray
  hair: np.ndarray
  background: np.ndarray
  light_dir: float     # radians
  light_gain: float
  texture_seed: int
  gain: float          # subject-specific expressiveness


def make_identity(rng: np.random.Generator) -> Identity:
  tone = rng.uniform(0.0, 1.0)
  skin = np.array([235, 200, 175]) * (1 - tone) + np.array([120, 80, 55]) * tone
  skin = skin + rng.normal(0, 8, 3)
  return Identity(
      cx=0.5 + rng.normal(0, 0.01), cy=0.53 + rng.normal(0, 0.01),
      ax=rng.uniform(0.30, 0.37), ay=rng.uniform(0.40, 0.46),
      eye_dx=rng.uniform(0.14, 0.19), eye_y=rng.uniform(0.40, 0.45),
      eye_w=rng.uniform(0.055, 0.075), eye_h=rng.uniform(0.022, 0.032),
      brow_gap=rng.uniform(0.06, 0.09), brow_len=rng.uniform(0.10, 0.14),
      brow_thick=rng.uniform(0.012, 0.022), brow_tilt=rng.uniform(-0.25, 0.25),
      nose_y=rng.uniform(0.56, 0.61), mouth_y=rng.uniform(0.70, 0.75),
      mouth_w=rng.uniform(0.09, 0.13), lip_thick=rng.uniform(0.012, 0.02),
      skin=np.clip(skin, 30, 250),
      lip=np.clip(skin * np.array([0.75, 0.45, 0.45]) + rng.normal(0, 6, 3),
                  10, 255),
      hair=np.clip(rng.uniform(10, 90) * np.ones(3) + rng.normal(0, 8, 3), 0,
                   255),
      background=rng.uniform(60, 200, 3),
      light_dir=rng.uniform(0, 2 * np.pi), light_gain=rng.uniform(0.05, 0.2),
      texture_seed=int(rng.integers(0, 2**31 - 1)),
      gain=rng.uniform(0.8, 1.2))


def _pt(x, y, s):
  return (int(round(x * s * 16)), int(round(y * s * 16)))  # 4-bit subpixel


def render(idn: Identity, s: int, blink: float = 0.0) -> np.ndarray:
  """Neutral face, float32 RGB (S, S, 3) in [0, 255]. blink in [0, 1]."""
  img = np.ones((s, s, 3), np.float32) * idn.background
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
  # Lighting and texture over the face.
  light = 1.0 + idn.light_gain * (np.cos(idn.light_dir) * (xx - 0.5) * 2 +
                                  np.sin(idn.light_dir) * (yy - 0.5) * 2)
  trng = np.random.default_rng(idn.texture_seed)
  tex = trng.normal(0, 1, (max(s // 8, 4), max(s // 8, 4))).astype(np.float32)
  tex = cv2.resize(tex, (s, s), interpolation=cv2.INTER_CUBIC)
  tex = cv2.GaussianBlur(tex, (0, 0), max(s / 64, 0.5))
  face = ((xx - idn.cx) / idn.ax) ** 2 + ((yy - idn.cy) / idn.ay) ** 2
  mask = np.clip((1.0 - face) * s * idn.ax / 2, 0, 1)[..., None]
  skin = idn.skin[None, None] * light[..., None] * (1 + 0.04 * tex[..., None])
  img = img * (1 - mask) + skin * mask
  # Hair line above the forehead.
  hair = np.clip((idn.cy - 0.75 * idn.ay - yy) * s / 2, 0, 1)[..., None] * mask
  img = img * (1 - hair) + idn.hair * hair
  u8 = np.clip(img, 0, 255).astype(np.uint8)
  col = lambda c: tuple(float(v) for v in c)
  aa, sh = cv2.LINE_AA, 4
  for side in (-1, 1):
    ex = idn.cx + side * idn.eye_dx
    ey = idn.eye_y
    axes = (int(idn.eye_w * s * 16), int(max(idn.eye_h * (1 - blink), 0.002)
                                         * s * 16))
    cv2.ellipse(u8, _pt(ex, ey, s), axes, 0, 0, 360, col([245, 245, 240]),
                -1, aa, sh)
    if blink < 0.7:
      r = int(idn.eye_h * 0.9 * (1 - blink) * s * 16)
      cv2.circle(u8, _pt(ex, ey, s), max(r, 1), col([40, 30, 25]), -1, aa, sh)
    cv2.ellipse(u8, _pt(ex, ey, s), axes, 0, 180, 360,
                col(idn.skin * 0.55), max(1, int(s / 112)), aa, sh)
    # Brow: a thick line, outer end tilted.
    bx0 = ex - side * idn.brow_len * 0.35
    bx1 = ex + side * idn.brow_len * 0.65
    by = ey - idn.brow_gap
    cv2.line(u8, _pt(bx0, by, s), _pt(bx1, by - idn.brow_tilt * 0.05, s),
             col(idn.hair), max(1, int(idn.brow_thick * s)), aa, sh)
  # Nose: a shaded line and nostrils.
  cv2.line(u8, _pt(idn.cx, idn.eye_y + 0.03, s), _pt(idn.cx, idn.nose_y, s),
           col(idn.skin * 0.8), max(1, int(s / 150)), aa, sh)
  for side in (-1, 1):
    cv2.circle(u8, _pt(idn.cx + side * 0.025, idn.nose_y, s),
               max(1, int(0.008 * s * 16)), col(idn.skin * 0.45), -1, aa, sh)
  # Mouth: upper and lower lip.
  mw, mt = idn.mouth_w, idn.lip_thick
  cv2.ellipse(u8, _pt(idn.cx, idn.mouth_y, s),
              (int(mw * s * 16), int(mt * s * 16)), 0, 180, 360, col(idn.lip),
              -1, aa, sh)
  cv2.ellipse(u8, _pt(idn.cx, idn.mouth_y, s),
              (int(mw * 0.9 * s * 16), int(mt * 1.3 * s * 16)), 0, 0, 180,
              col(idn.lip * 0.9), -1, aa, sh)
  cv2.line(u8, _pt(idn.cx - mw, idn.mouth_y, s), _pt(idn.cx + mw, idn.mouth_y,
                                                       s),
           col(idn.lip * 0.45), max(1, int(s / 150)), aa, sh)
  # Chin crease.
  cv2.ellipse(u8, _pt(idn.cx, idn.mouth_y + 0.09, s),
              (int(0.05 * s * 16), int(0.012 * s * 16)), 0, 20, 160,
              col(idn.skin * 0.75), max(1, int(s / 150)), aa, sh)
  return u8.astype(np.float32)


def _bump(xx, yy, x, y, sigma):
  return np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))


def au_field(idn: Identity, au: str, s: int, xx, yy):
  """Displacement (dx, dy) in pixels at 224 px-equivalent amplitude 1."""
  dx = np.zeros_like(xx)
  dy = np.zeros_like(xx)
  sig = 0.06
  for side in (-1, 1):
    ex = idn.cx + side * idn.eye_dx
    by = idn.eye_y - idn.brow_gap
    if au == "AU1+2":
      dy -= _bump(xx, yy, ex - side * 0.03, by, sig)          # inner
      dy -= 0.8 * _bump(xx, yy, ex + side * 0.05, by, sig)    # outer
    elif au == "AU4":
      b = _bump(xx, yy, ex - side * 0.03, by + 0.01, sig)
      dy += b
      dx -= side * 0.6 * b
    elif au == "AU5":
      dy -= _bump(xx, yy, ex, idn.eye_y - idn.eye_h, 0.035)
    elif au == "AU12":
      b = _bump(xx, yy, idn.cx + side * idn.mouth_w, idn.mouth_y, 0.05)
      dy -= 0.8 * b
      dx += side * 0.6 * b
    elif au == "AU14":
      b = _bump(xx, yy, idn.cx + side * idn.mouth_w, idn.mouth_y, 0.04)
      dx -= side * b
    elif au == "AU15":
      b = _bump(xx, yy, idn.cx + side * idn.mouth_w, idn.mouth_y, 0.045)
      dy += b
  if au == "AU17":
    dy -= _bump(xx, yy, idn.cx, idn.mouth_y + 0.07, 0.07)
  elif au == "AU26":
    lower = 1 / (1 + np.exp(-(yy - idn.mouth_y - 0.01) * 60))
    dy += lower * _bump(xx, yy, idn.cx, idn.mouth_y + 0.12, 0.16)
  return dx, dy


def sample_aus(cls: str, rng: np.random.Generator) -> Dict[str, float]:
  recipes = CLASS_RECIPES[cls]
  weights = np.array([w for w, _ in recipes])
  recipe = recipes[rng.choice(len(recipes), p=weights / weights.sum())][1]
  aus = {}
  for au, (amp, prob) in recipe.items():
    if rng.random() < prob:
      aus[au] = amp * rng.uniform(0.7, 1.3)
  return aus


def au_string(aus: Dict[str, float]) -> str:
  order = ["AU1+2", "AU4", "AU5", "AU12", "AU14", "AU15", "AU17", "AU26"]
  parts = []
  for au in order:
    if au in aus:
      parts.extend(au[2:].split("+"))
  return "+".join(parts)


@dataclasses.dataclass
class ClipSpec:
  fps: int
  num_frames: int      # frames from the first (neutral) to the offset
  onset: int
  apex: int
  offset: int
  aus: Dict[str, float]
  amplitude_px: float  # peak displacement at 224 px
  blink: Tuple[int, int]  # (start, length) in frames; length 0 = none
  drift: np.ndarray    # (3,) final translation x, y (px at 224) and degrees
  flicker: float
  noise: float


def make_clip_spec(cls: str, rng: np.random.Generator) -> ClipSpec:
  fps = int(rng.choice([100, 200]))
  duration = rng.uniform(0.2, 0.5)
  lead = int(rng.integers(0, 4))
  n = lead + max(int(duration * fps), 8)
  onset = lead
  offset = n - 1
  apex = onset + int(round((offset - onset) * rng.uniform(0.3, 0.65)))
  blink = (0, 0)
  if rng.random() < 0.3:
    length = max(int(0.12 * fps), 2)
    blink = (int(rng.integers(0, max(n - length, 1))), length)
  return ClipSpec(
      fps=fps, num_frames=n, onset=onset, apex=apex, offset=offset,
      aus=sample_aus(cls, rng), amplitude_px=rng.uniform(1.5, 3.0),
      blink=blink,
      drift=np.array([rng.normal(0, 0.3), rng.normal(0, 0.3),
                      rng.normal(0, 0.15)]),
      flicker=rng.uniform(0.0, 0.02), noise=rng.uniform(0.5, 2.0))


def intensity(t: int, spec: ClipSpec) -> float:
  """Action intensity in [0, 1]: 0 at onset, 1 at apex, ~0.1 at offset."""
  if t <= spec.onset:
    return 0.0
  if t <= spec.apex:
    u = (t - spec.onset) / max(spec.apex - spec.onset, 1)
    return 0.5 - 0.5 * np.cos(np.pi * u)
  u = (t - spec.apex) / max(spec.offset - spec.apex, 1)
  return 0.1 + 0.9 * (0.5 + 0.5 * np.cos(np.pi * u))


def render_frames(idn: Identity, spec: ClipSpec, frame_ids: Sequence[int],
                  s: int, rng: np.random.Generator) -> np.ndarray:
  """uint8 (len(frame_ids), S, S, 3) frames of the clip."""
  neutral = render(idn, s)
  closed = render(idn, s, blink=1.0)
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
  scale = s / 224.0
  fx = np.zeros((s, s), np.float32)
  fy = np.zeros((s, s), np.float32)
  for au, amp in spec.aus.items():
    dx, dy = au_field(idn, au, s, xx, yy)
    fx += amp * dx
    fy += amp * dy
  peak = max(np.sqrt(fx ** 2 + fy ** 2).max(), 1e-6)
  unit = spec.amplitude_px * idn.gain * scale / peak  # peak -> amplitude px
  px, py = xx * s, yy * s
  out = []
  for t in frame_ids:
    a = intensity(t, spec) * unit
    b0, bl = spec.blink
    blink = 0.0
    if bl and b0 <= t < b0 + bl:
      blink = np.sin(np.pi * (t - b0) / bl)
    base = neutral if blink == 0 else (1 - blink) * neutral + blink * closed
    # Head drift grows linearly over the clip (rigid, unlabelled).
    frac = t / max(spec.num_frames - 1, 1)
    ang = np.radians(spec.drift[2] * frac)
    tx, ty = spec.drift[0] * frac * scale, spec.drift[1] * frac * scale
    c, sn = np.cos(ang), np.sin(ang)
    x0, y0 = px - s / 2 - tx, py - s / 2 - ty
    rx = c * x0 + sn * y0 + s / 2
    ry = -sn * x0 + c * y0 + s / 2
    mapx = (rx - a * fx).astype(np.float32)
    mapy = (ry - a * fy).astype(np.float32)
    img = cv2.remap(base, mapx, mapy, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    img = img * (1 + rng.uniform(-spec.flicker, spec.flicker))
    img = img + rng.normal(0, spec.noise, img.shape)
    out.append(np.clip(np.round(img), 0, 255).astype(np.uint8))
  return np.stack(out)
