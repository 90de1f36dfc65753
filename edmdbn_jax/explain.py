"""Class activation maps and Token Attention maps for EDMDBN, and their figures.

Two methods, for class c on a feature map A (h, w, C), G = d logit_c / d A:
  'hirescam' (the default; HiResCAM, Draelos & Carin 2020, gradient x
    activation): cam_c[i, j] = ReLU(sum_k G[i, j, k] A[i, j, k]).
    EDMDBN's head is one linear layer over the whole flattened map, with
    its own weights at every position, so sum_k G A at (i, j) is exactly
    that position's share of the logit: the signed map sums to the logit
    less the head's bias.
  'gradcam' (Grad-CAM, Selvaraju et al. 2017):
    alpha_c[k] = mean_{i,j} G[i, j, k],
    cam_c[i, j] = ReLU(sum_k alpha_c[k] A[i, j, k]).
    Averaging the gradient over positions discards where this head reads:
    with a linear head alpha_c is the same for every clip, and the map can
    miss, or be zero over, the positions that carry the logit (measured on
    a trained tiny model, 2026-12-02: its top position was the one whose
    removal lowered the logit most less often than HiResCAM's). Kept as an
    option for comparison with published Grad-CAM figures.
Each map is then divided by its maximum (an all-zero map stays zero), so
every map lies in [0, 1].

Targets: 'fused' (the 14 x 14 map the head reads; the paper's Fig. 6) or
'entire' / 'detail' (that branch's output as the fusion takes it: after its
last stage, Token Attention and final LayerNorm; for the detail branch
averaged over its temporal tokens). With add fusion the three share their
gradients, so before the ReLU and the normalisation fused = entire +
detail (`return_signed`); the drawn maps, each scaled to its own maximum,
show where each branch's evidence lies, not its share.

Each map is divided by its own maximum: a map shows where the evidence for
its class lies, not how strong it is (the class probabilities say that). A
map that is zero everywhere (HiResCAM: no position adds to the class's
logit; Grad-CAM: its weighted sum is <= 0 everywhere) stays zero and is
labelled so in the panels.
"""

from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

TARGETS = ("fused", "entire", "detail")
METHODS = ("hirescam", "gradcam")
DEFAULT_METHOD = "hirescam"
METHOD_LABELS = {"hirescam": "HiResCAM (gradient x activation)",
                 "gradcam": "Grad-CAM"}
# Under an all-zero map, what that means for each method.
EMPTY_LABELS = {"hirescam": "no position adds to it",
                "gradcam": "Grad-CAM <= 0 everywhere"}


def check_method(method: str) -> str:
  if method not in METHODS:
    raise ValueError(f"method={method!r}; choose from {METHODS}")
  return method


def _normalise(cam):
  """(..., h, w) -> each map divided by its max (zeros stay zeros)."""
  peak = jnp.max(cam, axis=(-2, -1), keepdims=True)
  return jnp.where(peak > 0, cam / jnp.where(peak > 0, peak, 1.0), 0.0)


def signed_cam(feature, grads, method: str = DEFAULT_METHOD):
  """feature, grads: (B, h, w, C) -> the map before the ReLU and the
  normalisation (B, h, w): sum_k G A ('hirescam') or sum_k alpha[k] A
  ('gradcam')."""
  if check_method(method) == "gradcam":
    grads = jnp.mean(grads, axis=(1, 2), keepdims=True)
  return jnp.sum(grads * feature, axis=-1)


def cam_from_gradients(feature, grads, method: str = DEFAULT_METHOD):
  """feature, grads: (B, h, w, C) -> normalised map (B, h, w)."""
  return _normalise(jax.nn.relu(signed_cam(feature, grads, method)))


def _class_cotangents(vjp, logits, classes):
  """Gradients of each class's summed logit, with a leading class axis.

  One forward pass (the `vjp`), one backward pass per class (vmapped).
  """
  onehot = jnp.eye(logits.shape[-1], dtype=logits.dtype)[jnp.asarray(classes)]
  return jax.vmap(lambda c: vjp(jnp.broadcast_to(c, logits.shape)))(onehot)


