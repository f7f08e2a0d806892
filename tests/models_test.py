"""Tests of lr_jax.models: the Linen and NNX adapters, the built-ins, and user-model checks."""

from __future__ import annotations

import csv
import io
import json
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lr_jax
from lr_jax import hparams as hparams_lib
from lr_jax import models, outputs
from lr_jax.errors import ConfigError

SMALL = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=100),
    train=lr_jax.TrainConfig(epochs=2, patience=0))
GRID = lr_jax.Grid(learning_rates=(1e-2,))


class TwoLayer(nn.Module):
  """64 -> 16 -> `out`, with dropout between when training."""

  out: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Dropout(0.5, deterministic=not train)(nn.relu(nn.Dense(16)(x)))
    return nn.Dense(self.out)(h)


class NoTrainArg(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(3)(x)


class NnxNet(nnx.Module):

  def __init__(self, rngs, d_in: int = 64, d_out: int = 10):
    self.hidden = nnx.Linear(d_in, 8, rngs=rngs)
    self.out = nnx.Linear(8, d_out, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.tanh(self.hidden(x)))


# ------------------------------------------------------------------------------ adapters


def test_from_linen_passes_train_and_the_dropout_key():
  model = models.from_linen(TwoLayer(), 64)
  assert model.name == "TwoLayer"
  params = model.init(jax.random.PRNGKey(0))
  assert params["Dense_0"]["kernel"].shape == (64, 16)
  assert params["Dense_1"]["kernel"].shape == (16, 10)
  x = jnp.ones((4, 64))
  evaluated = model.apply(params, x, jax.random.PRNGKey(1), False)
  assert evaluated.shape == (4, 10)
  # Validation draws no key: the same ops on the same inputs, bitwise by construction.
  np.testing.assert_array_equal(evaluated, model.apply(params, x, jax.random.PRNGKey(2), False))
  # Training drops units, differently for another key and the same for the same key.
  a = model.apply(params, x, jax.random.PRNGKey(1), True)
  b = model.apply(params, x, jax.random.PRNGKey(2), True)
  assert not np.allclose(a, evaluated) and not np.allclose(a, b)
  np.testing.assert_array_equal(a, model.apply(params, x, jax.random.PRNGKey(1), True))


def test_from_linen_without_a_train_argument():
  model = models.from_linen(NoTrainArg(), 5)
  assert model.name == "NoTrainArg"
  params = model.init(jax.random.PRNGKey(0))
  x = jnp.arange(10.0).reshape(2, 5)
  out = model.apply(params, x, jax.random.PRNGKey(0), True)
  kernel, bias = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
  np.testing.assert_allclose(out, x @ kernel + bias[None], rtol=1e-6)


def test_from_nnx_params_follow_the_key_and_apply_is_pure():
  model = models.from_nnx(lambda rngs: NnxNet(rngs))
  assert model.name == "NnxNet"
  p0, p1 = model.init(jax.random.PRNGKey(0)), model.init(jax.random.PRNGKey(1))
  assert p0["hidden"]["kernel"][...].shape == (64, 8)
  assert not np.allclose(p0["hidden"]["kernel"][...], p1["hidden"]["kernel"][...])
  x = jnp.ones((3, 64))
  out0 = model.apply(p0, x, None, False)
  assert out0.shape == (3, 10)
  # It has no dropout: no op reads the mode, so the same ops run on the same inputs (bitwise).
  np.testing.assert_array_equal(out0, model.apply(p0, x, None, True))
  assert not np.allclose(out0, model.apply(p1, x, None, False))


def test_build_model_cnn_refuses_flat_features_and_takes_images():
  cfg = lr_jax.ModelConfig(name="cnn", hidden=(4,))
  with pytest.raises(ConfigError, match=r"'cnn' needs image-shaped features .*\(4,\).*mlp, linear"):
    models.build_model(cfg, 3, (4,))
  model = models.build_model(cfg, 10, (8, 8))  # (H, W): one channel added.
  params = model.init(jax.random.PRNGKey(0))
  assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 4)
  assert model.apply(params, jnp.ones((2, 64)), None, False).shape == (2, 10)


