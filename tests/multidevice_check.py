"""Run by tests/test_multidevice.py in a process with 2 host devices."""

import json
import sys
import tempfile

import jax
import numpy as np

jax.config.update("jax_disable_most_optimizations", True)

from edmdbn_jax import train  # pylint: disable=g-import-not-at-top
from tests.test_train import fake_clips, tiny_config  # pylint: disable=g-import-not-at-top


def main():
  assert len(jax.devices()) == 2, jax.devices()
  clips = fake_clips(n_subjects=2, per_subject=5)
  out = {}
  for fp in ("1", "2"):
    with tempfile.TemporaryDirectory() as d:
      cfg = tiny_config(fold_parallel=fp, epochs=1, warmup_epochs=0)
      mesh = train.make_mesh(int(fp), cfg.train.batch_size)
      res = train.train_and_evaluate(cfg, d, clips=clips)
      logits = []
      for s in clips.subject_list():
        with open(f"{d}/folds/{s.replace('/', '_')}/result.json") as f:
          logits.append(json.load(f)["history"][-1]["logits"])
      out[fp] = {"mesh": dict(mesh.shape), "logits": logits,
                 "uf1": res["aggregated"]["uf1"]}
  diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for a, b in zip(out["1"]["logits"], out["2"]["logits"]))
  json.dump({"meshes": [out["1"]["mesh"], out["2"]["mesh"]], "max_diff": diff},
            sys.stdout)


if __name__ == "__main__":
  main()
