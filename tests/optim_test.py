"""Optimizers see the parameters' pytree; the registries; user optimizers and their hooks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_jax
from lr_jax import engine, hparams, optim
from lr_jax.errors import ConfigError
from lr_jax.models import build_model
from lr_jax.train import initial_params

# One full-batch step per run: the result's parameters are the initial ones after one update.
ONE_STEP = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=100),
    model=lr_jax.ModelConfig(hidden=(8,)),
    train=lr_jax.TrainConfig(epochs=1, batch_size=0, patience=0, restore_best=False))


def _sweep_params(exp, lr, **hparams):
  """The parameter pytrees of a sweep over one learning rate and `hparams` values, in row order."""
  grid = lr_jax.Grid(learning_rates=(lr,), seeds=(0,),
                     hparams=tuple((k, tuple(v)) for k, v in hparams.items()))
  result = lr_jax.run_sweep(exp, grid)
  n = result.num_variants
  return result, [jax.tree_util.tree_map(lambda a, i=i: np.asarray(a[i]), result.params[0])
                  for i in range(n)]


def _problem(exp, split="train"):
  """Seed 0's initial parameters and the mean loss on fold 0's `split` rows, by hand."""
  group = engine.plan_sweep(exp, lr_jax.Grid())[0]
  d, s = group.dataset, group.splits
  idx = getattr(s, split + "_idx")[0][getattr(s, split + "_mask")[0]]
  x = jnp.asarray((d.x[idx] - s.mean[0]) / s.std[0])
  y = jnp.asarray(d.y[idx])
  model = build_model(exp.model, d.num_classes, d.feature_shape)

  def loss(params):
    out = model.apply(params, x, None, split == "train")
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

  return initial_params(model, jnp.int32(0)), loss


def _plain_optax(exp, tx, steps=1, extra_args=None):
  """`steps` full-batch steps of `tx` on the parameters' pytree: (params, state, losses)."""
  params, loss = _problem(exp)
  state = tx.init(params)
  losses = []
  for _ in range(steps):
    value, grads = jax.value_and_grad(loss)(params)
    extra = {} if extra_args is None else extra_args(value)
    updates, state = tx.update(grads, state, params, **extra)
    params = optax.apply_updates(params, updates)
    losses.append(float(value))
  return params, state, losses


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def _kernels_and_biases(tree):
  leaves = jax.tree_util.tree_leaves(tree)
  return [a for a in leaves if a.ndim > 1], [a for a in leaves if a.ndim == 1]


# ----------------------------------------------------------------------------- structure


def test_lamb_trust_ratio_is_per_layer():
  lr = 0.01
  exp = ONE_STEP.replace(optim__name="lamb")
  _, (trained,) = _sweep_params(exp, lr)
  params, loss = _problem(exp)
  grads = jax.grad(loss)(params)
  # LAMB's first step by hand (weight decay 0): Adam's bias-corrected first step
  # g / (|g| + eps), scaled per layer by ||p|| / ||u|| (1 where either norm is 0).
  u = jax.tree_util.tree_map(lambda g: np.asarray(g) / (np.abs(np.asarray(g)) + 1e-6), grads)

  def ratio(p, u):
    pn, un = np.linalg.norm(p), np.linalg.norm(u)
    return 1.0 if pn == 0 or un == 0 else pn / un

  by_hand = jax.tree_util.tree_map(lambda p, u: np.asarray(p) - lr * ratio(p, u) * u, params, u)
  _assert_trees_close(trained, by_hand, rtol=1e-4, atol=1e-6)
  # Each kernel has its own ratio; one ratio over the raveled vector would give another step.
  ratios = [ratio(p, v) for p, v in zip(_kernels_and_biases(params)[0], _kernels_and_biases(u)[0])]
  assert max(ratios) / min(ratios) > 1.5
  flat_p = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(params)])
  flat_u = np.concatenate([np.ravel(a) for a in jax.tree_util.tree_leaves(u)])
  global_step = jax.tree_util.tree_map(lambda p, v: np.asarray(p) - lr * ratio(flat_p, flat_u) * v,
                                       params, u)
  k_trained, k_global = _kernels_and_biases(trained)[0], _kernels_and_biases(global_step)[0]
  assert any(not np.allclose(a, b, rtol=1e-3) for a, b in zip(k_trained, k_global))


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop",
                                  "adagrad", "lion", "lamb"])