class NnxDropout(nnx.Module):
  """64 -> 16 -> 10 with `nnx.Dropout` holding its own rng stream (as nnx's examples build it)."""

  def __init__(self, rngs, rate: float = 0.5):
    self.hidden = nnx.Linear(64, 16, rngs=rngs)
    self.drop = nnx.Dropout(rate, rngs=rngs)
    self.out = nnx.Linear(16, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(self.drop(nnx.relu(self.hidden(x))))


class NnxDropoutRngsAtCall(NnxDropout):
  """The other nnx convention: the dropout layer holds no stream, the call passes `rngs`."""

  def __init__(self, rngs, rate: float = 0.5):
    super().__init__(rngs, rate)
    self.drop = nnx.Dropout(rate)

  def __call__(self, x, rngs=None):
    return self.out(self.drop(nnx.relu(self.hidden(x)), rngs=rngs))


@pytest.mark.parametrize("net", [NnxDropout, NnxDropoutRngsAtCall])
def test_from_nnx_dropout_follows_train_and_the_key_and_apply_is_pure(net):
  model = models.from_nnx(net)
  params = model.init(jax.random.PRNGKey(0))
  x = jnp.ones((4, 64))
  k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  # Validation: dropout off, whatever the key, and equal to the same net without dropout.
  evaluated = model.apply(params, x, k1, False)
  np.testing.assert_array_equal(evaluated, model.apply(params, x, k2, False))  # Key unused.
  without = models.from_nnx(lambda rngs: net(rngs, rate=0.0))
  np.testing.assert_allclose(evaluated, without.apply(params, x, k1, True), rtol=1e-6)
  # Training: units dropped (a quarter of 4 x 16 stay whole only by a 2^-64 chance), by the key.
  a = model.apply(params, x, k1, True)
  assert not np.allclose(a, evaluated) and not np.allclose(a, model.apply(params, x, k2, True))
  # Pure: the same key gives the same mask, in a jitted call too; nothing carries over.
  np.testing.assert_array_equal(a, model.apply(params, x, k1, True))
  jitted = jax.jit(model.apply, static_argnums=3)
  np.testing.assert_allclose(jitted(params, x, k1, True), a, rtol=1e-6)
  np.testing.assert_allclose(jitted(params, x, k1, True), a, rtol=1e-6)


class ConvNet(nn.Module):
  """A 3x3 convolution on `[B, H, W, C]` images, then one dense layer."""

  out: int = 10

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(4, (3, 3))(x))
    return nn.Dense(self.out)(h.reshape((h.shape[0], -1)))


class NnxConvNet(nnx.Module):

  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    self.out = nnx.Linear(8 * 8 * 4, 10, rngs=rngs)

  def __call__(self, x):
    h = nnx.relu(self.conv(x))
    return self.out(h.reshape((h.shape[0], -1)))


def test_a_linen_cnn_takes_the_digits_images_in_their_shape_and_trains():
  model = models.from_linen(ConvNet(), (8, 8, 1))
  assert model.input_shape == (8, 8, 1)
  params = model.init(jax.random.PRNGKey(0))
  assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 4)  # One channel: it saw [B, 8, 8, 1].
  # The trainer's flat rows are reshaped in apply: row-major, as the data set flattened them.
  x_BxD = jax.random.normal(jax.random.PRNGKey(1), (2, 64))
  np.testing.assert_allclose(model.apply(params, x_BxD, None, False),
                             ConvNet().apply({"params": params}, x_BxD.reshape(2, 8, 8, 1)),
                             rtol=1e-6)
  result = lr_jax.run_sweep(SMALL, GRID, model=model)
  assert result.rows["model"].tolist() == ["ConvNet"]
  assert result.rows["best_val_accuracy"][0] > 0.5  # Chance is 0.1.


def test_an_nnx_model_takes_an_input_shape_too():
  model = models.from_nnx(NnxConvNet, input_shape=(8, 8, 1))
  params = model.init(jax.random.PRNGKey(0))
  assert model.apply(params, jnp.ones((3, 64)), None, False).shape == (3, 10)
  lr_jax.plan_sweep(SMALL, GRID, model)  # Fits digits.
  flat = models.from_nnx(NnxConvNet)  # Without it, the conv sees [B, 64] rows: refused.
  with pytest.raises(ConfigError, match=r"^model 'NnxConvNet' fails on inputs of 64 features"):
    lr_jax.plan_sweep(SMALL, GRID, flat)


