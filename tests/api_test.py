"""The public API end to end: models, tasks, folds, aggregation and output files."""

import csv
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import lr_jax
from lr_jax import results

TINY = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=300),
    model=lr_jax.ModelConfig(hidden=(32,)),
    train=lr_jax.TrainConfig(epochs=3, patience=0))


def test_mean_and_confidence_interval_by_hand():
  mean, std, ci = results.mean_ci(np.array([0.90, 0.92, 0.97]))
  assert mean == pytest.approx(0.93)
  assert std == pytest.approx(math.sqrt(((0.03) ** 2 + 0.01 ** 2 + 0.04 ** 2) / 2))
  assert ci == pytest.approx(4.303 * std / math.sqrt(3), rel=1e-4)  # t(0.975, df=2) = 4.3027
  one = results.mean_ci(np.array([0.5, np.nan]))  # one value: no spread, no interval
  assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])


def test_first_reaching_target():
  curve = np.array([[0.1, 0.5, 0.9, np.nan], [0.1, 0.2, 0.3, 0.4], [0.95, 0.2, 0.3, 0.4]])
  np.testing.assert_array_equal(results.first_reaching(curve, 0.9, True), [3, 0, 1])
  np.testing.assert_array_equal(results.first_reaching(curve, 0.15, False), [1, 1, 0])


def test_aggregates_one_entry_per_point_when_groups_have_different_hyperparameters():
  # sgd has no momentum, so its rows hold NaN there; each of its points is still one entry.
  sgd, momentum = TINY, TINY.replace(optim__name="momentum")
  result = lr_jax.run_sweep([sgd, momentum], lr_jax.Grid(learning_rates=(1e-2, 1e-1), seeds=(0, 1)))
  for gi in (0, 1):
    entries = [a for a in result.aggregates if a["group"] == gi]
    assert [a["learning_rate"] for a in entries] == [1e-2, 1e-1]
    assert [a["n"] for a in entries] == [2, 2]
  assert all(math.isnan(a["momentum"]) for a in result.aggregates if a["group"] == 0)
  assert all(a["momentum"] == 0.9 for a in result.aggregates if a["group"] == 1)


def test_user_linen_module_trains():

  class Tiny(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(10)(nn.tanh(nn.Dense(24)(x)))

  model = lr_jax.from_linen(Tiny(), 64)
  exp = lr_jax.Experiment(data=TINY.data, train=TINY.train)  # ModelConfig's defaults: unused.
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(3e-3,)), model=model)
  assert result.rows["best_val_accuracy"][0] > 0.6
  assert result.params[0]["Dense_1"]["kernel"].shape == (1, 64, 24)  # Dense_0 was built first


def test_user_nnx_module_trains_and_seeds_change_its_init():

  class Tiny(nnx.Module):

    def __init__(self, rngs):
      self.hidden = nnx.Linear(64, 24, rngs=rngs)
      self.out = nnx.Linear(24, 10, rngs=rngs)

    def __call__(self, x):
      return self.out(nnx.tanh(self.hidden(x)))

  model = lr_jax.from_nnx(lambda rngs: Tiny(rngs))
  p0, p1 = model.init(jax.random.PRNGKey(0)), model.init(jax.random.PRNGKey(1))
  assert not np.allclose(p0["hidden"]["kernel"][...], p1["hidden"]["kernel"][...])
  exp = lr_jax.Experiment(data=TINY.data, train=TINY.train)  # ModelConfig's defaults: unused.
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(3e-3,), seeds=(0, 1)), model=model)
  assert (result.rows["best_val_accuracy"] > 0.6).all()


def test_nnx_dropout_trains_reproducibly_and_is_off_in_validation():

  class Net(nnx.Module):

    def __init__(self, rngs, rate=0.5):
      self.hidden = nnx.Linear(64, 32, rngs=rngs)
      self.drop = nnx.Dropout(rate, rngs=rngs)
      self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
      return self.out(self.drop(nnx.relu(self.hidden(x))))

  exp = lr_jax.Experiment(data=lr_jax.DataConfig(dataset="digits", train_size=150),
                          train=TINY.train)  # ModelConfig at its defaults: a user model.
  # 1e-9 leaves the weights where they started: validation sees the initial network.
  grid = lr_jax.Grid(learning_rates=(1e-9, 1e-2), seeds=(0, 1))
  model = lr_jax.from_nnx(Net)
  drop, again = (lr_jax.run_sweep(exp, grid, model=model) for _ in range(2))
  plain = lr_jax.run_sweep(exp, grid, model=lr_jax.from_nnx(lambda rngs: Net(rngs, rate=0.0)))
  for name in ("train_loss", "val_loss"):  # The same seeds, the same masks.
    # Same program run twice: bitwise by construction.
    np.testing.assert_array_equal(drop.history[name], again.history[name], err_msg=name)
  rows = {(lr, seed): i for i, (lr, seed) in
          enumerate(zip(drop.rows["learning_rate"], drop.rows["seed"]))}
  frozen = [rows[1e-9, 0], rows[1e-9, 1]]
  # Training drops units (another loss than without dropout, another per seed)...
  assert not np.allclose(drop.history["train_loss"][frozen], plain.history["train_loss"][frozen])
  assert drop.history["train_loss"][frozen[0], 0] != drop.history["train_loss"][frozen[1], 0]
  # ... validation does not: the same numbers every epoch, those of the net without dropout.
  val = drop.history["val_loss"][frozen]
  np.testing.assert_allclose(val, val[:, :1] * np.ones_like(val), rtol=1e-6)
  np.testing.assert_allclose(val, plain.history["val_loss"][frozen], rtol=1e-6)
  assert (drop.rows["best_val_accuracy"][[rows[1e-2, 0], rows[1e-2, 1]]] > 0.6).all()