def test_each_optimizer_takes_the_step_of_plain_optax_on_the_pytree(name):
  lr = 0.01
  exp = ONE_STEP.replace(optim__name=name)
  _, (trained,) = _sweep_params(exp, lr)
  family = optim.OPTIMIZERS[name]
  defaults = {k: h.default for k, h in family.hparams.items()}
  expected, _, _ = _plain_optax(exp, family.factory(lr, **defaults, **family.fixed))
  _assert_trees_close(trained, expected, rtol=1e-4)


@pytest.mark.parametrize("schedule,fields,expected", [
    ("constant", {}, lambda s: 0.1),
    ("exponential", {"decay_steps": 2, "decay_rate": 0.5}, lambda s: 0.1 * 0.5 ** (s / 2)),
    ("cosine", {"alpha": 0.2}, lambda s: 0.1 * (0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * s / 10)))),
    ("piecewise", {"boundaries": (3, 6), "scales": (0.5, 0.1)},
     lambda s: 0.1 * (1.0 if s < 3 else 0.5 if s < 6 else 0.05)),
])
def test_each_schedule_scales_the_peak_by_its_shape(schedule, fields, expected):
  cfg = lr_jax.OptimConfig(name="sgd", schedule=schedule, **fields)
  make = optim.make_optimizer(cfg, total_steps=10)
  hp = {k: jnp.float32(v) for k, v in hparams.dynamic_hparams(cfg).items()}
  hp["learning_rate"] = jnp.float32(0.1)
  tx = make(hparams.nest(hp, hparams.catalog()))
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  for step in range(9):
    _, state = tx.update({"w": jnp.ones(3)}, state, params)
    # The injected learning rate is the one step `step` used.
    np.testing.assert_allclose(optim.current_learning_rate(state), expected(step), rtol=1e-5)


def _adafactor(learning_rate):
  return optax.adafactor(learning_rate, min_dim_size_to_factor=4)


def test_adafactor_factors_the_kernels_second_moments():
  from jax.flatten_util import ravel_pytree
  optim.register_optimizer("test_adafactor", _adafactor)
  lr = 0.05
  exp = ONE_STEP.replace(optim__name="test_adafactor")
  _, (trained,) = _sweep_params(exp, lr)
  expected, state, _ = _plain_optax(exp, _adafactor(lr))
  _assert_trees_close(trained, expected, rtol=1e-4, atol=1e-6)
  # Factored: the 64x8 kernel's second moment is a row and a column, not 512 numbers.
  factored = state[0]
  assert (factored.v_row["Dense_0"]["kernel"].size, factored.v_col["Dense_0"]["kernel"].size) == (8, 64)
  # On the raveled vector (one 1-D leaf) adafactor cannot factor, and its step is another.
  params, loss = _problem(exp)
  vec, unravel = ravel_pytree(params)
  tx = _adafactor(lr)
  g = ravel_pytree(jax.grad(loss)(params))[0]
  unfactored = unravel(vec + tx.update(g, tx.init(vec), vec)[0])
  assert any(not np.allclose(a, b, rtol=1e-2) for a, b in zip(
      jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(unfactored)))


# ----------------------------------------------------------------------------- user optimizers

TRACES = []


def masked_adamw(learning_rate, weight_decay):
  """AdamW that decays the kernels only; counts its traces."""
  TRACES.append(1)
  return optax.adamw(learning_rate, weight_decay=weight_decay,
                     mask=lambda p: jax.tree_util.tree_map(lambda a: a.ndim > 1, p))


