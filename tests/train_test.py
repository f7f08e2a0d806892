"""The pure core and the sweep engine: equivalences, invariants and hand-computed cases."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_jax
from lr_jax.models import Model
from lr_jax.train import Budget, DataArrays, initial_params, make_trainer

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
      # Two programs (6 lanes vs 1), so an integer outcome of their floats: exact here because
      # no epoch's val loss comes within 0.5% of the best before it (they differ by ~1e-7).
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
  # Same program: bitwise by construction (determinism).
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


def _train_toy(train_cfg, lrs, **trainer_args):
  """SGD on `_toy_regression` at these learning rates; `trainer_args` to `make_trainer`."""
  data, model = _toy_regression()
  exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(name="sgd"), train=train_cfg)
  trainer = make_trainer(exp, model, task="regression", n_max=8, **trainer_args)
  hp = _tree({"learning_rate": lrs})
  seeds, folds = jnp.zeros(1, jnp.int32), jnp.zeros(1, jnp.int32)
  params = jax.tree_util.tree_map(lambda a: a[None], initial_params(model, seeds[0]))
  state = trainer.init(params, hp, folds, data)
  state, history = trainer.run(state, _per_stream(hp), seeds, folds, data, Budget.of(train_cfg),
                               num_epochs=train_cfg.epochs)
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
  # Two programs (2 lanes vs 1): equal to float32 rounding, not bit for bit.
  np.testing.assert_allclose(v.params["w"][0, 0], alone.params["w"][0, 0], rtol=1e-5, atol=1e-6)


def test_a_non_finite_gradient_under_a_finite_loss_diverges_at_the_next_step():
  # sqrt(|w x|) at w = 0: the loss is 0, its gradient infinite. It is not checked itself
  # (a norm read every step costs ~15% of a small MLP's step): the first update applies it, and
  # the next loss, non-finite, flags the variant and freezes it there.
  cfg = lr_jax.TrainConfig(epochs=3, batch_size=0, patience=0)
  v, history = _train_toy(cfg, [0.1], loss=lambda out, y: jnp.sqrt(jnp.abs(out[:, 0])))
  assert bool(v.diverged[0, 0]) and int(v.steps_run[0, 0]) == 1
  assert not np.isfinite(np.asarray(v.params["w"][0, 0])).any()
  assert int(v.epochs_run[0, 0]) == 2  # It diverged in its second epoch's step.
  # Its first epoch validated the non-finite parameters: no score, nothing "reached" there.
  assert not np.isfinite(history.val_loss[:, 0, 0]).any() and not np.isfinite(v.best_score[0, 0])


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


# Minibatch training to a useful model, for one plain and one adaptive family. That each family
# takes optax's own step through the engine is optim_test's one-step test, a cheaper program per
# family; the minibatch loop around the step is the same code for every family.
@pytest.mark.parametrize("optimizer,lr", [("sgd", 0.1), ("adam", 3e-3)])
def test_plain_and_adaptive_optimizers_beat_chance_on_digits(optimizer, lr):
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
    # One number recorded twice by one program: bitwise by construction.
    assert curve[best - 1] == result.rows["best_val_auc"][row] == np.nanmax(curve)
  assert 0.5 < np.nanmax(result.rows["best_val_auc"]) < 1.0


def _train_toy_with_metric(train_cfg, metric):
  """`_train_toy` with one user metric, "mean_out": the validation rows' mean output (= w)."""
  return _train_toy(train_cfg, [0.25], metrics=(("mean_out", metric),))


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


# ----- every number an axis: regularisation, augmentation, reduce-on-plateau (issue 11) ---------

from lr_jax import train as train_lib  # noqa: E402

AXES_EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=100),
    model=lr_jax.ModelConfig(hidden=(8,)), optim=lr_jax.OptimConfig(name="sgd"),
    train=lr_jax.TrainConfig(epochs=3, batch_size=32, patience=0))


def _tree(points):
  """Points by short name as the namespaced tree the core reads (`hparams.nest`)."""
  return lr_jax.hparams.nest({k: jnp.asarray(v, jnp.float32) for k, v in points.items()},
                             lr_jax.hparams.catalog())


