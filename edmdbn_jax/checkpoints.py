"""Model checkpoints the whole toolkit reads and writes (Orbax).

A *model directory* is an Orbax `CheckpointManager` directory whose steps hold
two items:
  params: the Flax variables ({'params': ...}), float32;
  meta:   JSON with the resolved config (`config`), the class names and
          free-form provenance (where the weights came from, which fold...).

`save_model` writes one, `load_model` rebuilds the model from the stored
config and returns it with its variables, so `experiments.predict`,
`experiments.gradcam` and notebooks need nothing but the directory. LOSO runs
keep a model directory per fold (`<workdir>/folds/<subject>/model`) and
`--final_model` writes `<workdir>/final_model`.
"""

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from edmdbn_jax import errors
from edmdbn_jax.models import abstract_variables
from edmdbn_jax.models import from_config


def config_to_json(config: ml_collections.ConfigDict) -> Dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def config_from_json(d: Dict[str, Any]) -> ml_collections.ConfigDict:
  def fix(node):
    if isinstance(node, dict):
      return {k: fix(v) for k, v in node.items()}
    if isinstance(node, list):
      return tuple(fix(v) for v in node)
    return node
  return ml_collections.ConfigDict(fix(d))


def save_model(directory: str, variables, config: ml_collections.ConfigDict,
               class_names: Sequence[str], step: int = 0,
               provenance: Optional[Dict[str, Any]] = None) -> str:
  """Writes `variables` with the config and class names to `directory`."""
  return save_models([directory], [variables], config, class_names, step,
                     [provenance])[0]


def save_models(directories: Sequence[str], variables: Sequence[Any],
                config: ml_collections.ConfigDict, class_names: Sequence[str],
                step: int = 0,
                provenances: Optional[Sequence[Optional[Dict[str, Any]]]] = None,
                ) -> List[str]:
  """Writes several model directories at once (a LOSO group's fold models).

  The writes run concurrently (Orbax's asynchronous saves) and are all
  committed when this returns.
  """
  provenances = provenances or [None] * len(directories)
  out, managers = [], []
  try:
    for directory, v, prov in zip(directories, variables, provenances):
      directory = os.path.abspath(os.path.expanduser(directory))
      meta = {"config": config_to_json(config),
              "class_names": list(class_names), "provenance": prov or {}}
      params = jax.tree.map(lambda a: np.asarray(a, np.float32), v)
      mgr = ocp.CheckpointManager(
          directory, options=ocp.CheckpointManagerOptions(max_to_keep=1))
      managers.append(mgr)
      if step in mgr.all_steps():
        # Rewritten (a fold retrained after a stop between its model and
        # its result.json): Orbax refuses to overwrite a step.
        mgr.delete(step)
      mgr.save(step, args=ocp.args.Composite(
          params=ocp.args.StandardSave(params),
          meta=ocp.args.JsonSave(meta)), force=True)
      out.append(directory)
  finally:
    for mgr in managers:
      mgr.wait_until_finished()
      mgr.close()
  return out


def _check_directory(directory: str) -> str:
  directory = os.path.abspath(os.path.expanduser(directory))
  if not os.path.isdir(directory):
    raise errors.CheckpointError(
        f"No model directory at {directory}. Pass a directory written by "
        "experiments.loso (<workdir>/final_model or <workdir>/folds/<subject>/"
        "model) or experiments.import_torch.")
  return directory


def _restore_meta(mgr, directory: str):
  """(step, meta) of the latest step of an open manager."""
  step = mgr.latest_step()
  if step is None:
    # The likeliest mistake: a run or fold directory instead of its model.
    models = [os.path.join(directory, "final_model"),
              os.path.join(directory, "model")]
    folds = os.path.join(directory, "folds")
    if os.path.isdir(folds):
      models += [os.path.join(folds, f, "model")
                 for f in sorted(os.listdir(folds))]
    models = [m for m in models if os.path.isdir(m)]
    hint = ""
    if models:
      hint = (" It holds model directories; pass one of these: "
              + ", ".join(models[:5]) + (" ..." if len(models) > 5 else ""))
    raise errors.CheckpointError(
        f"{directory} holds no checkpoint steps.{hint}")
  try:
    restored = mgr.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))
  except Exception as e:  # pylint: disable=broad-except
    raise errors.CheckpointError(
        f"{directory} is not a model directory of this toolkit ({e})") from e
  return step, restored["meta"]


def load_meta(directory: str) -> Dict[str, Any]:
  directory = _check_directory(directory)
  with ocp.CheckpointManager(directory) as mgr:
    return _restore_meta(mgr, directory)[1]


def load_model(directory: str, dtype: Optional[str] = None,
               ) -> Tuple[Any, Any, ml_collections.ConfigDict, Tuple[str, ...]]:
  """Returns (model, variables, config, class_names) from a model directory."""
  return load_model_and_meta(directory, dtype)[:4]


def load_model_and_meta(directory: str, dtype: Optional[str] = None):
  """`load_model`'s (model, variables, config, class_names) and the meta
  item (its provenance too), from one opening of the directory."""
  directory = _check_directory(directory)
  with ocp.CheckpointManager(directory) as mgr:
    step, meta = _restore_meta(mgr, directory)
    config = config_from_json(meta["config"])
    model = from_config(config.model, dtype=dtype)
    abstract = abstract_variables(model, config)
    try:
      restored = mgr.restore(step, args=ocp.args.Composite(
          params=ocp.args.StandardRestore(abstract)))
    except Exception as e:  # pylint: disable=broad-except
      # Orbax raises many kinds: KeyError (no params item), TensorStore's
      # NOT_FOUND ValueError (files missing), a tree mismatch ValueError
      # (parameters of another model code).
      reason = " ".join(str(e).split())
      missing = (isinstance(e, (KeyError, FileNotFoundError)) or
                 "NOT_FOUND" in reason or "not found" in reason.lower())
      advice = (
          "The directory is incomplete or damaged (e.g. a partial copy): "
          "copy the whole model directory again, or retrain the fold."
          if missing else
          "Its parameters do not fit the model its config builds: it was "
          "made by another version of the model code (or is damaged); "
          "use the toolkit version that made it (its provenance names the "
          "commit), or retrain.")
      raise errors.CheckpointError(
          f"{directory}: the parameters of step {step} cannot be read "
          f"({type(e).__name__}: {reason[:300]}"
          f"{' ...' if len(reason) > 300 else ''}). {advice}") from e
  return model, restored["params"], config, tuple(meta["class_names"]), meta