def test_adamw_mask_decays_the_kernels_and_leaves_the_biases_to_adam():
  lr = 0.01
  optim.register_optimizer("test_masked_adamw", masked_adamw, {"weight_decay": 1e-4})
  exp = ONE_STEP.replace(optim__name="test_masked_adamw")
  result, (no_decay, decay) = _sweep_params(exp, lr, weight_decay=(0.0, 0.5))
  assert list(result.rows["weight_decay"]) == [0.0, 0.5]
  _, (adam,) = _sweep_params(ONE_STEP.replace(optim__name="adam"), lr)
  params, _ = _problem(exp)
  k0, _ = _kernels_and_biases(params)
  (k_adam, b_adam), (k_decay, b_decay) = _kernels_and_biases(adam), _kernels_and_biases(decay)
  for a, b in zip(b_decay, b_adam):  # the biases take Adam's step
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  for a, b, p in zip(k_decay, k_adam, k0):  # the kernels Adam's step minus lr * wd * kernel
    np.testing.assert_allclose(a, b - lr * 0.5 * np.asarray(p), rtol=1e-5, atol=1e-7)
  _assert_trees_close(no_decay, adam)
  # And each equals plain optax's masked AdamW on the pytree.
  for wd, trained in ((0.0, no_decay), (0.5, decay)):
    expected, _, _ = _plain_optax(exp, masked_adamw(lr, wd))
    _assert_trees_close(trained, expected, rtol=1e-4)


def test_a_user_optimizer_hyperparameter_is_a_traced_axis_compiled_once():
  optim.register_optimizer("test_masked_adamw", masked_adamw, {"weight_decay": 1e-4})
  exp = lr_jax.Experiment(
      data=lr_jax.DataConfig(dataset="digits", train_size=100),
      model=lr_jax.ModelConfig(hidden=(8,)), optim=lr_jax.OptimConfig(name="test_masked_adamw"),
      train=lr_jax.TrainConfig(epochs=3, batch_size=25, patience=0))
  grid = lambda wds: lr_jax.Grid(learning_rates=(3e-2,), seeds=(0,),
                                 hparams=(("weight_decay", wds),))
  first = lr_jax.run_sweep(exp, grid((0.0, 0.5)))
  traced = len(TRACES)
  second = lr_jax.run_sweep(exp, grid((0.5, 0.0)))
  assert len(TRACES) == traced  # the second sweep reuses the compiled program
  # The weight decay changes the training, and a value's result does not depend on its position.
  assert not np.allclose(first.history["val_loss"][0], first.history["val_loss"][1], rtol=1e-3)
  np.testing.assert_allclose(first.history["val_loss"][0], second.history["val_loss"][1], rtol=1e-5)


def _plateau_adam(learning_rate, factor):
  return optax.chain(optax.adam(learning_rate),
                     optax.contrib.reduce_on_plateau(factor=factor, patience=1, accumulation_size=1))


def _value(loss):
  return {"value": loss}


def _register_plateau_adam():
  # The factor is fixed: reduce_on_plateau checks it in Python, so it cannot be traced.
  optim.register_optimizer("test_plateau_adam", _plateau_adam, fixed={"factor": 0.25},
                           extra_args=_value)


def test_extra_args_hook_passes_the_loss_to_a_plateau_transformation():
  _register_plateau_adam()
  lr = 0.3  # large enough that the full-batch loss rises and the plateau rule cuts the step
  exp = ONE_STEP.replace(optim__name="test_plateau_adam", train__epochs=8,
                         train__divergence_factor=1e6)
  _, (trained,) = _sweep_params(exp, lr)
  expected, state, losses = _plain_optax(exp, _plateau_adam(lr, 0.25), steps=8, extra_args=_value)
  assert float(state[1].scale) < 1.0, losses  # the rule fired: the test sees the hook's effect
  _assert_trees_close(trained, expected, rtol=2e-4, atol=1e-5)


def test_the_finder_passes_the_extra_args_too():
  from lr_jax.finder import lr_finder
  _register_plateau_adam()
  exp = ONE_STEP.replace(optim__name="test_plateau_adam", train__batch_size=25)
  result = lr_finder(exp, lr_min=1e-4, lr_max=1.0, num_steps=12, seeds=(0,))
  assert np.isfinite(result.losses[0, :6]).all()


def _schedule_free(learning_rate):
  return optax.contrib.schedule_free_adamw(learning_rate, b1=0.9)


