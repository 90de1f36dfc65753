"""Progress over LOSO folds and epochs (tqdm, with an ETA) and TensorBoard."""

import os
import sys
import time
from typing import Optional

from tqdm.auto import tqdm


class LosoProgress:
  """One bar over all clip-epochs still to train; the postfix names the folds.

  Progress is counted in training clips x epochs, so the ETA is right even
  when folds differ in size.
  """

  def __init__(self, folds, epochs: int, enabled: bool = True,
               log_every_s: Optional[float] = None):
    """`log_every_s`: instead of a bar, a plain line on stderr at most this
    often and at each group's last epoch (for logs, where a bar's redraws
    pile up): how far, how fast, which epoch of which folds."""
    self.epochs = epochs
    self.total = sum(len(f.train_idx) for f in folds) * epochs
    self.log_every_s = log_every_s if enabled else None
    self.done = 0
    self.t0 = self.last_log = time.perf_counter()
    self.bar = tqdm(total=self.total, unit="clip-epoch",
                    disable=not enabled or log_every_s is not None,
                    dynamic_ncols=True, file=sys.stderr,
                    desc=f"LOSO {len(folds)} folds x {epochs} epochs")

  def resume(self, group, start_epoch: int):
    n = sum(len(f.train_idx) for f in group) * start_epoch
    self.done += n
    self.bar.update(n)

  def _log(self, group, epoch: int):
    now = time.perf_counter()
    if self.log_every_s is None or (
        now - self.last_log < self.log_every_s and epoch < self.epochs):
      return
    self.last_log = now
    names = ",".join(f.name for f in group[:3]) + (
        "..." if len(group) > 3 else "")
    print(f"LOSO: {self.done}/{self.total} clip-epochs "
          f"({100 * self.done / max(self.total, 1):.0f}%) in "
          f"{now - self.t0:.0f} s; epoch {epoch}/{self.epochs} of "
          f"{len(group)} folds ({names})", file=sys.stderr, flush=True)

  def epoch_done(self, group, epoch: int, histories):
    n = sum(len(f.train_idx) for f in group)
    self.done += n
    self.bar.update(n)
    self._log(group, epoch)
    last = [h[-1] for h in histories if h]
    loss = sum(r["loss"] for r in last) / max(len(last), 1)
    names = ",".join(f.name for f in group[:3]) + (
        "..." if len(group) > 3 else "")
    post = {"folds": names, "epoch": f"{epoch}/{self.epochs}",
            "loss": f"{loss:.3f}"}
    # Training accuracy, not the held-out score: a live test-subject number
    # with no protocol invites choosing the epoch budget on it (the held-out
    # curves are in curves.png and TensorBoard, labelled).
    acc = sum(r["train_accuracy"] for r in last) / max(len(last), 1)
    post["train_acc"] = f"{acc:.2f}"
    self.bar.set_postfix(post, refresh=False)

  def close(self):
    self.bar.close()


class _NullWriter:
  def add_scalar(self, *args, **kwargs):
    pass

  def close(self):
    pass


# TensorBoard tags of a fold's history record keys. Each fold is a run of
# its own (<workdir>/tensorboard/<fold>), so one chart overlays the folds.
TAGS = {"loss": "train/loss", "train_accuracy": "train/accuracy",
        "lr": "train/learning_rate",
        "test_accuracy": "held_out_subject/accuracy",
        "test_uf1": "held_out_subject/uf1",
        "test_uar": "held_out_subject/uar"}


PROTOCOL_NOTE = (
    "held_out_subject/*: this fold's held-out subject scored after each "
    "epoch, one fold only. Not a LOSO score (results.md pools every fold), "
    "and choosing the epoch budget by reading these curves is selection on "
    "the test subject (the optimistic test_best protocol). The headline is "
    "the fixed budget: the last epoch.")


def summary_writer(workdir: str, fold: str, first_epoch: int,
                   held_out: bool = True):
  """TensorBoard scalars of one fold under <workdir>/tensorboard/<fold>.

  `first_epoch` is the first epoch (step) this call writes: a fold resumed
  from its checkpoint at epoch N re-runs the epochs after N, which a killed
  run may have written already, so the writer purges the fold's events
  from that step on (tensorboardX `purge_step`: TensorBoard drops the
  earlier events at or after it) and each epoch shows once. A fold with a
  `held_out` subject gets the protocol note of its held-out curves, once,
  at step 0 (before any purge step, so never purged).
  """
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:  # declared in setup.cfg; keep training if it is absent
    return _NullWriter()
  logdir = os.path.join(workdir, "tensorboard", fold)
  first = not (os.path.isdir(logdir) and any(
      "tfevents" in n for n in os.listdir(logdir)))
  # tensorboardX names an event file by the second it was opened and opens
  # it with 'wb': a resume within the same second would overwrite the
  # killed run's file. Nanoseconds keep every file, in the order TensorBoard
  # reads them (by name).
  writer = SummaryWriter(logdir, purge_step=first_epoch,
                         filename_suffix=f".{time.time_ns()}")
  if first and held_out:
    writer.add_text("protocol", PROTOCOL_NOTE, 0)
  return writer
