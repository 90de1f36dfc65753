"""EDMDBN in PyTorch, with the released model's state-dict layout.

Two builds of the same network, chosen by `TorchEDMDBN(cfg, blocks=...)`:
  * `blocks='plain'`: an independent second implementation written from the
    reference notes (not from the Flax code): channels-first tensors, Video
    Swin-style window partition with `view`/`permute`, masks from region
    slices, `[:N, :N]` slicing of the nominal relative-position index, as the
    released model does. Needs only torch.
  * `blocks='torchvision'`: the Swin parts are torchvision's Video Swin
    building blocks (`torchvision.models.video.swin_transformer`:
    `PatchEmbed3d`, `SwinTransformerBlock` with `ShiftedWindowAttention3d`,
    and `PatchMerging`), with stochastic depth as in the paper; only Token
    Attention, fusion and the head are written here. Its state dict is the
    released one except that torchvision names the MLP `mlp.0` / `mlp.3`
    where the released model says `mlp.fc1` / `mlp.fc2`
    (`load_numpy_state_dict` translates). Needs torchvision.

Both serve:
  * cross-framework checks: Flax variables -> `to_state_dict` -> this model
    must give the same logits (tests/test_torch_model.py);
  * the PyTorch side of `experiments.benchmark --torch` (torchvision blocks
    by default).

Only `motion='pixel'` and the released 3D entire-branch embedding layout are
supported.
"""

import functools

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def _window_rule(size, window, shift):
  window, shift = list(window), list(shift)
  for i in range(3):
    if size[i] <= window[i]:
      window[i], shift[i] = size[i], 0
  return tuple(window), tuple(shift)


def _partition(x, w):
  """(B, D, H, W, C) -> (B * nW, wd*wh*ww, C)."""
  b, d, h, ww_, c = x.shape
  x = x.view(b, d // w[0], w[0], h // w[1], w[1], ww_ // w[2], w[2], c)
  return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, w[0] * w[1] * w[2], c)


def _reverse(windows, w, b, d, h, ww_):
  x = windows.view(b, d // w[0], h // w[1], ww_ // w[2], w[0], w[1], w[2], -1)
  return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, d, h, ww_, -1)


def _mask(d, h, w, window, shift, device):
  img = torch.zeros((1, d, h, w, 1), device=device)
  cnt = 0
  for sd in (slice(-window[0]), slice(-window[0], -shift[0]),
             slice(-shift[0], None)):
    for sh in (slice(-window[1]), slice(-window[1], -shift[1]),
               slice(-shift[1], None)):
      for sw in (slice(-window[2]), slice(-window[2], -shift[2]),
                 slice(-shift[2], None)):
        img[:, sd, sh, sw, :] = cnt
        cnt += 1
  win = _partition(img, window).squeeze(-1)
  m = win.unsqueeze(1) - win.unsqueeze(2)
  return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


class Attention(nn.Module):

  def __init__(self, dim, heads, window):
    super().__init__()
    self.heads, self.window = heads, window
    self.scale = (dim // heads) ** -0.5
    wd, wh, ww = window
    self.relative_position_bias_table = nn.Parameter(
        torch.zeros((2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1), heads))
    coords = torch.stack(torch.meshgrid(
        torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += wd - 1
    rel[:, :, 1] += wh - 1
    rel[:, :, 2] += ww - 1
    rel[:, :, 0] *= (2 * wh - 1) * (2 * ww - 1)
    rel[:, :, 1] *= 2 * ww - 1
    self.register_buffer("relative_position_index", rel.sum(-1))
    self.qkv = nn.Linear(dim, 3 * dim)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x, mask):
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * self.scale) @ k.transpose(-2, -1)
    index = self.relative_position_index[:n, :n].reshape(-1)
    bias = self.relative_position_bias_table[index].reshape(n, n, -1)
    attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
    if mask is not None:
      nw = mask.shape[0]
      attn = attn.view(b // nw, nw, self.heads, n, n) + mask[None, :, None]
      attn = attn.view(-1, self.heads, n, n)
    attn = attn.softmax(-1)
    y = (attn @ v).transpose(1, 2).reshape(b, n, c)
    return self.proj(y)


class Mlp(nn.Module):

  def __init__(self, dim, hidden):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):

  def __init__(self, dim, heads, window, shift, mlp_ratio):
    super().__init__()
    self.window, self.shift = window, shift
    self.norm1 = nn.LayerNorm(dim)
    self.attn = Attention(dim, heads, window)
    self.norm2 = nn.LayerNorm(dim)
    self.mlp = Mlp(dim, int(dim * mlp_ratio))

  def forward(self, x):  # (B, D, H, W, C)
    b, d, h, w, _ = x.shape
    window, shift = _window_rule((d, h, w), self.window, self.shift)
    y = self.norm1(x)
    pd, ph, pw = [(-s) % win for s, win in zip((d, h, w), window)]
    y = F.pad(y, (0, 0, 0, pw, 0, ph, 0, pd))
    _, dp, hp, wp, _ = y.shape
    mask = None
    if any(s > 0 for s in shift):
      y = torch.roll(y, shifts=(-shift[0], -shift[1], -shift[2]),
                     dims=(1, 2, 3))
      mask = _mask(dp, hp, wp, window, shift, x.device)
    y = self.attn(_partition(y, window), mask)
    y = _reverse(y, window, b, dp, hp, wp)
    if mask is not None:
      y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
    x = x + y[:, :d, :h, :w].contiguous()
    return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):

  def __init__(self, dim):
    super().__init__()
    self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
    self.norm = nn.LayerNorm(4 * dim)

  def forward(self, x):
    _, _, h, w, _ = x.shape
    x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2],
                   x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], -1)
    return self.reduction(self.norm(x))