def gradcam(model, variables, frames, keyframes, classes: Sequence[int],
            target: str = "fused", return_out: bool = False,
            return_signed: bool = False, method: str = DEFAULT_METHOD):
  """Class activation maps of `classes` on `target` (`method`: 'hirescam'
  or 'gradcam', see the module docstring).

  Args:
    model: an EDMDBN module.
    variables: {'params': ...}.
    frames, keyframes: normalised model inputs (B, T+1, H, W, 3), (B, 2, ...).
    classes: class indices to explain.
    target: 'fused', 'entire' or 'detail'.
    return_out: also return the forward pass's named intermediates as
      'out' (as `model.apply` returns them; e.g. for `attention_maps`), from
      the same forward pass the gradients use.
    return_signed: also return 'signed' (B, len(classes), h, w), the maps
      before the ReLU and the normalisation (with add fusion, fused =
      entire + detail there).

  Returns:
    dict with 'cams' float32 (B, len(classes), h, w) in [0, 1], 'logits'
    (B, K), 'probabilities' (B, K) and, with `return_out`, 'out'.
  """
  if target not in TARGETS:
    raise ValueError(f"target={target!r}; choose from {TARGETS}")
  check_method(method)
  params = {"params": variables["params"]}
  if target == "fused":
    fused, out = model.apply(params, frames, keyframes, method="features")
    logits, vjp = jax.vjp(
        lambda a: model.apply(params, a, method="classify"), fused)
    out["logits"] = logits
    feature, grads = fused, _class_cotangents(vjp, logits, classes)[0]
  else:
    if target not in ("entire", "detail") or (
        model.branches not in ("both", target)):
      raise ValueError(f"The model has no {target} branch "
                       f"(branches={model.branches!r}).")
    hooked = model.clone(gradcam_hooks=True)
    # A zero perturbation shaped like each branch's features (no compute).
    shapes = jax.eval_shape(
        lambda: hooked.apply(params, frames, keyframes,
                             mutable=["perturbations"])[1])
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                         shapes["perturbations"])
    logits, vjp, out = jax.vjp(
        lambda p: hooked.apply({**params, "perturbations": p}, frames,
                               keyframes), zeros, has_aux=True)
    # The branch's features as the fusion takes them (after its final
    # LayerNorm). Temporal tokens: the features averaged over D, with the
    # gradient with respect to that average (the sum over D: the fusion
    # reads the detail branch through its temporal mean).
    feature = jnp.mean(out[target]["features"], 1)
    grads = jnp.sum(
        _class_cotangents(vjp, logits, classes)[0][target]["features"], 2)
  signed = jnp.moveaxis(jax.vmap(lambda g: signed_cam(
      feature.astype(jnp.float32), g.astype(jnp.float32), method))(grads),
                        0, 1)
  cams = _normalise(jax.nn.relu(signed))
  res = {"cams": cams, "logits": logits,
         "probabilities": jax.nn.softmax(logits, -1)}
  if return_signed:
    res["signed"] = signed
  if return_out:
    res["out"] = out
  return res


def attention_maps(out: Dict) -> Dict[str, np.ndarray]:
  """Accumulated Token Attention maps from a forward pass's `out`.

  Returns {'<branch>/attention<i>': (B, h_i, w_i)} (averaged over temporal
  tokens), empty when the model has no Token Attention.
  """
  maps = {}
  for branch in ("entire", "detail"):
    for key, value in sorted(out.get(branch, {}).items()):
      if key.startswith("attention"):
        maps[f"{branch}/{key}"] = np.asarray(
            jnp.mean(value[..., 0], axis=1), np.float32)
  return maps


def upsample(maps, size: int):
  """(..., h, w) -> (..., size, size), bilinear."""
  maps = jnp.asarray(maps, jnp.float32)
  shape = maps.shape[:-2] + (size, size)
  return jax.image.resize(maps, shape, "bilinear")


