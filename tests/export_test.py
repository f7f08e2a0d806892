"""A trained model out: the test split, refit, save/load, predictions, and results by row.

The sweeps are tiny (4 features, hidden 8, a few epochs): what is checked is bookkeeping --
which rows a split holds, that a saved model predicts exactly as the one in memory, that a score
is what a hand evaluation gives -- not accuracy.
"""

import csv
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import lr_jax
from lr_jax import export
from lr_jax.data import load_dataset, make_splits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("cat", "dog", "fish")


def _run(module, *args, timeout=240):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout, env=env)


def _arrays(n=150, seed=0):
  """Three separable blobs in 4 features, labelled with strings."""
  rng = np.random.default_rng(seed)
  y = np.repeat(np.arange(3), n // 3)
  x = rng.normal(size=(len(y), 4)) + 2.0 * np.eye(3, 4)[y]
  return (x * 5 + 3).astype(np.float32), np.array(NAMES)[y]  # Raw scale: standardizing matters.


def _write_csv(path, x, labels, label_column="kind"):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["a", "b", "c", "d", label_column])
    for row, label in zip(x, labels):
      w.writerow([f"{v:.6f}" for v in row] + [label])


def _one_line_error(proc):
  lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
  return lines[0]


# ----------------------------------------------------------------------------- the split


@pytest.mark.parametrize("folds", [None, 3])
def test_test_rows_are_in_no_training_or_validation_index(folds):
  x, labels = _arrays()
  ds = lr_jax.Dataset.from_arrays(x, labels)
  cfg = lr_jax.DataConfig(dataset=ds, test_fraction=0.2, folds=folds, train_size=60)
  splits = make_splits(ds, cfg)
  test = splits.test_idx
  assert len(test) == 30 and len(np.unique(test)) == 30
  assert np.bincount(ds.y[test]).tolist() == [10, 10, 10]  # Stratified.
  seen = np.union1d(splits.train_idx[splits.train_mask], splits.val_idx[splits.val_mask])
  assert np.intersect1d(test, seen).size == 0
  # Drawn first, with data_seed: the same rows whatever else is configured.
  other = make_splits(ds, lr_jax.DataConfig(dataset=ds, test_fraction=0.2, data_seed=0))
  np.testing.assert_array_equal(other.test_idx, test)
  assert make_splits(ds, lr_jax.DataConfig(dataset=ds)).test_idx.size == 0


def test_test_rows_come_from_the_training_rows_of_a_given_validation_split():
  x, labels = _arrays()
  ds = lr_jax.Dataset.from_arrays(x[:120], labels[:120], x[120:], labels[120:])
  splits = make_splits(ds, lr_jax.DataConfig(dataset=ds, test_fraction=0.25))
  np.testing.assert_array_equal(splits.val_idx[0], np.arange(120, 150))  # As given.
  assert len(splits.test_idx) == 30 and splits.test_idx.max() < 120
  assert np.intersect1d(splits.test_idx, splits.train_idx[splits.train_mask]).size == 0


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_test_fraction_outside_zero_one_is_refused(fraction):
  with pytest.raises(lr_jax.ConfigError, match=r"test_fraction must be in \(0, 1\)"):
    lr_jax.DataConfig(test_fraction=fraction)


def test_a_test_set_too_small_for_every_class_is_refused():
  x, labels = _arrays()
  ds = lr_jax.Dataset.from_arrays(x, labels)
  with pytest.raises(lr_jax.ConfigError, match="test_fraction=0.01 holds out 2 of 150"):
    make_splits(ds, lr_jax.DataConfig(dataset=ds, test_fraction=0.01))


def test_log_spaced_prints_as_given():
  assert lr_jax.log_spaced(1e-4, 1.0, 5) == (1e-4, 1e-3, 1e-2, 0.1, 1.0)
  assert str(lr_jax.log_spaced(1e-5, 1.0, 16)[-1]) == "1.0"


# ----------------------------------------------------------------------------- library


@pytest.fixture(scope="module")
def two_groups():
  """Two compile groups (adam, sgd) with a test set: rows of group 1 are not its positions."""
  x, labels = _arrays()
  ds = lr_jax.Dataset.from_arrays(x, labels, feature_names=["a", "b", "c", "d"])
  train = lr_jax.TrainConfig(epochs=4, batch_size=16, patience=0)
  data = lr_jax.DataConfig(dataset=ds, test_fraction=0.2)
  model = lr_jax.ModelConfig(hidden=(8,))
  exps = [lr_jax.Experiment(data=data, model=model, optim=lr_jax.OptimConfig(name=name),
                            train=train) for name in ("adam", "sgd")]
  result = lr_jax.run_sweep(exps, lr_jax.Grid(learning_rates=(3e-2, 1e-1), seeds=(0, 1)))
  return ds, result


