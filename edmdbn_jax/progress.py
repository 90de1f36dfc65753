"""Progress over LOSO folds and epochs (tqdm, with an ETA) and TensorBoard."""

import os
import sys

from tqdm.auto import tqdm


class LosoProgress:
  """One bar over all clip-epochs still to train; the postfix names the folds.

  Progress is counted in training clips x epochs, so the ETA is right even
  when folds differ in size.
  """

  def __init__(self, folds, epochs: int, enabled: bool = True):
    self.epochs = epochs
    self.total = sum(len(f.train_idx) for f in folds) * epochs
    self.bar = tqdm(total=self.total, unit="clip-epoch", disable=not enabled,
                    dynamic_ncols=True, file=sys.stderr,
                    desc=f"LOSO {len(folds)} folds x {epochs} epochs")

  def resume(self, group, start_epoch: int):
    self.bar.update(sum(len(f.train_idx) for f in group) * start_epoch)

  def epoch_done(self, group, epoch: int, histories):
    self.bar.update(sum(len(f.train_idx) for f in group))
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


def summary_writer(workdir: str):
  """TensorBoard scalars under <workdir>/tensorboard (tensorboardX)."""
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  except ImportError:  # declared in setup.cfg; keep training if it is absent
    return _NullWriter()
  return SummaryWriter(os.path.join(workdir, "tensorboard"))