@pytest.mark.parametrize("make, pattern", [
    (lambda: models.from_linen(ConvNet(), (8, 8, 3)),
     r"^model 'ConvNet' takes examples of shape \(8, 8, 3\) \(192 features\), the data set "
     r"'digits' \(10 classes\) has 64 features of shape \(8, 8, 1\); give "
     r"input_shape=\(8, 8, 1\) or another shape of 64 elements$"),
    (lambda: models.from_nnx(NnxConvNet, input_shape=(4, 4, 1)),
     r"^model 'NnxConvNet' takes examples of shape \(4, 4, 1\) \(16 features\), the data set "
     r"'digits' \(10 classes\) has 64 features of shape \(8, 8, 1\)"),
])
def test_an_input_shape_of_another_size_is_refused_naming_both(make, pattern):
  with pytest.raises(ConfigError, match=pattern):
    lr_jax.plan_sweep(SMALL, GRID, make())


@pytest.mark.parametrize("bad", [(8, 0, 1), (), "64", 6.4, (8, 8.0), True])
def test_a_bad_input_shape_is_refused(bad):
  with pytest.raises(ConfigError, match=r"^input_shape of model 'ConvNet' must be a positive int "
                                        r"\(flat features\) or a tuple of positive ints"):
    models.from_linen(ConvNet(), bad)


# ------------------------------------------------------------------------------ mutable state


class LinenBatchNorm(nn.Module):

  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(10)(nn.BatchNorm(use_running_average=not train)(x))