def test_params_of_and_predict_by_row_reproduce_each_variants_validation_score(two_groups):
  ds, result = two_groups
  assert result.num_variants == 8 and result.rows["group"].tolist() == [0] * 4 + [1] * 4
  splits = result.groups[1].splits
  val = splits.val_idx[0][splits.val_mask[0]]
  for row in (4, 7):  # Group 1's rows: positions 0 and 3 of its params.
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(result.params_of(row)), leaves(result.params[1])):
      np.testing.assert_array_equal(a, b[row - 4])
    pred = result.predict(row, ds.x[val])  # Raw features: the fold's statistics are applied.
    assert set(pred.tolist()) <= set(NAMES)
    accuracy = np.mean(pred == np.array(NAMES)[ds.y[val]])
    # Another program than training's validation, so a count of argmaxes: exact here, as no
    # validation row's top two probabilities are within 3e-3 of each other.
    assert accuracy == pytest.approx(result.rows["best_val_accuracy"][row], abs=1e-6)
    np.testing.assert_allclose(result.predict_proba(row, ds.x[val]).sum(-1), 1.0, rtol=1e-5)
  with pytest.raises(lr_jax.ConfigError, match=r"row must be an index into result.rows, 0..7"):
    result.params_of(8)


def test_history_is_long_format_without_the_learning_rate_clash(two_groups):
  _, result = two_groups
  assert "learning_rate" not in result.history and "epoch_learning_rate" in result.history
  long = result.history_long()
  assert len(long["row"]) == int(result.rows["epochs_run"].sum()) == 8 * 4
  i = np.flatnonzero((long["row"] == 5) & (long["epoch"] == 2))[0]
  assert long["val_loss"][i] == result.history["val_loss"][5, 1]
  assert long["learning_rate"][i] == result.rows["learning_rate"][5]  # The peak, per row.
  records = result.rows_as_records()
  assert len(records) == 8 and records[5]["optimizer"] == "sgd"
  try:
    import pandas  # noqa: F401
  except ImportError:
    with pytest.raises(ImportError, match="pip install pandas"):
      result.to_pandas()
  else:
    assert result.to_pandas().shape[0] == 8


def test_refit_save_load_predict_round_trip_and_test_score(two_groups, tmp_path):
  ds, result = two_groups
  with pytest.raises(lr_jax.ConfigError, match="2 compile groups; choose"):
    export.refit(result)
  model = export.refit(result, group=1)
  best = result.best[1]
  rows = export._chosen_rows(result, 1)
  assert model.card["refit"]["epochs"] == int(np.median(result.rows["best_epoch"][rows]) + 0.5)
  assert model.card["refit"]["n"] == 120 and len(model.params) == 2  # Non-test rows; 2 seeds.
  assert model.card["selection"]["hyperparameters"]["learning_rate"] == best["learning_rate"]

  paths = export.save_model(model, str(tmp_path / "model"))
  assert sorted(os.path.basename(p) for p in paths) == ["model.json", "params.msgpack"]
  loaded = lr_jax.load_model(str(tmp_path / "model"))
  x = ds.x[:40] * 1.1  # Any raw rows.
  # The same jitted forward (one Model per configuration) on the same parameter bits: the same
  # program, bitwise by construction.
  np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
  np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
  assert loaded.predict(x).dtype.kind == "U"  # The labels as they were: strings.

  # The test score is the saved model's accuracy on the test rows, by hand.
  test = result.groups[1].splits.test_idx
  hand = np.mean(loaded.predict(ds.x[test]) == np.array(NAMES)[ds.y[test]])
  card = json.load(open(tmp_path / "model" / "model.json"))
  assert card["test"]["n"] == 30
  assert card["estimate"]["test"] == hand == model.estimate["test"]  # The same program's count.
  assert card["estimate"]["gap"] == pytest.approx(best["mean"] - hand)
  runs = [np.mean(result.predict(int(i), ds.x[test]) == np.array(NAMES)[ds.y[test]])
          for i in rows]  # The chosen point's sweep runs, on the same test rows.
  assert card["estimate"]["sweep_test"] == pytest.approx(np.mean(runs), abs=1e-12)
  assert card["estimate"]["selection_gap"] == pytest.approx(best["mean"] - np.mean(runs))
  assert card["class_names"] == list(NAMES) and card["feature_names"] == ["a", "b", "c", "d"]
  assert card["standardization"]["mean"] == model.mean.tolist()


