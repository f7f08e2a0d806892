"""One golden-value test: a small sweep's numbers, pinned.

Every other test checks a relation (vmapped equals alone, resumed equals uninterrupted, ...), and
a change that shifts every variant the same way passes them all. This one pins the numbers of a
small, stable sweep, so such a change is seen and has to be explained.
"""

import json
import os

import numpy as np

import lr_jax

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "small_sweep.json")
UPDATE = "LR_JAX_UPDATE_GOLDEN"
COLUMNS = ("best_epoch", "best_val_loss", "best_val_accuracy", "final_train_loss", "epochs_run",
           "steps_run")


def _sweep() -> lr_jax.SweepResult:
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="digits", train_size=120),
      model=lr_jax.ModelConfig(hidden=(16,)),
      train=lr_jax.TrainConfig(epochs=6, batch_size=32, patience=2))
  grid = lr_jax.Grid(learning_rates=(3e-4, 3e-3, 3e-2), seeds=(0, 1))
  return lr_jax.run_sweep(exp, grid, options=lr_jax.RunOptions(chunk_epochs=3))


def test_small_sweep_matches_its_golden_values():
  result = _sweep()
  got = {c: np.asarray(result.rows[c], np.float64).tolist() for c in COLUMNS}
  got["learning_rate"] = np.asarray(result.rows["learning_rate"]).tolist()
  got["seed"] = np.asarray(result.rows["seed"]).tolist()
  if os.environ.get(UPDATE):
    with open(GOLDEN, "w") as f:
      json.dump(got, f, indent=1)
      f.write("\n")
  with open(GOLDEN) as f:
    want = json.load(f)
  how = (f"the golden values of a small sweep changed. If the change is intended, regenerate "
         f"them with `{UPDATE}=1 python -m pytest tests/golden_test.py`, commit "
         f"tests/golden/small_sweep.json and say in the commit message why the numbers moved")
  assert got["learning_rate"] == want["learning_rate"] and got["seed"] == want["seed"], how
  for c in COLUMNS:
    # float32 training: 1e-5 relative allows another summation order, not another result.
    np.testing.assert_allclose(got[c], want[c], rtol=1e-5, atol=1e-6, err_msg=f"{c}: {how}")
