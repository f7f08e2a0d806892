"""Tests of lr_jax.models: the Linen and NNX adapters, the built-ins, and user-model checks."""

from __future__ import annotations

import csv
import io
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lr_jax
from lr_jax import models, results
from lr_jax.errors import ConfigError

SMALL = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=100),
    train=lr_jax.TrainConfig(epochs=2, patience=0, chunk_epochs=0))
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
  np.testing.assert_array_equal(out0, model.apply(p0, x, None, True))  # No dropout through NNX.
  assert not np.allclose(out0, model.apply(p1, x, None, False))


def test_build_model_cnn_refuses_flat_features_and_takes_images():
  cfg = lr_jax.ModelConfig(name="cnn", hidden=(4,))
  with pytest.raises(ConfigError, match=r"'cnn' needs image-shaped features .*\(4,\).*mlp, linear"):
    models.build_model(cfg, 3, (4,))
  model = models.build_model(cfg, 10, (8, 8))  # (H, W): one channel added.
  params = model.init(jax.random.PRNGKey(0))
  assert params["Conv_0"]["kernel"].shape == (3, 3, 1, 4)
  assert model.apply(params, jnp.ones((2, 64)), None, False).shape == (2, 10)


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
  # Built for 63 = 7 x 9 features: no width it has (9, 10) takes the place of 64.
  with pytest.raises(ConfigError, match=r"^model 'Broken' fails on inputs of 64 features, the "
                                        r"width of the data set 'digits' \(10 classes\): ") as info:
    lr_jax.plan_sweep(SMALL, GRID, models.from_linen(Broken(), 63))
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
  results.write_outputs(result, str(tmp_path))
  rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
  assert (rows[0]["model"], rows[0]["hidden"]) == ("TwoLayer", "-")
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["config"]["experiments"][0]["model"]["name"] == "TwoLayer"
  table = lr_jax.format_table(result)
  assert "TwoLayer" in table and "mlp" not in table, table