def _per_stream(hp):
  """One stream's points as `Trainer.run` takes them: leaves [S=1, H]."""
  return jax.tree_util.tree_map(lambda a: a[None], hp)


def _digits_arrays(exp):
  dataset = lr_jax.load_dataset(exp.data)
  splits = lr_jax.make_splits(dataset, exp.data)
  data = jax.tree_util.tree_map(jnp.asarray, DataArrays.of(dataset, splits, slice(0, 1)))
  return dataset, data


@functools.lru_cache(maxsize=None)
def _stream_programs(exp):
  """One stream's data and the jitted init and run of `exp`: the tests of one experiment share
  them, so a population of the same width and axes compiles once per module, not per test."""
  dataset, data = _digits_arrays(exp)
  model = lr_jax.build_model(exp.model, 10, dataset.feature_shape)
  trainer = make_trainer(exp, model, task="classification", n_max=int(data.train_idx.shape[1]),
                         feature_shape=dataset.feature_shape)
  return model, data, jax.jit(trainer.init), jax.jit(trainer.run, static_argnames="num_epochs")


def _train_points(points, exp=AXES_EXP, seed=0):
  """Trains the points of one stream (digits, fold 0) through `make_trainer` directly."""
  model, data, init, run = _stream_programs(exp)
  hp = _tree(points)
  seeds, folds = jnp.full(1, seed, jnp.int32), jnp.zeros(1, jnp.int32)
  params = jax.tree_util.tree_map(lambda a: a[None], initial_params(model, seeds[0]))
  state = init(params, hp, folds, data)
  state, history = run(state, _per_stream(hp), seeds, folds, data, Budget.of(exp.train),
                       num_epochs=exp.train.epochs)
  return jax.device_get(state.variants), jax.device_get(history)


def test_the_divergence_reference_is_the_mean_training_loss_at_init():
  # Computed one minibatch at a time (a partial last one here), it is the mean cross-entropy
  # over every training row at the initial parameters, by hand.
  model, data, init, _ = _stream_programs(AXES_EXP)
  assert data.train_idx.shape[1] % AXES_EXP.train.batch_size != 0
  params = initial_params(model, jnp.int32(0))
  state = jax.device_get(init(jax.tree_util.tree_map(lambda a: a[None], params),
                              _tree({"learning_rate": (0.05,)}), jnp.zeros(1, jnp.int32), data))
  idx = np.asarray(data.train_idx[0])[np.asarray(data.train_mask[0])]
  x = (data.x[idx] - data.mean[0][None, :]) / data.std[0][None, :]
  logits = model.apply(params, x, None, False)
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, data.y[idx]).mean()
  np.testing.assert_allclose(state.variants.init_loss[0, 0], expected, rtol=1e-6)


# Every per-variant axis of the regularisers and augmentations, at a value where it acts.
AXES = {"dropout_rate": 0.4, "label_smoothing": 0.2, "input_noise": 0.5, "shift": 2.0,
        "label_noise": 0.3, "flip": 0.5, "rotate": 15.0, "crop": 0.3}


def _one_axis_each(learning_rate, values):
  """Points that trace every axis of `AXES`: the first with all at 0, then one per axis at its
  value in `values` and the others at 0 (one program for all of them)."""
  points = {"learning_rate": [learning_rate] * (1 + len(AXES))}
  for i, name in enumerate(AXES):
    points[name] = [0.0] * (1 + len(AXES))
    points[name][1 + i] = values[name]
  return points


def test_each_new_axis_in_a_mixed_population_equals_the_variant_alone():
  points = _one_axis_each(0.05, AXES)
  mixed, hist = _train_points(points)
  for j, name in enumerate(["none", *AXES]):
    if j:
      assert not np.allclose(hist.train_loss[:, 0, 0], hist.train_loss[:, 0, j]), \
          f"{name} acts"
    alone, alone_hist = _train_points({k: [v[j]] for k, v in points.items()})
    for field in ("train_loss", "val_loss", "val_accuracy"):
      np.testing.assert_allclose(getattr(hist, field)[:, 0, j], getattr(alone_hist, field)[:, 0, 0],
                                 rtol=1e-5, err_msg=f"{name} {field}")
    for a, b in zip(jax.tree_util.tree_leaves(mixed.params),
                    jax.tree_util.tree_leaves(alone.params)):
      np.testing.assert_allclose(a[0, j], b[0, 0], rtol=1e-5, atol=1e-6, err_msg=name)