def overlay(image, cam, alpha: float = 0.45):
  """uint8 RGB (H, W, 3) + map (h, w) in [0, 1] -> uint8 RGB overlay (jet)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  cam = np.asarray(upsample(cam, image.shape[0]))
  cam = np.clip(cam, 0.0, 1.0)
  colour = matplotlib.colormaps["jet"](cam)[..., :3] * 255.0
  out = (1 - alpha) * np.asarray(image, np.float32) + alpha * colour
  return np.clip(out, 0, 255).astype(np.uint8)


def _count(n: int, noun: str) -> str:
  return f"{n} {noun}{'' if n == 1 else 's'}"


def grid_label(cams, size: int) -> str:
  """What the overlays' resolution is: the maps' token grid, upsampled."""
  h, w = np.asarray(cams).shape[-2:]
  return (f"maps on a {h}x{w} token grid, bilinearly upsampled to {size} px "
          "(no finer detail than the grid)")


def motion_image(onset, apex):
  """uint8 onset/apex (H, W, 3) -> uint8 visualisation of apex - onset."""
  d = np.asarray(apex, np.float32) - np.asarray(onset, np.float32)
  scale = max(np.abs(d).max(), 1.0)
  return np.clip(127.5 + 127.5 * d / scale, 0, 255).astype(np.uint8)


def save_class_means(path: str, apex_means, cam_means, counts, correct,
                     class_names: Sequence[str], title: str = "",
                     empty=None):
  """Writes a PNG: per class, the mean apex frame of its clips under the
  mean map of that (true) class; classes without clips are blank.

  Args:
    apex_means: (K, H, W, 3) mean apex frames (aligned faces: the mean is a
      face).
    cam_means: (K, h, w) mean true-class maps in [0, 1].
    counts, correct: (K,) clips of each class, and how many were predicted
      right.
    empty: (K,) how many of each class's maps were zero everywhere
      (averaged in as zeros), or None.

  The overlays share one absolute colour scale (a colour bar): a class
  whose clips' maps disagree on where the evidence lies has a faint mean.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  k = len(class_names)
  fig, axes = plt.subplots(1, k, figsize=(2.4 * k, 3.4), squeeze=False)
  for c, ax in enumerate(axes[0]):
    ax.axis("off")
    if not counts[c]:
      ax.set_title(f"{class_names[c]}\nno clips", fontsize=8)
      continue
    face = np.clip(np.asarray(apex_means[c]), 0, 255).astype(np.uint8)
    ax.imshow(overlay(face, cam_means[c]))
    zeros = (f", {_count(int(empty[c]), 'empty map')}"
             if empty is not None and empty[c] else "")
    ax.set_title(f"{class_names[c]}\n{_count(int(counts[c]), 'clip')}, "
                 f"{int(correct[c])} right{zeros}\npeak "
                 f"{float(np.max(cam_means[c])):.2f}", fontsize=8)
  mappable = matplotlib.cm.ScalarMappable(
      norm=matplotlib.colors.Normalize(0.0, 1.0), cmap="jet")
  # The colour bar has an axis of its own, right of the panels (one taken
  # from the panels overlapped the last panel's title).
  fig.subplots_adjust(top=0.72, bottom=0.02, left=0.01, right=0.86,
                      wspace=0.08)
  cax = fig.add_axes([0.89, 0.08, 0.015, 0.58])
  fig.colorbar(mappable, cax=cax,
               label="mean map (clip maps in [0, 1])")
  cax.tick_params(labelsize=6)
  cax.yaxis.label.set_size(7)
  fig.suptitle(f"{title}\n{grid_label(cam_means, apex_means.shape[1])}",
               fontsize=9)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_panel(path: str, onset, apex, cams, class_names: Sequence[str],
               probabilities, title: str = "",
               attention: Optional[Dict[str, np.ndarray]] = None,
               label: Optional[str] = None, method: str = DEFAULT_METHOD):
  """Writes a PNG: onset, apex, entire motion, one overlay per class.

  Args:
    onset, apex: uint8 (H, W, 3) frames of one clip.
    cams: (len(class_names), h, w) maps in [0, 1].
    probabilities: (len(class_names),) the model's probabilities.
    attention: optional {'name': (h, w)} maps shown on extra rows, each
      scaled from its own minimum to maximum (printed under it, with a
      colour bar): accumulated maps are products of sigmoids, often within
      a few hundredths of each other.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = 3 + len(class_names)
  attention = dict(sorted((attention or {}).items()))
  rows = 1 + -(-len(attention) // n)  # every map gets a tile
  fig, axes = plt.subplots(rows, n, figsize=(2.2 * n, 2.5 * rows),
                           squeeze=False)
  tiles = [("onset", onset), ("apex", apex),
           ("apex - onset\n(stretched to full range)",
            motion_image(onset, apex))]
  for c, name in enumerate(class_names):
    mark = " (true)" if label is not None and name == label else ""
    empty = (f"\n{EMPTY_LABELS[method]}" if not np.any(cams[c]) else "")
    tiles.append((f"{name}{mark}\np={float(probabilities[c]):.2f}{empty}",
                  overlay(apex, cams[c])))
  for ax, (name, img) in zip(axes[0], tiles):
    ax.imshow(img)
    ax.set_title(name, fontsize=8)
    ax.axis("off")
  for ax in axes[1:].ravel():
    ax.axis("off")
  for ax, (name, m) in zip(axes[1:].ravel(), attention.items()):
    m = np.asarray(m, np.float32)
    lo, hi = float(m.min()), float(m.max())
    im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-6))
    ax.set_title(f"Token Attention {name}\n{lo:.3f} .. {hi:.3f}",
                 fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(
        labelsize=5)
  fig.suptitle(f"{title}\n{METHOD_LABELS[method]} maps each scaled to their "
               "own maximum "
               "(where the evidence lies, not how strong it is); "
               f"{grid_label(cams, apex.shape[0])}", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