class NnxBatchNorm(nnx.Module):

  def __init__(self, rngs):
    self.norm = nnx.BatchNorm(64, rngs=rngs)
    self.out = nnx.Linear(64, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(self.norm(x))


class Counter(nnx.Variable):
  """A variable of the user's own kind."""


class NnxCounting(nnx.Module):
  """Counts its calls in a variable of its own: state a training step would change."""

  def __init__(self, rngs):
    self.out = nnx.Linear(64, 10, rngs=rngs)
    self.calls = Counter(jnp.zeros((), jnp.int32))

  def __call__(self, x):
    self.calls[...] += 1
    return self.out(x)


_STATELESS = r"which lr_jax does not carry: it trains models whose only variables are their " \
             r"parameters; use a stateless layer instead \(e.g. LayerNorm for BatchNorm\)$"


@pytest.mark.parametrize("make, what", [
    (lambda: models.from_linen(LinenBatchNorm(), 64), r"the linen collection 'batch_stats'"),
    (lambda: lr_jax.plan_sweep(SMALL, GRID, models.from_nnx(NnxBatchNorm)),
     r"nnx\.BatchStat norm\.(mean|var)"),
    (lambda: models.from_nnx(NnxCounting), r"Counter calls, which a call changes"),
])
def test_mutable_state_is_refused_before_training_in_one_line(make, what):
  caught = None
  try:
    model = make()
    lr_jax.plan_sweep(SMALL, GRID, model)
  except ConfigError as e:
    caught = e
  assert caught is not None
  message = str(caught)
  assert "\n" not in message
  assert re.fullmatch(r"model '\w+' has mutable state \(" + what + r"\), " + _STATELESS,
                      message), message


def test_constant_nnx_variables_are_allowed():

  class Scaled(nnx.Module):

    def __init__(self, rngs):
      self.out = nnx.Linear(64, 10, rngs=rngs)
      self.scale = nnx.Variable(jnp.full((), 2.0))  # Read, never written.

    def __call__(self, x):
      return self.out(x) * self.scale[...]

  model = models.from_nnx(Scaled)
  lr_jax.plan_sweep(SMALL, GRID, model)
  params = model.init(jax.random.PRNGKey(0))
  x = jnp.ones((1, 64))
  kernel, bias = params["out"]["kernel"][...], params["out"]["bias"][...]
  np.testing.assert_allclose(model.apply(params, x, None, False), 2 * (x @ kernel + bias[None]),
                             rtol=1e-6)


def test_a_model_that_fails_only_in_training_is_refused_before_training():

  class NoDropoutRngs(NnxDropout):

    def __init__(self, rngs):
      super().__init__(rngs)
      self.drop = nnx.Dropout(0.5)  # No stream, and its call passes none.

  with pytest.raises(ConfigError, match=r"^model 'NoDropoutRngs' fails in training mode "
                                        r"\(train=True\) on the data set 'digits' \(10 classes\): "
                                        r"ValueError: `deterministic` is False, but no `rngs`"):
    lr_jax.plan_sweep(SMALL, GRID, models.from_nnx(NoDropoutRngs))


# ------------------------------------------------------------------------------ ignored settings


@pytest.mark.parametrize("field, value, flag", [
    ("hidden", (64,), "--hidden"), ("dropout", 0.1, "--dropout"),
    ("activation", "tanh", "--activation"), ("name", "linear", "--model"),
])
def test_built_in_model_settings_are_refused_with_a_user_model(field, value, flag):
  exp = SMALL.replace(**{f"model__{field}": value})
  default = getattr(lr_jax.ModelConfig(), field)
  with pytest.raises(ConfigError) as info:
    lr_jax.plan_sweep(exp, GRID, models.from_linen(TwoLayer(), 64))
  assert str(info.value) == (
      f"ModelConfig.{field}={value!r} ({flag}) does not apply to the user model 'TwoLayer', "
      f"which builds its own layers; leave {field} at its default {default!r}")
  lr_jax.plan_sweep(exp, GRID)  # The built-in model uses them.
  with pytest.raises(ConfigError, match=rf"^ModelConfig\.{field}="):  # Before loading any data.
    lr_jax.plan_sweep(exp.replace(data__dataset="/nonexistent/x.csv"), GRID,
                      models.from_linen(TwoLayer(), 64))


# ------------------------------------------------------------------------------ width checks


@pytest.mark.parametrize("make, pattern", [
    (lambda: models.from_linen(TwoLayer(out=5), 64),
     r"^model 'TwoLayer' has 5 outputs, the data set 'digits' \(10 classes\) needs 10; "
     r"make its last layer 10 wide$"),
    (lambda: models.from_linen(TwoLayer(out=12), 64),
     r"^model 'TwoLayer' has 12 outputs, the data set 'digits' \(10 classes\) needs 10"),
    (lambda: models.from_linen(TwoLayer(), 10),
     r"^model 'TwoLayer' takes 10 input features, the data set 'digits' \(10 classes\) has 64; "),
    (lambda: models.from_nnx(lambda rngs: NnxNet(rngs, d_in=30)),
     r"^model 'NnxNet' takes 30 input features, the data set 'digits' \(10 classes\) has 64; "),
    (lambda: models.from_nnx(lambda rngs: NnxNet(rngs, d_out=3)),
     r"^model 'NnxNet' has 3 outputs, the data set 'digits' \(10 classes\) needs 10"),
])
def test_a_user_model_that_does_not_fit_the_data_is_refused_before_compiling(make, pattern):
  model = make()
  with pytest.raises(ConfigError, match=pattern) as info:
    lr_jax.plan_sweep(SMALL, GRID, model)
  assert "\n" not in str(info.value)


def test_regression_needs_one_output_and_a_broken_model_is_one_line():
  linear = SMALL.replace(data__dataset="linear")
  with pytest.raises(ConfigError, match=r"has 10 outputs, the data set 'linear' \(regression, "
                                        r"1 output\) needs 1"):
    lr_jax.plan_sweep(linear, GRID, models.from_nnx(lambda rngs: NnxNet(rngs, d_in=8)))
  lr_jax.plan_sweep(linear, GRID, models.from_nnx(lambda rngs: NnxNet(rngs, d_in=8, d_out=1)))

  class Broken(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(10)(x.reshape(x.shape[0], 7, -1))  # 64 features do not split into 7.

  with pytest.raises(ConfigError, match=r"^model 'Broken' fails to initialize: ValueError: "
                                        r"cannot reshape array of size 64 into shape"):
    lr_jax.plan_sweep(SMALL, GRID, models.from_linen(Broken(), 64))
  # Built for 63 = 7 x 9 features: its declared input shape says so.
  with pytest.raises(ConfigError, match=r"^model 'Broken' takes 63 input features, the data set "
                                        r"'digits' \(10 classes\) has 64; "):
    lr_jax.plan_sweep(SMALL, GRID, models.from_linen(Broken(), 63))

  class BrokenNnx(nnx.Module):  # Declares no input shape.

    def __init__(self, rngs):
      self.out = nnx.Linear(9, 10, rngs=rngs)

    def __call__(self, x):
      return self.out(x.reshape(x.shape[0], 7, -1)).mean(axis=1)

  # No width its parameters have (9, 10) takes the place of 64.
  with pytest.raises(ConfigError, match=r"^model 'BrokenNnx' fails on inputs of 64 features, the "
                                        r"width of the data set 'digits' \(10 classes\): ") as info:
    lr_jax.plan_sweep(SMALL, GRID, models.from_nnx(BrokenNnx))
  assert "\n" not in str(info.value)


def test_width_checks_compile_nothing(caplog):
  # Refused "before training": the check traces shapes only; no XLA program is built.
  with jax.log_compiles(True), caplog.at_level("WARNING"):
    with pytest.raises(ConfigError):
      lr_jax.plan_sweep(SMALL, GRID, models.from_linen(TwoLayer(out=5), 64))
    lr_jax.plan_sweep(SMALL, GRID, models.from_linen(TwoLayer(), 64))
  assert not [r for r in caplog.records if "ompil" in r.getMessage()], caplog.text


# ------------------------------------------------------------------------------ reporting


def test_a_user_model_is_reported_by_its_class_name(tmp_path):
  result = lr_jax.run_sweep(SMALL, GRID, model=models.from_linen(TwoLayer(), 64))
  assert result.rows["model"].tolist() == ["TwoLayer"]
  assert result.rows["hidden"].tolist() == ["-"]  # Not the unused ModelConfig's (128,).
  outputs.write_outputs(result, str(tmp_path))
  rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
  assert (rows[0]["model"], rows[0]["hidden"]) == ("TwoLayer", "-")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["config"]["experiments"][0]["model"]["name"] == "TwoLayer"
  table = lr_jax.format_table(result)
  assert "TwoLayer" in table and "mlp" not in table, table


# ------------------------------------------------------------------------------ traced numbers


@pytest.mark.parametrize("cfg", [lr_jax.ModelConfig(hidden=(16, 8)),
                                 lr_jax.ModelConfig(name="cnn", hidden=(4,))])
def test_built_in_dropout_at_rate_zero_is_the_model_without_dropout(cfg):
  model = lr_jax.build_model(cfg, 10, (8, 8, 1))
  params = model.init(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (32, 64))
  key = jax.random.PRNGKey(2)

  def loss(p, hp):
    return jnp.sum(models.apply_model(model, p, x, key, True, hp) ** 2)

  run = jax.jit(jax.value_and_grad(loss))
  plain, plain_grads = run(params, {})
  zero, zero_grads = run(params, {"dropout_rate": jnp.float32(0.0)})
  # Rate 0 keeps every unit and divides by 1.0, exactly; but another hparams pytree traces
  # another program, which XLA may fuse and sum differently: equal to float32 rounding.
  np.testing.assert_allclose(zero, plain, rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(zero_grads), jax.tree_util.tree_leaves(plain_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # A positive rate drops units in training, never in validation; one program for every rate
  # (vmapped over rates), the same key giving nested masks.
  rates = jnp.asarray([0.0, 0.5, 0.9], jnp.float32)
  outs = jax.jit(jax.vmap(lambda r: model.apply(params, x, key, True, {"dropout_rate": r})))(rates)
  # (Another program, vmapped: equal up to the summation order.)
  np.testing.assert_allclose(outs[0], model.apply(params, x, key, True), rtol=1e-5, atol=1e-6)
  assert not np.allclose(outs[1], outs[0]) and not np.allclose(outs[2], outs[1])
  # Validation runs no dropout code at all: the same ops on the same inputs, bitwise.
  np.testing.assert_array_equal(
      model.apply(params, x, key, False, {"dropout_rate": jnp.float32(0.9)}),
      model.apply(params, x, None, False))


def test_dropout_keeps_units_with_probability_one_minus_rate_scaled_up():
  h = jnp.ones((200, 100), jnp.float32)
  out = np.asarray(models.dropout(h, jnp.float32(0.3), jax.random.PRNGKey(0)))
  kept = out != 0
  assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.21 / kept.size)
  np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)


class Tempered(nn.Module):
  """A linear model whose logits are scaled by a declared, sweepable number."""

  @nn.compact
  def __call__(self, x, train: bool = False, hparams=None):
    return nn.Dense(10)(x) * (hparams or {}).get("scale", 1.0)


def test_a_user_model_gets_its_declared_numbers_per_variant():
  model = models.from_linen(Tempered(), 64, hparams={"scale": 1.0})
  assert dict(model.hparams) == {"scale": hparams_lib.HParam(1.0, hparams_lib.FINITE)}
  exp = lr_jax.Experiment(data=SMALL.data, train=SMALL.train)
  grid = lr_jax.Grid(learning_rates=(1e-2,), hparams={"model.scale": (0.0, 1.0)})
  result = lr_jax.run_sweep(exp, grid, model=model)
  scale = np.asarray(result.rows["scale"])
  zero = int(np.flatnonzero(scale == 0.0)[0])
  # Scale 0: every logit is 0, the loss is log(10) whatever the weights.
  np.testing.assert_allclose(result.history["train_loss"][zero], np.log(10.0), rtol=1e-6)
  one = int(np.flatnonzero(scale == 1.0)[0])
  alone = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-2,),
                                            hparams={"model.scale": (1.0,)}), model=model)
  np.testing.assert_allclose(result.history["train_loss"][one], alone.history["train_loss"][0],
                             rtol=1e-5)
  assert result.history["train_loss"][one][-1] < np.log(10.0) - 0.05