def test_dropout_rate_zero_trains_as_no_dropout():
  _, with_zero = _train_points({"learning_rate": [0.05], "dropout_rate": [0.0]})
  _, without = _train_points({"learning_rate": [0.05]})
  # Rate 0 keeps every unit and divides by 1.0, exactly; but these are two programs (a traced
  # rate vs no dropout code), which XLA fuses and sums differently (per CPU SIMD width too):
  # equal to float32 rounding, not bit for bit (4.8e-7 apart on an AVX-512 CPU).
  for field in ("train_loss", "val_loss"):
    np.testing.assert_allclose(getattr(with_zero, field), getattr(without, field), rtol=1e-5,
                               atol=1e-6, err_msg=field)


def test_regularisers_and_augmentation_act_in_training_only():
  # A learning rate too small to move the parameters: the validation numbers are those of the
  # initial model, with or without the axis; the training loss is not. (The points of the test
  # above at other values: the same program.)
  values = {"label_smoothing": 0.3, "input_noise": 2.0, "shift": 3.0, "label_noise": 0.5,
            "dropout_rate": 0.5, "flip": 1.0, "rotate": 30.0, "crop": 0.4}
  _, hist = _train_points(_one_axis_each(1e-9, values))
  for j, name in enumerate(AXES, start=1):
    np.testing.assert_allclose(hist.val_loss[:, 0, 0], hist.val_loss[:, 0, j], rtol=1e-5,
                               err_msg=name)
    # A count, exact: one program, parameters that moved < 1e-8, and no validation row within
    # 2e-4 of a tie between its two top logits.
    np.testing.assert_array_equal(hist.val_accuracy[:, 0, 0], hist.val_accuracy[:, 0, j],
                                  err_msg=name)
    assert (np.abs(hist.train_loss[:, 0, j] - hist.train_loss[:, 0, 0]) > 1e-3).all(), name


def _rules_and_batch():
  dataset, data = _digits_arrays(AXES_EXP)
  model = lr_jax.build_model(AXES_EXP.model, 10, dataset.feature_shape)
  trainer = make_trainer(AXES_EXP, model, task="classification", n_max=100,
                         feature_shape=dataset.feature_shape)
  params = initial_params(model, 0)
  idx_B = data.train_idx[0, :32]
  x_BxD, y_B = train_lib.fetch(data, 0, idx_B)
  return trainer.rules, model, params, x_BxD, y_B


def test_label_smoothing_is_optax_smooth_labels_with_cross_entropy():
  rules, model, params, x_BxD, y_B = _rules_and_batch()
  key = jax.random.PRNGKey(3)
  out = model.apply(params, x_BxD, key, True)
  plain, _ = train_lib.training_losses(rules, params, _tree({"learning_rate": 0.1}), x_BxD, y_B,
                                       key, None)
  zero, _ = train_lib.training_losses(rules, params, _tree({"label_smoothing": 0.0}), x_BxD,
                                      y_B, key, None)
  np.testing.assert_allclose(zero, optax.softmax_cross_entropy_with_integer_labels(out, y_B),
                             rtol=1e-6)
  np.testing.assert_allclose(zero, plain, rtol=1e-6)
  smooth, _ = train_lib.training_losses(rules, params, _tree({"label_smoothing": 0.2}),
                                        x_BxD, y_B, key, None)
  by_hand = optax.softmax_cross_entropy(out, optax.smooth_labels(jax.nn.one_hot(y_B, 10), 0.2))
  np.testing.assert_allclose(smooth, by_hand, rtol=1e-6)
  assert (np.asarray(smooth) > np.asarray(zero)).mean() > 0.5  # Confident outputs pay more.