def test_eval_params_hook_validates_and_returns_schedule_free_evaluation_params():
  optim.register_optimizer("test_schedule_free", _schedule_free,
                           eval_params=optax.contrib.schedule_free_eval_params)
  lr = 0.05
  exp = ONE_STEP.replace(optim__name="test_schedule_free", train__epochs=3)
  result, (trained,) = _sweep_params(exp, lr)
  y, state, _ = _plain_optax(exp, _schedule_free(lr), steps=3)
  x = optax.contrib.schedule_free_eval_params(state, y)
  _assert_trees_close(trained, x, rtol=1e-4, atol=1e-5)
  # The evaluation point is not the trained one (by ~5e-3 here): the test tells them apart.
  assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
             for a, b in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y))) > 2e-3
  # Validation is on the evaluation point too.
  _, val_loss = _problem(exp, "val")
  np.testing.assert_allclose(result.history["val_loss"][0][-1], val_loss(x), rtol=1e-4)
  assert abs(float(val_loss(x)) - float(val_loss(y))) > 1e-3


def test_register_optimizer_refuses_bad_input_in_one_line():
  optim.register_optimizer("test_masked_adamw", masked_adamw, {"weight_decay": 1e-4})  # same: ok
  cases = [
      (("test_masked_adamw", optax.adam), "already registered"),
      (("adam", optax.sgd), "already registered"),
      (("test_bad_default", masked_adamw, {"weight_decay": float("nan")}), "finite number"),
      (("test_no_such_arg", optax.adam, {"weight_decay": 0.1}), "cannot be called"),
      (("test_taken", masked_adamw, {"learning_rate": 0.1}), "taken by the learning rate"),
      # Left out of a sweep at 0.9, it would be optax.adamw's 0.999 instead.
      (("test_bad_off", optax.adamw, {"b2": optim.HParam(0.9, optim.MOMENTUM, off=0.9)}),
       "'b2' is off at 0.9 but the factory's default for it is 0.999"),
      (("test_no_default", masked_adamw, {"weight_decay": optim.HParam(0.0, optim.NON_NEGATIVE,
                                                                        off=0.0)}),
       "default for it is none"),
  ]
  for args, needle in cases:
    with pytest.raises(ConfigError, match=needle) as e:
      optim.register_optimizer(*args)
    assert "\n" not in str(e.value)
  assert "test_no_such_arg" not in optim.OPTIMIZERS


# The horizon (total steps) and numbers of each traced shape, checked against optax's
# schedule with the numbers as Python constants; 0.21 * 300 is just below 63 in float32.
SHAPES = [
    ("cosine", 37, {"alpha": 0.0}, lambda t, h: optax.cosine_decay_schedule(1.0, t, h["alpha"])),
    ("cosine", 100, {"alpha": 0.2}, lambda t, h: optax.cosine_decay_schedule(1.0, t, h["alpha"])),
    *[("warmup_cosine", total, {"warmup_fraction": wf, "alpha": alpha},
       lambda t, h: optax.warmup_cosine_decay_schedule(
           0.0, 1.0, max(1, round(h["warmup_fraction"] * t)),
           max(t, max(1, round(h["warmup_fraction"] * t)) + 1), end_value=h["alpha"]))
      for total, wf, alpha in [(100, 0.1, 0.0), (37, 0.25, 0.3), (20, 0.35, 0.5), (10, 0.01, 0.1)]],
    *[("onecycle", total, {"pct_start": pct},
       lambda t, h: optax.cosine_onecycle_schedule(t, 1.0, pct_start=h["pct_start"]))
      for total, pct in [(100, 0.3), (300, 0.21), (37, 0.5), (10, 0.05)]],
]


@pytest.mark.parametrize("schedule,total,numbers,reference", SHAPES,
                         ids=[f"{s}-{t}-{n}" for s, t, n, _ in SHAPES])
def test_a_traced_schedule_shape_equals_optaxs_at_the_same_numbers(schedule, total, numbers,
                                                                   reference):
  shape = optim.SCHEDULES[schedule].factory(lr_jax.OptimConfig(schedule=schedule), total)
  steps = jnp.arange(total + 3)
  # The numbers are traced: one program for every value (a Python int of them would not be).
  traced = jax.jit(jax.vmap(shape, in_axes=(0, None)))(
      steps, {k: jnp.float32(v) for k, v in numbers.items()})
  expected = jax.vmap(reference(total, numbers))(steps)
  np.testing.assert_allclose(traced, expected, rtol=1e-6, atol=1e-6)
  assert float(traced.max()) == pytest.approx(1.0, abs=1e-6)  # Scaled by the peak.