def test_cnn_on_image_shaped_digits():
  exp = TINY.replace(model__name="cnn", model__hidden=(8,))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(3e-3,)))
  assert result.rows["best_val_accuracy"][0] > 0.6
  with pytest.raises(lr_jax.ConfigError, match="cnn"):
    lr_jax.plan_sweep(exp.replace(data__dataset="iris", data__train_size=None), lr_jax.Grid())


def test_dropout_is_seeded_and_changes_training():
  grid = lr_jax.Grid(learning_rates=(3e-3,))
  plain = lr_jax.run_sweep(TINY, grid)
  drop = lr_jax.run_sweep(TINY.replace(model__dropout=0.5), grid)
  again = lr_jax.run_sweep(TINY.replace(model__dropout=0.5), grid)
  assert not np.allclose(plain.history["train_loss"], drop.history["train_loss"])
  # Same program run twice: bitwise by construction.
  np.testing.assert_array_equal(drop.history["train_loss"], again.history["train_loss"])
  # Dropout is off at validation: the validation loss is a deterministic function of params.
  assert drop.rows["best_val_accuracy"][0] > 0.6


def test_regression_task_learns_a_linear_target():
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="linear", num_samples=400),
      model=lr_jax.ModelConfig(name="linear"),
      train=lr_jax.TrainConfig(epochs=20, patience=0))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-2, 3e-2)),
                          options=lr_jax.RunOptions(chunk_epochs=0), score="best_epoch")
  loss = result.history["val_loss"]
  assert (loss[:, -1] < 0.5 * loss[:, 0]).all()
  assert np.isnan(result.rows["best_val_accuracy"]).all()
  assert result.aggregates[0]["metric"] == "val_loss"
  assert result.best[0]["learning_rate"] == pytest.approx(3e-2)  # the faster one, lower loss
  with pytest.raises(lr_jax.ConfigError, match="val_accuracy"):
    lr_jax.plan_sweep(exp.replace(train__monitor="val_accuracy"), lr_jax.Grid())


def test_folds_seeds_and_aggregates():
  exp = TINY.replace(data__train_size=90, data__folds=3)
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-3, 1e-2), seeds=(0, 1)))
  assert result.num_variants == 2 * 2 * 3
  assert sorted(set(result.rows["fold"])) == [0, 1, 2]
  np.testing.assert_array_equal(result.rows["train_size"], 60)
  for agg in result.aggregates:
    sel = np.isclose(result.rows["learning_rate"], agg["learning_rate"])
    values = result.rows["best_val_accuracy"][sel]
    assert agg["n"] == 6
    assert agg["mean"] == pytest.approx(values.mean())
    assert agg["std"] == pytest.approx(values.std(ddof=1))
  # Folds of one seed validate on different rows: their results differ.
  sel = np.isclose(result.rows["learning_rate"], 1e-2) & (result.rows["seed"] == 0)
  assert len(set(np.round(result.rows["best_val_loss"][sel], 6))) == 3


def test_sweep_exits_once_every_variant_stopped():
  exp = TINY.replace(train__epochs=200, train__patience=1)
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-2, 3e-2)),
                          options=lr_jax.RunOptions(chunk_epochs=5))
  ran = result.rows["epochs_run"].max()
  assert result.rows["stopped_early"].all() and ran < 200
  # The host loop stops at the first chunk boundary after the last variant stopped.
  assert result.timings[0]["epochs_executed"] == ran
  assert result.timings[0]["epochs_executed"] <= 5 * math.ceil(ran / 5)