def test_rotations_turn_images_about_their_centre_and_fill_the_corners():
  rng = np.random.default_rng(0)
  img_BxHxWxC = rng.normal(size=(3, 6, 6, 2)).astype(np.float32)
  x_BxD = jnp.asarray(img_BxHxWxC.reshape(3, -1))
  rot = lambda angles, fill=None: np.asarray(train_lib.rotate_by(
      x_BxD, (6, 6, 2), jnp.asarray(angles, jnp.float32), fill)).reshape(3, 6, 6, 2)
  # 0 is the image itself; a quarter turn counter-clockwise (as displayed) is np.rot90, a half
  # turn np.rot90 twice: whole pixels, so interpolation adds nothing but rounding.
  np.testing.assert_allclose(rot([0.0] * 3), img_BxHxWxC, atol=1e-6)
  np.testing.assert_allclose(rot([np.pi / 2] * 3), np.rot90(img_BxHxWxC, 1, axes=(1, 2)),
                             atol=1e-5)
  np.testing.assert_allclose(rot([np.pi, -np.pi / 2, np.pi / 2])[0],
                             np.rot90(img_BxHxWxC[0], 2), atol=1e-5)
  # An eighth of a turn: the corners come from outside and take the fill; the centre's
  # four pixels stay a bilinear mix of the centre's four.
  fill_D = jnp.full((72,), 7.0)
  eighth = rot([np.pi / 4] * 3, fill_D)
  assert (eighth[:, 0, 0] == 7.0).all() and (eighth[:, -1, -1] == 7.0).all()
  assert (eighth[:, 2:4, 2:4] != 7.0).all()
  # Random angles within +-degrees, the same for every variant of a stream (one key).
  key = jax.random.PRNGKey(3)
  a = np.asarray(train_lib.rotate_images(x_BxD, (6, 6, 2), jnp.float32(10.0), key))
  b = np.asarray(train_lib.rotate_images(x_BxD, (6, 6, 2), jnp.float32(10.0), key))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, x_BxD)
  zero = np.asarray(train_lib.rotate_images(x_BxD, (6, 6, 2), jnp.float32(0.0), key))
  np.testing.assert_allclose(zero, x_BxD, atol=1e-6)


def test_crops_read_their_window_and_resize_it_back():
  # A linear image (value = 2 * row + 3 * column per channel) is resampled exactly by bilinear
  # interpolation: a crop's pixel (i, j) is the source's value at its window's point.
  i_HxW, j_HxW = np.mgrid[0:8, 0:6].astype(np.float32)
  img_HxWxC = np.stack([2 * i_HxW + 3 * j_HxW, -i_HxW], axis=-1)
  x_BxD = jnp.asarray(np.stack([img_HxWxC] * 3).reshape(3, -1))
  scale_B = jnp.asarray([1.0, 0.5, 0.75])
  offset_Bx2 = jnp.asarray([[0.0, 0.0], [1.5, -1.0], [-0.5, 0.5]])
  out = np.asarray(train_lib.crop_by(x_BxD, (8, 6, 2), scale_B, offset_Bx2)).reshape(3, 8, 6, 2)
  for b in range(3):
    s, (dy, dx) = float(scale_B[b]), np.asarray(offset_Bx2[b])
    src_i, src_j = 3.5 + dy + s * (i_HxW - 3.5), 2.5 + dx + s * (j_HxW - 2.5)
    np.testing.assert_allclose(out[b, ..., 0], 2 * src_i + 3 * src_j, atol=1e-5)
    np.testing.assert_allclose(out[b, ..., 1], -src_i, atol=1e-5)
  # Random windows stay inside the image (no fill: values within the image's range), scale
  # at least 1 - crop; crop 0 is the image itself; one key, the same crops.
  key = jax.random.PRNGKey(4)
  a = np.asarray(train_lib.crop_images(x_BxD, (8, 6, 2), jnp.float32(0.5), key)).reshape(3, 8, 6, 2)
  np.testing.assert_array_equal(
      a, np.asarray(train_lib.crop_images(x_BxD, (8, 6, 2), jnp.float32(0.5), key)).reshape(3, 8, 6, 2))
  assert a[..., 0].min() >= -1e-5 and a[..., 0].max() <= 2 * 7 + 3 * 5 + 1e-5
  spans = a[:, -1, :, 1] - a[:, 0, :, 1]  # Rows covered, times -1: -(7 * scale).
  assert (np.abs(spans) >= 7 * 0.5 - 1e-4).all() and (np.abs(spans) <= 7 + 1e-4).all()
  assert not np.allclose(a, np.asarray(x_BxD).reshape(3, 8, 6, 2))
  zero = np.asarray(train_lib.crop_images(x_BxD, (8, 6, 2), jnp.float32(0.0), key))
  np.testing.assert_allclose(zero, x_BxD, atol=1e-5)