def test_plateaus_shape_is_constant_and_its_numbers_are_the_configs():
  cfg = lr_jax.OptimConfig(schedule="plateau", plateau_factor=0.5, plateau_patience=3)
  shape = optim.SCHEDULES["plateau"].factory(cfg, 10)
  assert [float(shape(jnp.int32(s), {})) for s in (0, 5, 50)] == [1.0, 1.0, 1.0]
  assert hparams.dynamic_hparams(cfg) == {
      "learning_rate": 1e-3, "plateau_factor": 0.5, "plateau_patience": 3.0,
      "plateau_cooldown": 0.0, "plateau_min_lr": 0.0, "plateau_min_delta": 1e-4}


def test_a_traced_clip_norm_clips_as_optaxs_static_one():
  cfg = lr_jax.OptimConfig(name="sgd")
  make = optim.make_optimizer(cfg, total_steps=10)
  params, grads = {"w": jnp.zeros(3)}, {"w": jnp.array([3.0, 4.0, 0.0])}  # Norm 5.

  def step(hp):
    tx = make(hparams.nest(hp, hparams.catalog()))
    return tx.update(grads, tx.init(params), params)[0]["w"]

  clipped = jax.jit(step)({"learning_rate": jnp.float32(1.0), "clip_norm": jnp.float32(1.0)})
  plain = jax.jit(step)({"learning_rate": jnp.float32(1.0)})
  expected = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(1.0))
  np.testing.assert_allclose(clipped, expected.update(grads, expected.init(params))[0]["w"],
                             rtol=1e-6)
  np.testing.assert_allclose(clipped, [-0.6, -0.8, 0.0], rtol=1e-6)
  np.testing.assert_allclose(plain, [-3.0, -4.0, 0.0])  # Absent: no clipping code at all.


@pytest.mark.parametrize("family,numbers", [
    ("adam", {"b1": 0.5, "b2": 0.9, "eps": 1e-3}),
    ("rmsprop", {"decay": 0.5, "eps": 1e-2}),
    ("lamb", {"b1": 0.8, "eps": 1e-3, "weight_decay": 0.1}),
    ("lion", {"b2": 0.5, "weight_decay": 0.1}),
    ("adagrad", {"eps": 0.5}),
])
def test_a_family_number_is_injected_traced_and_steps_as_optax_with_it(family, numbers):
  make = optim.make_optimizer(lr_jax.OptimConfig(name=family), total_steps=10)
  entry = optim.OPTIMIZERS[family]
  params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.1]])}
  grads = [{"w": jnp.array([[1.0, -2.0], [0.5, 3.0]])}, {"w": jnp.array([[-1.0, 0.5], [2.0, 1.0]])}]

  def run(hp):
    tx, p = make(hparams.nest(hp, hparams.catalog())), params
    state = tx.init(p)
    for g in grads:
      updates, state = tx.update(g, state, p)
      p = optax.apply_updates(p, updates)
    return p["w"], state

  hp = {"learning_rate": jnp.float32(0.1), **{k: jnp.float32(v) for k, v in numbers.items()}}
  traced, state = jax.jit(run)(hp)
  # Injected: the state holds each number as the variant's value, not a baked-in constant.
  for k, v in numbers.items():
    assert float(optim._injected(state).hyperparams[k]) == pytest.approx(v), k
  tx, p = entry.factory(0.1, **numbers), params
  opt_state = tx.init(p)
  for g in grads:
    updates, opt_state = tx.update(g, opt_state, p)
    p = optax.apply_updates(p, updates)
  np.testing.assert_allclose(traced, p["w"], rtol=1e-5)
  defaults, _ = jax.jit(run)({"learning_rate": jnp.float32(0.1)})
  assert not np.allclose(defaults, traced, rtol=1e-3)  # The numbers change the step.