def test_output_files(tmp_path):
  result = lr_jax.run_sweep(TINY, lr_jax.Grid(learning_rates=(1e-3, 1e-2), seeds=(0, 1)), target=0.5)
  paths = lr_jax.write_outputs(result, str(tmp_path))
  with open(paths[0]) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == 4
  for col in ("learning_rate", "seed", "fold", "best_epoch", "best_val_loss", "best_val_accuracy",
              "final_train_loss", "epochs_run", "diverged", "epochs_to_target", "steps_to_target"):
    assert col in rows[0]
  assert {float(r["learning_rate"]) for r in rows} == {1e-3, 1e-2}
  hist = np.load(paths[1])
  assert hist["val_loss"].shape == (4, 3)
  np.testing.assert_allclose(hist["variant_learning_rate"], result.rows["learning_rate"])
  summary = json.load(open(paths[2]))
  assert summary["best"][0]["learning_rate"] in (1e-3, 1e-2)
  assert summary["config"]["experiments"][0]["optim"]["name"] == "adam"
  assert len(summary["aggregates"]) == 2
  reached = [int(r["epochs_to_target"]) for r in rows]
  steps = [int(r["steps_to_target"]) for r in rows]
  assert all(s == e * 10 for s, e in zip(steps, reached))  # ceil(300 / 32) steps per epoch
  assert max(reached) > 0
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_sweep_on_arrays_with_minus_one_plus_one_labels_and_a_given_split(tmp_path):
  # The validation rows are labelled against the training rule: a sweep that validated on any
  # training rows (a re-split) would score far above 0 on them.
  x = np.random.default_rng(0).normal(size=(200, 4))
  rule = np.where(x[:, 0] - x[:, 1] > 0, 1, -1)
  ds = lr_jax.Dataset.from_arrays(x[:150], rule[:150], x[150:], -rule[150:], name="flipped")
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset=ds, train_size=100),
      model=lr_jax.ModelConfig(name="linear"),
      train=lr_jax.TrainConfig(epochs=15, batch_size=0, patience=0))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(0.1, 0.3), seeds=(0, 1)),
                          options=lr_jax.RunOptions(chunk_epochs=0))
  final_val_accuracy = result.history["val_accuracy"][:, -1]
  assert final_val_accuracy.shape == (4,) and np.all(final_val_accuracy < 0.25)
  assert np.all(result.history["train_loss"][:, -1] < result.history["train_loss"][:, 0])
  paths = lr_jax.write_outputs(result, str(tmp_path))
  summary = json.load(open(paths[2]))
  assert summary["config"]["experiments"][0]["data"]["dataset"] == "flipped"
  assert "flipped" in lr_jax.format_table(result)


def _balanced_accuracy(out_VxK, y_V, w_V):
  """Mean recall over the classes present in the validation rows of weight 1."""
  hit_V = (jnp.argmax(out_VxK, -1) == y_V) * w_V
  onehot_VxK = jax.nn.one_hot(y_V, out_VxK.shape[-1]) * w_V[:, None]
  count_K = jnp.sum(onehot_VxK, 0)
  recall_K = jnp.sum(onehot_VxK * hit_V[:, None], 0) / jnp.maximum(count_K, 1.0)
  return jnp.sum(recall_K) / jnp.sum(count_K > 0)


def test_user_metric_in_rows_history_table_summary_and_selection(tmp_path):
  exp = TINY.replace(train__monitor="val_bacc", train__patience=1)
  result = lr_jax.run_sweep(
      exp, lr_jax.Grid(learning_rates=(1e-3, 3e-2), seeds=(0, 1)),
      metrics={"bacc": lr_jax.Metric(_balanced_accuracy, higher_is_better=True)},
      select_by="val_bacc")
  bacc = result.rows["best_val_bacc"]
  assert np.all((bacc > 0) & (bacc <= 1)) and result.history["val_bacc"].shape == (4, 3)
  # The default score cross-fits a user metric too: the mean of its two halves' values.
  cross = result.rows["crossfit_val_bacc"]
  assert np.all((cross >= 0) & (cross <= 1))
  means = {lr: cross[result.rows["learning_rate"] == lr].mean() for lr in (1e-3, 3e-2)}
  assert result.best[0]["learning_rate"] == max(means, key=means.get)
  assert result.best[0]["mean"] == pytest.approx(max(means.values()), rel=1e-6)
  assert "score: val_bacc cross-fitted" in lr_jax.format_table(result)
  lr_jax.write_outputs(result, str(tmp_path))
  with open(tmp_path / "results.csv") as f:
    assert "best_val_bacc" in next(csv.reader(f))
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["best"][0]["metric"] == "val_bacc" and summary["config"]["select_by"] == "val_bacc"