def test_a_given_test_split_is_what_the_refit_model_is_scored_on():
  x, labels = _arrays(n=90)
  tx, tlabels = _arrays(n=30, seed=1)
  ds = lr_jax.Dataset.from_arrays(x, labels, x_test=tx, y_test=tlabels)
  exp = lr_jax.Experiment(data=lr_jax.DataConfig(dataset=ds),
                          model=lr_jax.ModelConfig(hidden=(8,)),
                          train=lr_jax.TrainConfig(epochs=3, batch_size=16, patience=0))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-3, 1e-1), seeds=(0,)))
  splits = result.groups[0].splits
  np.testing.assert_array_equal(splits.test_idx, np.arange(90, 120))
  model = export.refit(result)
  assert model.card["refit"]["n"] == 90  # Every training row, no test row.
  hand = np.mean(model.predict(tx) == tlabels)
  assert model.estimate["test_n"] == 30 and model.estimate["test"] == hand


def test_load_model_refuses_a_missing_folder_and_a_user_model_not_given(tmp_path):
  with pytest.raises(lr_jax.ConfigError, match="does not exist"):
    lr_jax.load_model(str(tmp_path / "none"))
  (tmp_path / "m").mkdir()
  (tmp_path / "m" / "model.json").write_text(json.dumps({"format": export.FORMAT}))
  with pytest.raises(lr_jax.ConfigError, match="has no params.msgpack"):
    lr_jax.load_model(str(tmp_path / "m"))
  (tmp_path / "m" / "params.msgpack").write_bytes(b"")
  (tmp_path / "m" / "model.json").write_text(json.dumps(
      {"format": export.FORMAT, "user_model": "Mine", "task": "classification",
       "class_names": [0, 1], "feature_shape": [4]}))
  with pytest.raises(lr_jax.ConfigError,
                     match=r"user model 'Mine'.*load_model\(path, model=\.\.\.\)"):
    lr_jax.load_model(str(tmp_path / "m"))


def test_a_user_model_is_saved_and_loaded_with_model_given(tmp_path):
  import flax.linen as nn

  class Mine(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(3)(nn.relu(nn.Dense(8)(x)))

  x, labels = _arrays(90)
  user = lr_jax.from_linen(Mine(), 4)
  exp = lr_jax.Experiment(data=lr_jax.DataConfig(dataset=lr_jax.Dataset.from_arrays(x, labels)),
                          train=lr_jax.TrainConfig(epochs=2, patience=0, batch_size=16))
  model = export.refit(lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(0.03,)), model=user))
  assert model.estimate["test"] is None and "no test set" in model.estimate["line"]
  export.save_model(model, str(tmp_path / "m"))
  with pytest.raises(lr_jax.ConfigError, match="user model 'Mine'"):
    lr_jax.load_model(str(tmp_path / "m"))
  loaded = lr_jax.load_model(str(tmp_path / "m"), model=user)
  # The same model and parameter bits: the same program, bitwise by construction.
  np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_save_model_into_out_is_refused():
  from types import SimpleNamespace
  from lr_jax import cli
  flags = SimpleNamespace(refit=None, test_fraction=None, save_model="runs/x/", out="runs/x")
  with pytest.raises(lr_jax.ConfigError, match="--save_model=runs/x/ is --out"):
    cli.refit_from_flags(flags)
  assert cli.refit_from_flags(SimpleNamespace(refit=None, test_fraction=0.2, save_model=None))
  assert not cli.refit_from_flags(SimpleNamespace(refit=None, test_fraction=None,
                                                  save_model=None))