class TokenAttention(nn.Module):
  """sigmoid(conv([mean_c, max_c])) times maxpool(previous map)."""

  def __init__(self, down):
    super().__init__()
    self.conv = nn.Conv3d(2, 1, 1)
    self.down = down  # the stage's merge, registered twice as released

  def forward(self, x, prev):  # x (B, D, H, W, C)
    stats = torch.stack([x.mean(-1), x.amax(-1)], 1)  # (B, 2, D, H, W)
    a = torch.sigmoid(self.conv(stats))  # (B, 1, D, H, W)
    if prev is not None:
      a = a * F.max_pool3d(prev, (1, 2, 2), (1, 2, 2), ceil_mode=True)
    return x * a.permute(0, 2, 3, 4, 1), a


class PatchEmbed(nn.Module):

  def __init__(self, patch, dim):
    super().__init__()
    self.patch = patch
    self.proj = nn.Conv3d(3, dim, patch, patch)
    self.norm = nn.LayerNorm(dim)

  def forward(self, x):  # (B, 3, D, H, W)
    _, _, d, h, w = x.shape
    p = self.patch
    x = F.pad(x, (0, (-w) % p[2], 0, (-h) % p[1], 0, (-d) % p[0]))
    x = self.proj(x).permute(0, 2, 3, 4, 1)
    return self.norm(x)


BLOCKS = ("plain", "torchvision")


def _torchvision_parts():
  """torchvision's Video Swin building blocks (ImportError without it)."""
  from torchvision.models import swin_transformer as swin2d  # pylint: disable=g-import-not-at-top
  from torchvision.models.video import swin_transformer as swin3d  # pylint: disable=g-import-not-at-top
  return swin2d, swin3d