@pytest.mark.parametrize("kwargs, train, needle", [
    ({}, {"monitor": "val_auc"}, "monitor 'val_auc' is not a metric of this sweep; valid "
     "choices: val_loss, val_accuracy"),
    ({"metrics": {"bacc": lr_jax.Metric(_balanced_accuracy)}}, {"monitor": "val_f1"},
     "valid choices: val_loss, val_accuracy, val_bacc"),
    ({"select_by": "val_auc"}, {}, "select_by 'val_auc' is not a metric of this sweep"),
    ({"metrics": {"bacc": _balanced_accuracy}}, {}, "must be lr_jax.Metric(fn, higher_is_better"),
    ({"metrics": {"loss": lr_jax.Metric(_balanced_accuracy)}}, {}, "metric name 'loss'"),
    ({"loss": "focal"}, {}, "loss must be a function"),
    ({"loss": lambda out, y: jnp.sum(out, axis=1, keepdims=True)}, {},
     "the loss must return one value per example"),
    ({"metrics": {"recall": lr_jax.Metric(lambda out, y, w: out[:, 0])}}, {},
     "metric 'recall' must return a scalar"),
])
def test_unknown_monitor_select_by_or_bad_metric_is_one_line(kwargs, train, needle):
  exp = TINY.replace(**{f"train__{k}": v for k, v in train.items()})
  with pytest.raises(lr_jax.ConfigError) as e:
    lr_jax.run_sweep(exp, lr_jax.Grid(), **kwargs)
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_monitor_outside_val_names_is_refused_by_the_config():
  with pytest.raises(lr_jax.ConfigError, match="unknown monitor 'auc'; valid choices: val_loss"):
    lr_jax.TrainConfig(monitor="auc")
  with pytest.raises(lr_jax.ConfigError, match="select_by 'val_accuracy' is not a metric of"):
    lr_jax.run_sweep(lr_jax.Experiment(data=lr_jax.DataConfig(dataset="linear", num_samples=100),
                                       train=lr_jax.TrainConfig(epochs=1)),
                     lr_jax.Grid(), select_by="val_accuracy")


def test_refit_trains_with_the_sweeps_loss_and_metrics(monkeypatch):
  # The refit's TrainConfig monitors the user metric, so it needs the metrics (else it fails),
  # and it must train with the sweep's loss, not silently with cross-entropy.
  from lr_jax import engine
  exp = TINY.replace(train__monitor="val_bacc")
  metrics = {"bacc": lr_jax.Metric(_balanced_accuracy, higher_is_better=True)}

  def smoothed(out_BxK, y_B):
    target_BxK = optax.smooth_labels(jax.nn.one_hot(y_B, out_BxK.shape[-1]), 0.1)
    return optax.softmax_cross_entropy(out_BxK, target_BxK)

  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-2,)), loss=smoothed,
                            metrics=metrics)
  seen = []
  run_sweep = engine.run_sweep
  monkeypatch.setattr(engine, "run_sweep",
                      lambda *a, **kw: seen.append(kw) or run_sweep(*a, **kw))
  model = lr_jax.refit(result)
  assert seen[0]["loss"] is smoothed and seen[0]["metrics"] == metrics
  assert model.predict(np.zeros((2, 64), np.float32)).shape == (2,)


def test_a_checkpoint_resumes_with_its_metrics_and_refuses_another_loss(tmp_path):
  from lr_jax import engine
  exp = TINY.replace(train__epochs=2)
  grid = lr_jax.Grid(learning_rates=(1e-2,))
  metrics = {"bacc": lr_jax.Metric(_balanced_accuracy, higher_is_better=True)}
  ckdir = str(tmp_path / "ck")
  first = lr_jax.run_sweep(exp, grid, metrics=metrics,
                           options=engine.RunOptions(checkpoint_dir=ckdir, checkpoint_every=1,
                                                      chunk_epochs=1))
  resume = engine.RunOptions(checkpoint_dir=ckdir, resume=True)
  again = lr_jax.run_sweep(exp, grid, metrics=metrics, options=resume)  # from the checkpoint
  # The finished checkpoint is read back, nothing is recomputed: bitwise by construction.
  np.testing.assert_array_equal(again.rows["best_val_bacc"], first.rows["best_val_bacc"])
  np.testing.assert_array_equal(again.history["val_bacc"], first.history["val_bacc"])
  with pytest.raises(lr_jax.ConfigError, match=r"different configuration: objective\.loss "
                     r"\(checkpoint null, now \"(tests\.)?api_test\._cross_entropy\"\)"):
    lr_jax.run_sweep(exp, grid, metrics=metrics, loss=_cross_entropy, options=resume)


def _cross_entropy(out_BxK, y_B):
  return optax.softmax_cross_entropy_with_integer_labels(out_BxK, y_B)
