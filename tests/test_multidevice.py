"""Data and fold parallelism over two (forced) host devices."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_devices_batch_sharded_and_fold_sharded_agree():
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu",
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  r = subprocess.run([sys.executable, "-m", "tests.multidevice_check"],
                     cwd=ROOT, env=env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  # One fold at a time: the batch of 4 is split over both devices; two
  # folds at once: one fold per device.
  assert out["meshes"] == [{"fold": 1, "data": 2}, {"fold": 2, "data": 1}]
  assert out["max_diff"] < 1e-4