class Layer(nn.Module):
  """One stage: blocks, Token Attention, patch merging (released names)."""

  def __init__(self, dim, depth, heads, window, mlp_ratio, last, aa,
               blocks="plain", drop_path=()):
    super().__init__()
    shift = tuple(w // 2 for w in window)
    shifts = [(0, 0, 0) if j % 2 == 0 else shift for j in range(depth)]
    if blocks == "torchvision":
      swin2d, swin3d = _torchvision_parts()
      norm = functools.partial(nn.LayerNorm, eps=1e-5)
      self.blocks = nn.ModuleList([
          swin2d.SwinTransformerBlock(
              dim, heads, list(window), list(shifts[j]), mlp_ratio=mlp_ratio,
              stochastic_depth_prob=float(drop_path[j]), norm_layer=norm,
              attn_layer=swin3d.ShiftedWindowAttention3d)
          for j in range(depth)])
      self.downsample = None if last else swin2d.PatchMerging(dim, norm)
    else:
      self.blocks = nn.ModuleList([
          Block(dim, heads, window, shifts[j], mlp_ratio)
          for j in range(depth)])
      self.downsample = None if last else PatchMerging(dim)
    # Built whether or not it is used, as in the released model (so its
    # state dict has the same keys); called only with `aa`.
    self.sa_atten = TokenAttention(self.downsample)
    self.aa = aa


class Backbone(nn.Module):

  def __init__(self, cfg, blocks="plain"):
    super().__init__()
    m = cfg.model
    c = int(m.embed_dim)
    depths = [int(d) for d in m.depths]
    if blocks == "torchvision":
      _, swin3d = _torchvision_parts()
      self.patch_embed = swin3d.PatchEmbed3d(
          list(m.patch_size), 3, c,
          norm_layer=functools.partial(nn.LayerNorm, eps=1e-5))
    else:
      self.patch_embed = PatchEmbed(tuple(m.patch_size), c)
    # Stochastic depth linearly from 0 to drop_path_rate over all blocks
    # (torchvision blocks only; the plain blocks are for inference checks).
    dpr = np.linspace(0.0, float(m.drop_path_rate), sum(depths))
    starts = np.cumsum([0] + depths)
    n = len(depths)
    self.layers = nn.ModuleList([
        Layer(c * 2 ** i, depths[i], int(m.num_heads[i]),
              tuple(m.window_size), float(m.mlp_ratio), i == n - 1,
              bool(m.accumulated_attention), blocks,
              dpr[starts[i]:starts[i + 1]]) for i in range(n)])
    self.norm = nn.LayerNorm(c * 2 ** (n - 1))

  def forward(self, x):  # (B, 3, D, H, W) -> (B, D', H', W', C)
    x = self.patch_embed(x)
    a = None
    for layer in self.layers:
      for blk in layer.blocks:
        x = blk(x)
      if layer.aa:
        x, a = layer.sa_atten(x, a)
      if layer.downsample is not None:
        x = layer.downsample(x)
    return self.norm(x)


class TorchEDMDBN(nn.Module):
  """Inputs as the Flax model: frames (B, T+1, H, W, 3), keyframes (B, 2, ...)."""

  def __init__(self, cfg, blocks="plain"):
    super().__init__()
    m = cfg.model
    if m.motion != "pixel":
      raise ValueError("TorchEDMDBN implements motion='pixel' only.")
    if blocks not in BLOCKS:
      raise ValueError(f"blocks must be one of {BLOCKS}, not {blocks!r}.")
    self.blocks = blocks
    self.branches, self.fusion = m.branches, m.fusion
    if m.branches in ("both", "entire"):
      self.long_action_model = Backbone(cfg, blocks)
    if m.branches in ("both", "detail"):
      self.short_action_model = Backbone(cfg, blocks)
    s = int(cfg.data.image_size)
    n = len(m.depths)
    side = -(-s // (int(m.patch_size[1]) * 2 ** (n - 1)))
    ch = int(m.embed_dim) * 2 ** (n - 1)
    if m.branches == "both" and m.fusion == "concat":
      ch *= 2
    self.head = nn.Sequential(nn.Flatten(), nn.Linear(ch * side * side,
                                                      int(m.num_classes)))

  def forward(self, frames, keyframes):
    maps = []
    if self.branches in ("both", "entire"):
      e = (keyframes[:, 1] - keyframes[:, 0]).permute(0, 3, 1, 2)[:, :, None]
      maps.append(self.long_action_model(e)[:, 0])
    if self.branches in ("both", "detail"):
      d = (frames[:, 1:] - frames[:, :-1]).permute(0, 4, 1, 2, 3)
      maps.append(self.short_action_model(d).mean(1))
    if len(maps) == 1:
      fused = maps[0]
    elif self.fusion == "add":
      fused = maps[0] + maps[1]
    else:
      fused = torch.cat(maps, -1)
    return self.head(fused.permute(0, 3, 1, 2))  # channel-major flatten


# Released MLP names -> torchvision's `MLP` (Linear, GELU, Dropout, Linear,
# Dropout) indices.
_TORCHVISION_MLP = {".mlp.fc1.": ".mlp.0.", ".mlp.fc2.": ".mlp.3."}


def torchvision_key(key: str) -> str:
  """A released state-dict key -> the torchvision-block model's key."""
  for old, new in _TORCHVISION_MLP.items():
    key = key.replace(old, new)
  return key


def load_numpy_state_dict(model: nn.Module, state_dict):
  """Loads a {key: numpy array} state dict in the released layout strictly.

  For a `blocks='torchvision'` model the MLP keys are renamed first.
  """
  rename = torchvision_key if getattr(model, "blocks", "plain") == (
      "torchvision") else (lambda k: k)
  tensors = {rename(k): torch.from_numpy(np.array(v))
             for k, v in state_dict.items()}
  model.load_state_dict(tensors, strict=True)
  return model


def benchmark(cfg, blocks: str = "torchvision", steps: int = 10,
              repeats: int = 5, compile_model: bool = False):
  """PyTorch timings of the same architecture (for experiments.benchmark).

  Times, in this process, batch-`cfg.train.batch_size` training steps
  (AdamW, cross entropy, stochastic depth active with torchvision blocks)
  and inference latency at batch 1 / throughput at batch 64, twice:
    * 'fp32': float32 tensors; on CUDA float32 matmuls may use TF32
      (`torch.set_float32_matmul_precision('high')`), which is what JAX does
      by default for float32 on NVIDIA GPUs, so the two columns compare like
      with like. (On CPU the setting changes nothing.)
    * 'amp': `torch.autocast` to bfloat16, the same compute dtype as the
      toolkit's `--dtype=bfloat16` (no loss scaling is needed for bf16).

  Args:
    cfg: the toolkit config (model.*, data.image_size, data.num_frames,
      train.batch_size).
    blocks: 'torchvision' (torchvision's Video Swin blocks) or 'plain'.
    steps: timed training steps per precision (after 2 warm-up steps).
    repeats: timed batch-1 forward passes (median reported).
    compile_model: wrap the model in `torch.compile` (eager by default, as
      the authors' code runs).

  Returns:
    A dict of figures (seconds, clip-steps/s) and the settings that produced
    them; `peak_memory_bytes_*` on CUDA.
  """
  import time  # pylint: disable=g-import-not-at-top
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  model = TorchEDMDBN(cfg, blocks=blocks).to(device)
  run = torch.compile(model) if compile_model else model
  s = int(cfg.data.image_size)
  t = int(cfg.data.num_frames)
  k = int(cfg.model.num_classes)
  b = int(cfg.train.batch_size)

  def inputs(n):
    return (torch.randn(n, t + 1, s, s, 3, device=device),
            torch.randn(n, 2, s, s, 3, device=device))

  def sync():
    if device == "cuda":
      torch.cuda.synchronize()

  out = {"device": device, "torch": torch.__version__, "blocks": blocks,
         "compiled": bool(compile_model), "batch": b, "steps": steps,
         "amp_dtype": "bfloat16",
         "fp32_matmul_precision": "high (TF32)" if device == "cuda"
                                  else "highest",
         "parameters": int(sum(p.numel() for p in model.parameters()))}
  if blocks == "torchvision":
    import torchvision  # pylint: disable=g-import-not-at-top
    out["torchvision"] = torchvision.__version__
  if device == "cuda":
    out["device_name"] = torch.cuda.get_device_name()
  previous = torch.get_float32_matmul_precision()
  previous_cudnn = torch.backends.cudnn.benchmark
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
  try:
    if device == "cuda":
      torch.set_float32_matmul_precision("high")
      # Let cuDNN pick its fastest kernels for the fixed shapes (the patch
      # convolution), as a tuned PyTorch run would.
      torch.backends.cudnn.benchmark = True
      out["cudnn_benchmark"] = True
    for amp in (False, True):
      tag = "amp" if amp else "fp32"
      f, kf = inputs(b)
      y = torch.randint(0, k, (b,), device=device)
      model.train()
      if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

      def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
          loss = F.cross_entropy(run(f, kf).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

      t0 = time.perf_counter()
      for _ in range(2):
        step()
      sync()
      out[f"warmup_{tag}_s"] = time.perf_counter() - t0
      t0 = time.perf_counter()
      for _ in range(steps):
        step()
      sync()
      out[f"train_{tag}_clip_steps_per_s"] = steps * b / (
          time.perf_counter() - t0)
      if device == "cuda":
        out[f"peak_memory_bytes_{tag}"] = int(torch.cuda.max_memory_allocated())
      model.eval()
      for n, key in ((1, "infer_b1_s"), (64, "infer_b64_s")):
        f1, k1 = inputs(n)
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16,
                                             enabled=amp):
          run(f1, k1)
          sync()
          times = []
          for _ in range(repeats if n == 1 else 2):
            t0 = time.perf_counter()
            run(f1, k1)
            sync()
            times.append(time.perf_counter() - t0)
        out[f"{key}_{tag}"] = float(np.median(times))
  finally:
    torch.set_float32_matmul_precision(previous)
    torch.backends.cudnn.benchmark = previous_cudnn
  return out
