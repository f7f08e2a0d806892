"""The pure core and the sweep engine: equivalences, invariants and hand-computed cases."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_jax
from lr_jax.models import Model
from lr_jax.train import DataArrays, initial_params, make_trainer

SMALL = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=200),
    model=lr_jax.ModelConfig(hidden=(32,)),
    train=lr_jax.TrainConfig(epochs=4, batch_size=32, patience=0),
)


def _rows(result, **match):
  sel = np.ones(result.num_variants, bool)
  for k, v in match.items():
    sel &= np.isclose(result.rows[k], v) if isinstance(v, float) else result.rows[k] == v
  assert sel.sum() == 1, match
  return int(np.flatnonzero(sel)[0])


def _params_of(result, i):
  return jax.tree_util.tree_map(lambda a: a[i], result.params[0])


def test_vmapped_variant_equals_the_variant_trained_alone():
  lrs, seeds = (1e-4, 1e-3, 1e-2), (0, 1)
  many = lr_jax.run_sweep(SMALL, lr_jax.Grid(learning_rates=lrs, seeds=seeds))
  for lr in lrs:
    for seed in seeds:
      alone = lr_jax.run_sweep(SMALL, lr_jax.Grid(learning_rates=(lr,), seeds=(seed,)))
      i = _rows(many, learning_rate=lr, seed=seed)
      for col in ("best_val_loss", "best_val_accuracy", "final_train_loss"):
        np.testing.assert_allclose(many.rows[col][i], alone.rows[col][0], rtol=1e-5, err_msg=col)
      assert many.rows["best_epoch"][i] == alone.rows["best_epoch"][0]
      np.testing.assert_allclose(many.history["train_loss"][i], alone.history["train_loss"][0],
                                 rtol=1e-5)
      for a, b in zip(jax.tree_util.tree_leaves(_params_of(many, i)),
                      jax.tree_util.tree_leaves(_params_of(alone, 0))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adding_learning_rates_and_seeds_leaves_a_row_unchanged():
  base = lr_jax.run_sweep(SMALL, lr_jax.Grid(learning_rates=(1e-3,), seeds=(0,)))
  wider = lr_jax.run_sweep(SMALL, lr_jax.Grid(learning_rates=(3e-4, 1e-3, 3e-3, 1e-2), seeds=(0, 5, 9)))
  i = _rows(wider, learning_rate=1e-3, seed=0)
  np.testing.assert_allclose(wider.history["val_loss"][i], base.history["val_loss"][0], rtol=1e-5)


def test_full_batch_matches_a_hand_written_optax_loop():
  exp = SMALL.replace(train__batch_size=0, train__epochs=6, train__restore_best=False,
                      optim__name="adam")
  lr = 3e-3
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(lr,), seeds=(7,)))

  dataset = lr_jax.load_dataset(exp.data.__class__(dataset="digits"))
  splits = lr_jax.make_splits(dataset, exp.data)
  idx = splits.train_idx[0][splits.train_mask[0]]
  x = (dataset.x[idx] - splits.mean[0]) / splits.std[0]
  y = dataset.y[idx]
  model = lr_jax.build_model(exp.model, 10, dataset.feature_shape)
  # The documented contract: the init key of seed s is fold_in(PRNGKey(s), 0).
  params = model.init(jax.random.fold_in(jax.random.PRNGKey(7), 0))
  tx = optax.adam(lr)
  opt_state = tx.init(params)

  def loss_fn(p):
    out = model.apply(p, jnp.asarray(x), None, True)
    return optax.softmax_cross_entropy_with_integer_labels(out, jnp.asarray(y)).mean()

  losses = []
  for _ in range(6):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    losses.append(float(loss))
  np.testing.assert_allclose(result.history["train_loss"][0], losses, rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(_params_of(result, 0)), jax.tree_util.tree_leaves(params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_same_seed_same_result_other_seed_other_init_and_order():
  grid = lr_jax.Grid(learning_rates=(1e-3,), seeds=(0, 1))
  a = lr_jax.run_sweep(SMALL, grid)
  b = lr_jax.run_sweep(SMALL, grid)
  np.testing.assert_array_equal(a.history["train_loss"], b.history["train_loss"])
  assert not np.allclose(a.history["train_loss"][0], a.history["train_loss"][1])

  # Different inits: the trainer's initial parameters differ between seeds.
  dataset = lr_jax.load_dataset(SMALL.data)
  model = lr_jax.build_model(SMALL.model, 10, dataset.feature_shape)
  p0 = model.init(jax.random.fold_in(jax.random.PRNGKey(0), 0))
  p1 = model.init(jax.random.fold_in(jax.random.PRNGKey(1), 0))
  assert not np.allclose(p0["Dense_0"]["kernel"], p1["Dense_0"]["kernel"])

  # Different data orders: with an init that ignores the seed, only the order can differ.
  zero_model = Model(
      init=lambda key: {"w": jnp.zeros((64, 10), jnp.float32)},
      apply=lambda p, x, key, train: x @ p["w"])
  c = lr_jax.run_sweep(lr_jax.Experiment(data=SMALL.data, train=SMALL.train), grid,
                      model=zero_model)
  assert not np.allclose(c.history["train_loss"][0], c.history["train_loss"][1])


def _toy_regression(n_train=8, n_val=4):
  """Train rows x=1, y=1; validation rows x=1, y=0.5. Linear model w, init 0."""
  x = np.ones((n_train + n_val, 1), np.float32)
  y = np.concatenate([np.ones(n_train), np.full(n_val, 0.5)]).astype(np.float32)
  data = DataArrays(
      x=jnp.asarray(x), y=jnp.asarray(y),
      train_idx=jnp.arange(n_train, dtype=jnp.int32)[None],
      train_mask=jnp.ones((1, n_train), bool),
      val_idx=jnp.arange(n_train, n_train + n_val, dtype=jnp.int32)[None],
      val_mask=jnp.ones((1, n_val), bool),
      mean=jnp.zeros((1, 1), jnp.float32), std=jnp.ones((1, 1), jnp.float32))
  model = Model(init=lambda key: {"w": jnp.zeros((1, 1), jnp.float32)},
                apply=lambda p, x, key, train: x @ p["w"])
  return data, model


def _train_toy(train_cfg, lrs):
  data, model = _toy_regression()
  exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(name="sgd"), train=train_cfg)
  trainer = make_trainer(exp, model, task="regression", n_max=8)
  hp = {"learning_rate": jnp.asarray(lrs, jnp.float32)}
  seeds, folds = jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32)
  params = jax.tree_util.tree_map(lambda a: a[None], initial_params(model, seeds[0]))
  state = trainer.init(params, hp, folds, data)
  state, history = trainer.run(state, hp, seeds, folds, data, num_epochs=train_cfg.epochs)
  return state.variants, history


def test_early_stopping_hand_computed():
  # Full-batch SGD on MSE with lr 0.25: w <- w - 0.25 * 2 (w - 1), so w = 0.5, 0.75, 0.875, ...
  # val loss (w - 0.5)^2 = 0, 1/16, 9/64, ...: best at epoch 1, then two epochs without
  # improvement, so patience 2 stops after epoch 3 and restores w = 0.5.
  cfg = lr_jax.TrainConfig(epochs=10, batch_size=0, patience=2)
  v, history = _train_toy(cfg, [0.25])
  assert int(v.best_epoch[0, 0]) == 1
  assert int(v.epochs_run[0, 0]) == 3
  assert bool(v.stopped[0, 0]) and not bool(v.diverged[0, 0])
  np.testing.assert_allclose(v.best_params["w"][0, 0], [[0.5]], rtol=1e-6)
  np.testing.assert_allclose(v.params["w"][0, 0], [[0.875]], rtol=1e-6)
  np.testing.assert_allclose(history.val_loss[:3, 0, 0], [0.0, 1 / 16, 9 / 64], atol=1e-6)
  assert np.isnan(history.val_loss[3:, 0, 0]).all()

  # min_delta: with lr 0.1, w <- 0.8 w + 0.2 = 0.2, 0.36, 0.488, 0.5904, ...; val loss 0.09,
  # 0.0196, 0.000144, 0.00817. With min_delta 0.05 epoch 3's gain (0.0195) does not count:
  # best stays epoch 2 and patience 2 stops after epoch 4. Without min_delta, epoch 3 is best.
  cfg = lr_jax.TrainConfig(epochs=10, batch_size=0, patience=2, min_delta=0.05)
  v, _ = _train_toy(cfg, [0.1])
  assert int(v.best_epoch[0, 0]) == 2 and int(v.epochs_run[0, 0]) == 4
  v, _ = _train_toy(cfg.__class__(epochs=10, batch_size=0, patience=2), [0.1])
  assert int(v.best_epoch[0, 0]) == 3 and int(v.epochs_run[0, 0]) == 5


def test_divergence_flags_and_freezes_only_the_bad_variant():
  # lr 1.5 overshoots: w <- 3 - 2w gives w = 0, 3, -3, ...; the loss (w-1)^2 = 1, 4, 16. At
  # w = -3 it passes 10x the initial loss, so the third epoch's step is refused: frozen at -3.
  cfg = lr_jax.TrainConfig(epochs=6, batch_size=0, patience=0)
  v, history = _train_toy(cfg, [0.25, 1.5])
  assert not bool(v.diverged[0, 0]) and bool(v.diverged[0, 1])
  np.testing.assert_allclose(v.params["w"][0, 1], [[-3.0]], rtol=1e-6)
  assert int(v.epochs_run[0, 1]) == 3
  # The epoch it diverged in is not in its history: no target can be "reached" there.
  assert np.isfinite(history.val_loss[:2, 0, 1]).all() and np.isnan(history.val_loss[2:, 0, 1]).all()
  alone, _ = _train_toy(cfg, [0.25])
  np.testing.assert_array_equal(v.params["w"][0, 0], alone.params["w"][0, 0])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_huge_learning_rate_is_flagged_and_others_untouched(optimizer):
  exp = SMALL.replace(optim__name=optimizer, train__epochs=3)
  lrs = (1e-3, 1e-2)
  clean = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=lrs, seeds=(0,)))
  mixed = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=lrs + (1e3,), seeds=(0,)))
  bad = _rows(mixed, learning_rate=1e3)
  assert mixed.rows["diverged"][bad]
  assert not mixed.rows["diverged"][[_rows(mixed, learning_rate=lr) for lr in lrs]].any()
  for lr in lrs:
    i, j = _rows(mixed, learning_rate=lr), _rows(clean, learning_rate=lr)
    np.testing.assert_allclose(mixed.history["val_loss"][i], clean.history["val_loss"][j], rtol=1e-6)
  # The diverged variant is not the recommendation.
  assert mixed.best[0]["learning_rate"] != pytest.approx(1e3)


@pytest.mark.parametrize("optimizer,lr", [
    ("sgd", 0.1), ("momentum", 0.03), ("nesterov", 0.03), ("adam", 3e-3), ("adamw", 3e-3),
    ("rmsprop", 1e-3), ("adagrad", 0.1), ("lion", 3e-4), ("lamb", 1e-2)])
def test_every_optimizer_beats_chance_on_digits(optimizer, lr):
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="digits"), optim=lr_jax.OptimConfig(name=optimizer),
      train=lr_jax.TrainConfig(epochs=3))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(lr,), seeds=(0,)))
  assert result.rows["best_val_accuracy"][0] > 0.6  # chance is 0.1 on 360 examples


@pytest.mark.parametrize("schedule,expected", [
    ("constant", lambda t, total: np.ones_like(t)),
    ("exponential", lambda t, total: 0.9 ** (t / 20)),
    ("cosine", lambda t, total: 0.5 * (1 + np.cos(np.pi * np.minimum(t, total) / total))),
    ("piecewise", lambda t, total: np.where(t >= 30, 0.1, 1.0)),
])
def test_every_schedule_trains_and_follows_its_shape(schedule, expected):
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="digits"),
      optim=lr_jax.OptimConfig(name="adam", schedule=schedule, decay_steps=20, boundaries=(30,),
                               scales=(0.1,)),
      train=lr_jax.TrainConfig(epochs=3))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(3e-3,), seeds=(0,)))
  assert result.rows["best_val_accuracy"][0] > 0.6
  steps = 45  # ceil(1437 / 32) updates per epoch
  # The learning rate recorded after epoch e is the one the epoch's last update used.
  t = np.arange(1, 4) * steps - 1
  np.testing.assert_allclose(result.history["epoch_learning_rate"][0],
                             3e-3 * expected(t, 3 * steps),
                             rtol=1e-4)


@pytest.mark.parametrize("schedule", ["warmup_cosine", "onecycle"])
def test_warmup_schedules_rise_then_fall(schedule):
  exp = lr_jax.Experiment(
      optim=lr_jax.OptimConfig(name="adam", schedule=schedule, warmup_fraction=0.4),
      train=lr_jax.TrainConfig(epochs=6, patience=0))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(3e-3,), seeds=(0,)))
  lr = result.history["epoch_learning_rate"][0]
  peak = int(np.argmax(lr))
  assert 0 < peak < 5 and lr.max() <= 3e-3 * (1 + 1e-5) and lr[-1] < 0.5 * lr.max()
  assert result.rows["best_val_accuracy"][0] > 0.6


def test_decay_rate_is_a_dynamic_axis_of_one_program():
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="digits", train_size=320),
      optim=lr_jax.OptimConfig(name="sgd", schedule="exponential", decay_steps=10),
      train=lr_jax.TrainConfig(epochs=2, patience=0))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(0.1,),
                                             hparams=(("decay_rate", (1.0, 0.5)),)))
  steps = 10  # 320 examples / batch 32
  t = np.arange(1, 3) * steps - 1
  for rate in (1.0, 0.5):
    i = _rows(result, decay_rate=rate)
    np.testing.assert_allclose(result.history["epoch_learning_rate"][i], 0.1 * rate ** (t / 10),
                               rtol=1e-5)
  with pytest.raises(lr_jax.ConfigError, match="momentum"):
    lr_jax.run_sweep(exp, lr_jax.Grid(hparams=(("momentum", (0.9,)),)))


# ----- a loss and metrics of one's own ----------------------------------------------------------


def _cross_entropy(out_BxK, y_B):
  """Softmax cross-entropy written by hand, as a user would."""
  return -jnp.take_along_axis(jax.nn.log_softmax(out_BxK), y_B[:, None], axis=1)[:, 0]


def test_a_custom_loss_equal_to_cross_entropy_gives_the_builtin_results():
  grid = lr_jax.Grid(learning_rates=(1e-3, 1e-2), seeds=(0, 1))
  builtin = lr_jax.run_sweep(SMALL, grid)
  mine = lr_jax.run_sweep(SMALL, grid, loss=_cross_entropy)
  for col in ("best_val_loss", "best_val_accuracy", "final_train_loss", "best_epoch"):
    np.testing.assert_allclose(mine.rows[col], builtin.rows[col], rtol=1e-6, atol=1e-6, err_msg=col)
  np.testing.assert_allclose(mine.history["val_loss"], builtin.history["val_loss"], rtol=1e-6,
                             atol=1e-6)

  def smoothed(out_BxK, y_B):  # Label smoothing 0.2: another loss, other numbers.
    target_BxK = optax.smooth_labels(jax.nn.one_hot(y_B, out_BxK.shape[-1]), 0.2)
    return optax.softmax_cross_entropy(out_BxK, target_BxK)

  other = lr_jax.run_sweep(SMALL, grid, loss=smoothed)
  assert np.all(np.abs(other.rows["final_train_loss"] - builtin.rows["final_train_loss"]) > 1e-3)


def test_a_replaced_loss_compiles_a_new_program():
  # Equal gradients, a validation loss one higher: a program reused from the first loss would
  # give the first numbers.
  grid = lr_jax.Grid(learning_rates=(1e-2,), seeds=(0,))
  first = lr_jax.run_sweep(SMALL, grid, loss=_cross_entropy)
  shifted = lr_jax.run_sweep(SMALL, grid, loss=lambda out, y: _cross_entropy(out, y) + 1.0)
  np.testing.assert_allclose(shifted.rows["best_val_loss"], first.rows["best_val_loss"] + 1.0,
                             rtol=1e-5)
  np.testing.assert_allclose(shifted.rows["best_val_accuracy"], first.rows["best_val_accuracy"])


def _auc(out_VxK, y_V, w_V):
  """Rank-based ROC AUC of class 1 (ties count 1/2), over the rows of weight 1, in jnp."""
  s_V = out_VxK[:, 1] - out_VxK[:, 0]
  pos_V, neg_V = w_V * (y_V == 1), w_V * (y_V == 0)
  wins_VxV = (s_V[:, None] > s_V[None, :]) + 0.5 * (s_V[:, None] == s_V[None, :])
  return jnp.sum(pos_V[:, None] * neg_V[None, :] * wins_VxV) / (jnp.sum(pos_V) * jnp.sum(neg_V))


def _binary_data(n=120, n_val=60, d=5):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n + n_val, d)).astype(np.float32)
  y = (x[:, 0] + 1.5 * rng.normal(size=n + n_val) > 0).astype(np.int32)  # Noisy: AUC < 1.
  return lr_jax.Dataset.from_arrays(x[:n], y[:n], x[n:], y[n:]), x[n:], y[n:]


def test_a_metric_on_the_whole_validation_set_equals_a_hand_computation():
  dataset, x_val, y_val = _binary_data()
  exp = lr_jax.Experiment(data=lr_jax.DataConfig(dataset=dataset),
                          model=lr_jax.ModelConfig(hidden=(8,)),
                          train=lr_jax.TrainConfig(epochs=5, batch_size=16, patience=0,
                                                   monitor="val_auc"))
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-3, 3e-2), seeds=(0, 1)),
                            options=lr_jax.RunOptions(chunk_epochs=2),
                            metrics={"auc": lr_jax.Metric(_auc, higher_is_better=True)})
  assert "best_val_auc" in result.rows and result.history["val_auc"].shape == (4, 5)
  for row in range(result.num_variants):
    # The restored (best epoch's) parameters on the 60 validation rows, by hand in numpy.
    p1 = result.predict_proba(row, x_val)[:, 1]
    pos, neg = p1[y_val == 1], p1[y_val == 0]
    auc = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    np.testing.assert_allclose(result.rows["best_val_auc"][row], auc, rtol=1e-5)
    best = result.rows["best_epoch"][row]
    curve = result.history["val_auc"][row]
    assert curve[best - 1] == result.rows["best_val_auc"][row] == np.nanmax(curve)
  assert 0.5 < np.nanmax(result.rows["best_val_auc"]) < 1.0


def _train_toy_with_metric(train_cfg, metric):
  """`_train_toy` with one user metric, "mean_out": the validation rows' mean output (= w)."""
  data, model = _toy_regression()
  exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(name="sgd"), train=train_cfg)
  trainer = make_trainer(exp, model, task="regression", n_max=8,
                         metrics=(("mean_out", metric),))
  hp = {"learning_rate": jnp.asarray([0.25], jnp.float32)}
  seeds, folds = jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32)
  params = jax.tree_util.tree_map(lambda a: a[None], initial_params(model, seeds[0]))
  state = trainer.init(params, hp, folds, data)
  state, history = trainer.run(state, hp, seeds, folds, data, num_epochs=train_cfg.epochs)
  return state.variants, history