def test_label_noise_flips_about_its_rate_to_other_classes_fixed_per_seed():
  n, k, rate = 4000, 10, 0.3
  y_N = jnp.asarray(np.arange(n) % k, jnp.int32)
  u_N, r_N = train_lib.label_flips(jnp.int32(5), n)
  noisy = np.asarray(train_lib.noisy_labels(y_N, u_N, r_N, jnp.float32(rate), k))
  flipped = noisy != np.asarray(y_N)
  # Binomial(n, rate): 5 standard deviations.
  assert abs(flipped.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / n), flipped.mean()
  assert ((noisy >= 0) & (noisy < k)).all()
  # Every other class is drawn, about uniformly: (label - original) mod K covers 1..K-1.
  moves = np.bincount((noisy - np.asarray(y_N))[flipped] % k, minlength=k)
  assert moves[0] == 0 and (moves[1:] > 0.5 * flipped.sum() / (k - 1)).all(), moves
  # Fixed per (seed, row): the same seed flips the same rows; a higher rate flips a superset.
  again = np.asarray(train_lib.noisy_labels(y_N, *train_lib.label_flips(jnp.int32(5), n),
                                            jnp.float32(rate), k))
  np.testing.assert_array_equal(noisy, again)
  more = np.asarray(train_lib.noisy_labels(y_N, u_N, r_N, jnp.float32(0.5), k)) != np.asarray(y_N)
  assert (more >= flipped).all() and more.sum() > flipped.sum()
  other = np.asarray(train_lib.noisy_labels(y_N, *train_lib.label_flips(jnp.int32(6), n),
                                            jnp.float32(rate), k)) != np.asarray(y_N)
  assert (other != flipped).any()
  np.testing.assert_array_equal(train_lib.noisy_labels(y_N, u_N, r_N, jnp.float32(0.0), k), y_N)