# ----------------------------------------------------------------------------- scripts


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """`lr_sweep --test_fraction --save_model` on a .csv file with string labels."""
  tmp = tmp_path_factory.mktemp("export")
  x, labels = _arrays()
  data = str(tmp / "train.csv")
  _write_csv(data, x, labels)
  out, model = str(tmp / "out"), str(tmp / "model")
  proc = _run("experiments.lr_sweep", f"--dataset={data}", "--test_fraction=0.2",
              f"--save_model={model}", "--lrs=0.03,0.1", "--seeds=2", "--epochs=4",
              "--hidden=8", "--batch_size=16", "--patience=0", f"--out={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp, data, out, model, proc.stdout


def test_sweep_reports_validation_against_test_with_the_gap(saved):
  tmp, data, out, model, stdout = saved
  summary = json.load(open(os.path.join(out, "summary.json")))
  est = summary["estimate"]
  assert est["metric"] == "accuracy" and est["test_n"] == 30 and est["num_points"] == 2
  assert est["gap"] == pytest.approx(est["validation"] - est["test"])
  assert est["line"] in stdout and f"): gap {est['gap']:.4f}" in est["line"]
  assert "epoch_learning_rate" in np.load(os.path.join(out, "history.npz")).files
  # The reported test score is the saved model's accuracy on the held-out rows, by hand.
  cfg = lr_jax.DataConfig(dataset=data, test_fraction=0.2)
  ds = load_dataset(cfg)
  test = make_splits(ds, cfg).test_idx
  loaded = lr_jax.load_model(model)
  assert np.mean(loaded.predict(ds.x[test]) == np.array(NAMES)[ds.y[test]]) == est["test"]
  assert loaded.card["label_column"] == "kind"


def test_predict_script_writes_the_original_string_labels(saved):
  tmp, data, _, model, _ = saved
  preds = str(tmp / "preds.csv")
  proc = _run("experiments.predict", f"--model={model}", f"--dataset={data}", f"--out={preds}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(preds) as f:
    got = list(csv.DictReader(f))
  x, _ = _arrays()
  want = lr_jax.load_model(model).predict(np.array([[float(f"{v:.6f}") for v in r] for r in x]))
  assert [r["prediction"] for r in got] == want.tolist()
  assert list(got[0]) == ["prediction", "p_cat", "p_dog", "p_fish"]


def test_predict_script_refuses_bad_input_in_one_line_writing_nothing(saved):
  tmp, data, _, model, _ = saved
  preds = str(tmp / "never.csv")
  x, labels = _arrays()
  other = str(tmp / "other.csv")
  _write_csv(other, x, labels)
  with open(other) as f:
    text = f.read().replace("a,b,c,d,kind", "a,b,c,e,kind", 1)
  with open(other, "w") as f:
    f.write(text)
  line = _one_line_error(_run("experiments.predict", f"--model={model}", f"--dataset={other}",
                              f"--out={preds}"))
  assert "missing 'd'" in line and "unexpected 'e'" in line
  line = _one_line_error(_run("experiments.predict", f"--model={tmp / 'nope'}",
                              f"--dataset={data}", f"--out={preds}"))
  assert "does not exist" in line
  assert not os.path.exists(preds)


def test_sweep_refuses_a_test_file_with_an_unseen_class_in_one_line_writing_nothing(tmp_path):
  x, labels = _arrays(n=30)
  train, test = str(tmp_path / "train.csv"), str(tmp_path / "test.csv")
  _write_csv(train, x[labels != "fish"], labels[labels != "fish"])
  _write_csv(test, x, labels)
  out = tmp_path / "out"
  line = _one_line_error(_run("experiments.lr_sweep", f"--dataset={train}",
                              f"--test_dataset={test}", f"--out={out}", "--epochs=1"))
  assert "test.csv' hold 1 class(es) that the training data" in line and "'fish'" in line
  assert not out.exists()


@pytest.mark.parametrize("flag", ["--test_fraction=1", "--norefit --save_model=M"])
def test_sweep_refuses_bad_export_flags_in_one_line_writing_nothing(tmp_path, flag):
  out = tmp_path / "out"
  args = [a.replace("=M", f"={tmp_path / 'model'}") for a in flag.split()]
  line = _one_line_error(_run("experiments.lr_sweep", *args, f"--out={out}", "--epochs=1"))
  assert ("test_fraction must be in (0, 1)" in line) or ("drop --norefit" in line)
  assert not out.exists() and not (tmp_path / "model").exists()


def test_refit_and_predict_keep_a_user_models_own_number_at_its_chosen_value():
  import flax.linen as nn

  class Scaled(nn.Module):  # Its logits scaled by a number it declares: 0 learns nothing.
    @nn.compact
    def __call__(self, x, train: bool = False, hparams=None):
      return hparams["scale"] * nn.Dense(3)(nn.relu(nn.Dense(8)(x)))

  x, labels = _arrays(90)
  user = lr_jax.from_linen(Scaled(), 4, hparams={"scale": 1.0})
  exp = lr_jax.Experiment(data=lr_jax.DataConfig(dataset=lr_jax.Dataset.from_arrays(x, labels)),
                          train=lr_jax.TrainConfig(epochs=3, patience=0, batch_size=16))
  sweep = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(0.03,),
                                            hparams={"model.scale": (0.0, 3.0)}), model=user)
  model = export.refit(sweep)
  assert model.card["selection"]["hyperparameters"]["scale"] == 3.0  # The scale that learns is chosen.
  # Predictions use the chosen scale, not the declared default (1.0).
  z = (x.astype(np.float32) - model.mean) / model.std
  expected = np.mean([_softmax(user.apply(p, z, None, False, {"scale": np.float32(3.0)}))
                      for p in model.params], axis=0)
  np.testing.assert_allclose(model.predict_proba(x), expected, rtol=1e-5, atol=1e-6)


def _softmax(logits):
  logits = np.asarray(logits, np.float64)
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)