def test_an_nnx_model_gets_its_declared_numbers():

  class Scaled(nnx.Module):

    def __init__(self, rngs):
      self.out = nnx.Linear(64, 10, rngs=rngs)

    def __call__(self, x, hparams=None):
      return self.out(x) * (hparams or {}).get("scale", 1.0)

  model = models.from_nnx(Scaled, 64, hparams={"scale": 1.0})
  params = model.init(jax.random.PRNGKey(0))
  x = jnp.ones((2, 64))
  # Exact arithmetic: times 0 is 0, times 1 the same bits, after the same Linear.
  np.testing.assert_array_equal(model.apply(params, x, None, False, {"scale": jnp.float32(0.0)}),
                                np.zeros((2, 10)))
  np.testing.assert_array_equal(model.apply(params, x, None, False), model.apply(
      params, x, None, False, {"scale": jnp.float32(1.0)}))


@pytest.mark.parametrize("make", [
    lambda: models.from_linen(NoTrainArg(), 64, hparams={"scale": 1.0}),
    lambda: models.from_nnx(NnxNet, 64, hparams={"scale": 1.0})])
def test_declared_numbers_need_an_hparams_argument(make):
  with pytest.raises(ConfigError, match=r"declares hyperparameters scale but its __call__ has no "
                                        r"`hparams` argument"):
    make()


def test_a_built_in_model_is_built_once_and_anew_when_its_name_gets_another_factory(monkeypatch):
  cfg = lr_jax.ModelConfig(hidden=(8,))
  first = lr_jax.build_model(cfg, 3, (5,))
  assert lr_jax.build_model(cfg, 3, (5,)) is first  # Once per configuration.
  monkeypatch.setitem(lr_jax.models.MODELS, "mlp", lambda c, k, shape: nn.Dense(k))
  other = lr_jax.build_model(cfg, 3, (5,))
  assert set(other.init(jax.random.PRNGKey(0))) == {"kernel", "bias"}
  assert set(first.init(jax.random.PRNGKey(0))) == {"Dense_0", "Dense_1"}