def test_shifts_keep_the_shape_and_pad_with_zeros():
  h, w, b, k = 5, 6, 64, 2
  raw = np.arange(1, h * w + 1, dtype=np.float32)
  raw_BxD = jnp.asarray(np.tile(raw, (b, 1)))
  key = jax.random.PRNGKey(0)
  out = np.asarray(train_lib.shift_images(raw_BxD, (h, w, 1), jnp.float32(k), key))
  assert out.shape == (b, h * w)
  img = raw.reshape(h, w)
  seen = set()
  for row in out:
    matches = []
    for dy in range(-k, k + 1):
      for dx in range(-k, k + 1):
        want = np.zeros_like(img)  # pixel (i, j) <- (i - dy, j - dx); zeros outside
        want[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            img[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        if np.array_equal(row.reshape(h, w), want):
          matches.append((dy, dx))
    assert len(matches) == 1, matches
    seen.add(matches[0])
  assert len(seen) > 12, seen  # Of the 25 moves, many are drawn, not one.
  assert max(abs(d) for m in seen for d in m) == k
  np.testing.assert_array_equal(  # The same key moves the same way; shift 0 moves nothing.
      train_lib.shift_images(raw_BxD, (h, w, 1), jnp.float32(k), key), out)
  np.testing.assert_array_equal(
      train_lib.shift_images(raw_BxD, (h, w, 1), jnp.float32(0), key), raw_BxD)
  # The trainer fills with the standardized blank pixel: the same moves, another filling.
  filled = train_lib.shift_images(raw_BxD, (h, w, 1), jnp.float32(k), key,
                                  jnp.full(h * w, -7.0, jnp.float32))
  np.testing.assert_array_equal(filled, np.where(out == 0, -7.0, out))


def test_flip_mirrors_each_image_with_its_probability():
  h, w, b = 4, 5, 64
  x = jnp.arange(b * h * w, dtype=jnp.float32).reshape(b, h * w)
  key = jax.random.PRNGKey(0)
  mirrored = x.reshape(b, h, w)[:, :, ::-1].reshape(b, h * w)
  np.testing.assert_array_equal(train_lib.flip_images(x, (h, w), jnp.float32(1.0), key), mirrored)
  np.testing.assert_array_equal(train_lib.flip_images(x, (h, w), jnp.float32(0.0), key), x)
  half = np.asarray(train_lib.flip_images(x, (h, w), jnp.float32(0.5), key))
  flipped = (half == np.asarray(mirrored)).all(axis=1)
  assert ((half == np.asarray(x)).all(axis=1) | flipped).all()  # Each image whole, one way.
  assert 16 < flipped.sum() < 48  # About half of 64.


def test_shift_refuses_flat_features_in_one_line():
  rules, _, params, x_BxD, y_B = _rules_and_batch()
  rules = rules._replace(feature_shape=(64,))
  with pytest.raises(lr_jax.ConfigError, match=r"shift needs image-shaped data .*\(64,\)"):
    train_lib.training_losses(rules, params, _tree({"shift": 1}), x_BxD, y_B,
                              jax.random.PRNGKey(0), None)


class KerasReduceLROnPlateau:
  """Keras 3's `ReduceLROnPlateau.on_epoch_end` (mode "min"), transcribed line by line."""

  def __init__(self, lr, factor, patience, min_delta, cooldown, min_lr):
    self.lr, self.factor, self.patience = lr, factor, patience
    self.min_delta, self.cooldown, self.min_lr = min_delta, cooldown, min_lr
    self.wait, self.cooldown_counter, self.best = 0, 0, np.inf

  def in_cooldown(self):
    return self.cooldown_counter > 0

  def on_epoch_end(self, current):
    if self.in_cooldown():
      self.cooldown_counter -= 1
      self.wait = 0
    if np.less(current, self.best - self.min_delta):
      self.best = current
      self.wait = 0
    elif not self.in_cooldown():
      self.wait += 1
      if self.wait >= self.patience:
        old_lr = self.lr
        if old_lr > np.float32(self.min_lr):
          new_lr = old_lr * self.factor
          new_lr = max(new_lr, self.min_lr)
          self.lr = new_lr
          self.cooldown_counter = self.cooldown
          self.wait = 0


VAL_LOSSES = [1.0, 0.8, 0.85, 0.8, 0.79995, 0.9, 0.7, 0.7, 0.71, 0.72, 0.69, 0.69, 0.695, 0.6,
              0.61, 0.62, 0.63, 0.64, 0.65, 0.5, 0.55, 0.56, 0.57, 0.58, 0.59, 0.6]


@pytest.mark.parametrize("factor,patience,cooldown,min_lr,min_delta", [
    (0.5, 2, 0, 0.0, 0.0), (0.1, 1, 2, 1e-3, 0.01), (0.5, 3, 1, 0.02, 1e-4),
    (0.2, 1, 0, 0.0, 0.05)])
def test_plateau_update_gives_keras_learning_rates_epoch_by_epoch(factor, patience, cooldown,
                                                                  min_lr, min_delta):
  lr = 0.1
  keras = KerasReduceLROnPlateau(lr, factor, patience, min_delta, cooldown, min_lr)
  want = []
  for loss in VAL_LOSSES:
    keras.on_epoch_end(loss)
    want.append(keras.lr)
  hp = {"plateau_factor": factor, "plateau_patience": patience, "plateau_cooldown": cooldown,
        "plateau_min_lr": min_lr, "plateau_min_delta": min_delta}
  hp = {k: jnp.float32(v) for k, v in hp.items()}

  @jax.jit
  def run(scores):
    p = train_lib.Plateau(jnp.float32(lr), jnp.float32(jnp.inf), jnp.int32(0), jnp.int32(0))

    def epoch(p, score):
      p = train_lib.plateau_update(p, score, jnp.asarray(True), hp)
      return p, p.learning_rate

    return jax.lax.scan(epoch, p, scores)[1]

  got = run(jnp.asarray(VAL_LOSSES, jnp.float32))
  assert len(set(want)) >= 3, "the sequence should reduce the rate at least twice"
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_plateau_schedule_trains_with_keras_rates_and_each_factor_equals_it_alone():
  exp = AXES_EXP.replace(optim__schedule="plateau", train__epochs=8)
  points = {"learning_rate": [0.05, 0.05], "plateau_factor": [0.5, 0.2],
            "plateau_patience": [1.0, 1.0], "plateau_min_delta": [0.1, 0.1]}
  v, hist = _train_points(points, exp)
  for i, factor in enumerate((0.5, 0.2)):
    # The history's learning rate is the effective one: the rate each epoch's updates used,
    # what Keras' callback gives from the epochs before.
    keras = KerasReduceLROnPlateau(0.05, factor, 1, 0.1, 0, 0.0)
    want = []
    for loss in hist.val_loss[:, 0, i]:
      want.append(keras.lr)
      keras.on_epoch_end(float(loss))
    np.testing.assert_allclose(hist.learning_rate[:, 0, i], want, rtol=1e-6)
    assert min(want) < 0.05, "the run should hit a plateau"
    _, alone = _train_points({k: [x[i]] for k, x in points.items()}, exp)
    np.testing.assert_allclose(hist.val_loss[:, 0, i], alone.val_loss[:, 0, 0], rtol=1e-5)
    np.testing.assert_allclose(hist.learning_rate[:, 0, i], alone.learning_rate[:, 0, 0],
                               rtol=1e-6)


def test_early_stopping_and_the_plateau_share_one_improvement_rule():
  # `no_improvement` is Keras' count: an improvement beats best - min_delta and resets the wait.
  scores = [1.0, 0.95, 0.951, 0.9, 0.9]
  best, wait, waits = jnp.float32(jnp.inf), jnp.int32(0), []
  for s in scores:
    _, best, wait = train_lib.no_improvement(jnp.float32(s), best, wait, 0.02, jnp.asarray(True))
    waits.append(int(wait))
  assert waits == [0, 0, 1, 0, 1]
  assert float(best) == pytest.approx(0.9)


def test_a_sweep_over_lr_dropout_smoothing_and_noise_is_one_compiled_program(monkeypatch):
  from lr_jax import engine
  built, traced = [], []
  real = engine.programs.make_trainer

  def counted(*args, **kwargs):
    trainer = real(*args, **kwargs)
    built.append(1)
    return trainer._replace(run=lambda *a, **k: (traced.append(1), trainer.run(*a, **k))[1])

  monkeypatch.setattr(engine.programs, "make_trainer", counted)
  engine.programs._compiled.cache_clear()  # Trainers built by earlier tests are not counted.
  exp = AXES_EXP.replace(train__epochs=2)
  grid = lr_jax.Grid(learning_rates=(0.01, 0.05), seeds=(0,),
                     hparams={"model.dropout_rate": (0.0, 0.3), "loss.label_smoothing": (0.0, 0.1),
                              "data.input_noise": (0.0, 0.2)})
  result = lr_jax.run_sweep(exp, grid)
  engine.programs._compiled.cache_clear()  # Later tests get uncounted trainers again.
  assert result.num_variants == 16 and len(built) == 1 and len(traced) == 1, (built, traced)
  for name in ("dropout_rate", "label_smoothing", "input_noise"):
    assert sorted(set(np.round(result.rows[name], 6))) == sorted(dict(grid.hparams)[name])
  assert len(set(np.round(result.rows["final_train_loss"], 6))) == 16  # Every variant its own.


def test_a_plateau_sweep_through_run_sweep_reduces_each_variants_rate():
  exp = AXES_EXP.replace(optim__schedule="plateau", optim__plateau_patience=1,
                         optim__plateau_min_delta=0.1, train__epochs=5)
  grid = lr_jax.Grid(learning_rates=(0.05,), hparams={"schedule.plateau_factor": (0.5, 0.2)})
  result = lr_jax.run_sweep(exp, grid)
  for factor in (0.5, 0.2):
    i = _rows(result, plateau_factor=factor)
    rates = result.history["epoch_learning_rate"][i]
    ratios = rates[1:] / rates[:-1]
    assert rates[0] == pytest.approx(0.05) and (ratios < 1 + 1e-6).all()
    np.testing.assert_allclose(ratios[ratios < 1 - 1e-6], factor, rtol=1e-5)
    assert (ratios < 1 - 1e-6).any(), rates