def test_early_stopping_on_a_user_metric_hand_computed():
  # lr 0.25: w = 0.5, 0.75, 0.875, 0.9375, 0.96875, ... (`test_early_stopping_hand_computed`),
  # and the metric "mean output" is w. Higher is better with min_delta 0.1: epochs 2 and 3
  # improve (by 0.25, 0.125), epochs 4 and 5 gain less than 0.1 over 0.875, so patience 2
  # stops after epoch 5 with the best at epoch 3. (On val_loss it would stop after epoch 3.)
  mean_out = lambda out, y, w: jnp.sum(out[:, 0] * w) / jnp.sum(w)
  cfg = lr_jax.TrainConfig(epochs=10, batch_size=0, patience=2, min_delta=0.1,
                           monitor="val_mean_out")
  v, history = _train_toy_with_metric(cfg, lr_jax.Metric(mean_out, higher_is_better=True))
  assert int(v.best_epoch[0, 0]) == 3 and int(v.epochs_run[0, 0]) == 5
  np.testing.assert_allclose(v.best_metrics["mean_out"][0, 0], 0.875, rtol=1e-6)
  np.testing.assert_allclose(v.best_val_loss[0, 0], (0.875 - 0.5) ** 2, rtol=1e-5)
  np.testing.assert_allclose(history.val_mean_out[:5, 0, 0], [0.5, 0.75, 0.875, 0.9375, 0.96875],
                             rtol=1e-6)
  assert np.isnan(history.val_mean_out[5:, 0, 0]).all()
  # Lower is better: epoch 1 is the best and nothing improves on it; stops after epoch 3.
  v, _ = _train_toy_with_metric(dataclasses.replace(cfg, min_delta=0.0),
                                lr_jax.Metric(mean_out, higher_is_better=False))
  assert int(v.best_epoch[0, 0]) == 1 and int(v.epochs_run[0, 0]) == 3
