"""The registries' dynamic numbers: the catalog, an experiment's axes, names, the namespaced tree."""

import inspect
import math

import optax
import pytest

import lr_jax
from lr_jax import hparams, optim
from lr_jax.config import Interval
from lr_jax.errors import ConfigError

INF = math.inf

# Every number issue 11 names: namespace, default, range, off value, integer.
SPEC = {
    "learning_rate": ("optim", 1e-3, Interval(0, INF, "()"), None, False),
    "momentum": ("optim", 0.9, Interval(0, 1, "[)"), None, False),
    "b1": ("optim", 0.9, Interval(0, 1, "[)"), 0.9, False),
    "b2": ("optim", 0.999, Interval(0, 1, "[)"), 0.999, False),
    "eps": ("optim", 1e-8, Interval(0, INF, "()"), 1e-8, False),
    "weight_decay": ("optim", 1e-4, Interval(0, INF, "[)"), None, False),
    "decay": ("optim", 0.9, Interval(0, 1, "[)"), 0.9, False),
    "clip_norm": ("optim", INF, Interval(0, INF, "()"), INF, False),
    "backbone_lr_scale": ("optim", 1.0, Interval(0, INF, "[)"), 1.0, False),
    "layer_lr_decay": ("optim", 1.0, Interval(0, 1, "(]"), 1.0, False),
    "l2sp": ("optim", 0.0, Interval(0, INF, "[)"), 0.0, False),
    "decay_rate": ("schedule", 0.9, Interval(0, INF, "()"), None, False),
    "alpha": ("schedule", 0.0, Interval(0, 1, "[]"), None, False),
    "warmup_fraction": ("schedule", 0.1, Interval(0, 1, "()"), None, False),
    "pct_start": ("schedule", 0.3, Interval(0, 1, "()"), None, False),
    "plateau_factor": ("schedule", 0.1, Interval(0, 1, "()"), None, False),
    "plateau_patience": ("schedule", 10, Interval(1, INF, "[)"), None, True),
    "plateau_cooldown": ("schedule", 0, Interval(0, INF, "[)"), None, True),
    "plateau_min_lr": ("schedule", 0.0, Interval(0, INF, "[)"), None, False),
    "plateau_min_delta": ("schedule", 1e-4, Interval(0, INF, "[)"), None, False),
    "label_smoothing": ("loss", 0.0, Interval(0, 1, "[)"), 0.0, False),
    "dropout_rate": ("model", 0.0, Interval(0, 1, "[)"), 0.0, False),
    "input_noise": ("data", 0.0, Interval(0, INF, "[)"), 0.0, False),
    "shift": ("data", 0, Interval(0, INF, "[)"), 0.0, True),
    "rotate": ("data", 0.0, Interval(0, 180, "[]"), 0.0, False),
    "crop": ("data", 0.0, Interval(0, 1, "[)"), 0.0, False),
    "label_noise": ("data", 0.0, Interval(0, 1, "[)"), 0.0, False),
    "flip": ("data", 0.0, Interval(0, 1, "[]"), 0.0, False),
}


def test_the_catalog_lists_every_number_with_its_namespace_range_and_default():
  table = hparams.catalog()
  assert set(table) == set(SPEC)
  assert list(table)[0] == "learning_rate"
  order = [hparams.NAMESPACES.index(a.namespace) for a in table.values()]
  assert order == sorted(order)  # Grouped by namespace, in NAMESPACES' order.
  for name, (namespace, default, valid, off, integer) in SPEC.items():
    axis = table[name]
    assert (axis.namespace, axis.name) == (namespace, name)
    assert (axis.spec.default, axis.spec.valid, axis.spec.off, axis.spec.integer) == (
        default, valid, off, integer), name
    assert axis.spec.help, name  # Every number has a line for its flag and the README.


@pytest.mark.parametrize("family", ["adam", "adamw", "lamb", "lion", "rmsprop", "adagrad"])
def test_each_family_number_is_optaxs_keyword_with_optaxs_default(family):
  entry = optim.OPTIMIZERS[family]
  params = inspect.signature(entry.factory).parameters
  assert entry.hparams  # Every one of these families has numbers besides the learning rate.
  for name, spec in entry.hparams.items():
    assert spec.default == params[name].default, (family, name)
  assert set(entry.hparams) == {
      "adam": {"b1", "b2", "eps"}, "adamw": {"b1", "b2", "eps", "weight_decay"},
      "lamb": {"b1", "b2", "eps", "weight_decay"}, "lion": {"b1", "b2", "weight_decay"},
      "rmsprop": {"decay", "eps"}, "adagrad": {"eps"}}[family]
  assert optim.OPTIMIZERS["lamb"].hparams["eps"].default == 1e-6  # Not adam's 1e-8.
  assert optim.OPTIMIZERS["lion"].hparams["b2"].default == 0.99


def test_an_experiments_axes_are_its_family_schedule_loss_model_and_data_numbers():
  exp = lr_jax.Experiment(
      model=lr_jax.ModelConfig(dropout=0.25),
      optim=lr_jax.OptimConfig(name="momentum", schedule="warmup_cosine", warmup_fraction=0.2,
                               alpha=0.1, clip_norm=2.0))
  axes = hparams.axes(exp, task="classification", feature_shape=(8, 8, 1))
  assert list(axes) == ["learning_rate", "momentum", "clip_norm", "backbone_lr_scale",
                        "layer_lr_decay", "l2sp", "warmup_fraction", "alpha", "label_smoothing",
                        "dropout_rate", "input_noise", "shift", "rotate", "crop", "flip",
                        "label_noise"]
  # The config fields give the experiment's defaults.
  assert [axes[k].spec.default for k in ("clip_norm", "warmup_fraction", "alpha",
                                          "dropout_rate")] == [2.0, 0.2, 0.1, 0.25]
  assert axes["shift"].spec.valid == Interval(0, 7, "[]")  # min(8, 8) - 1 pixels.
  # Regression: no smoothing, no label noise; flat features: no shift; linear: no dropout.
  flat = hparams.axes(exp.replace(model__name="linear", model__dropout=0.0),
                      task="regression", feature_shape=(13,))
  assert list(flat) == ["learning_rate", "momentum", "clip_norm", "backbone_lr_scale",
                        "layer_lr_decay", "l2sp", "warmup_fraction", "alpha", "input_noise"]
  assert hparams.axes(exp, task="classification", feature_shape=(5, 12, 3))[
      "shift"].spec.valid == Interval(0, 4, "[]")


def test_a_user_models_declared_numbers_are_its_model_axes():
  class UserModel:  # Only `name` and `hparams` are read.
    name = "mine"
    hparams = {"temperature": hparams.HParam(1.0, Interval(0, INF, "()"))}

  axes = hparams.axes(lr_jax.Experiment(), task="regression", feature_shape=(4,),
                      model=UserModel())
  assert axes["temperature"] == hparams.Axis("model", "temperature", UserModel.hparams[
      "temperature"])
  assert "dropout_rate" not in axes


def test_resolve_takes_short_or_qualified_names_and_lists_the_qualified_ones_otherwise():
  known = hparams.axes(lr_jax.Experiment(), task="classification", feature_shape=(8, 8, 1))
  assert hparams.resolve("model.dropout_rate", known) == "dropout_rate"
  assert hparams.resolve("dropout_rate", known) == "dropout_rate"
  for bad in ("dropout", "optim.dropout_rate", "model.b1"):
    with pytest.raises(ConfigError) as e:
      hparams.resolve(bad, known)
    msg = str(e.value)
    assert "\n" not in msg and repr(bad) in msg
    assert "optim.learning_rate, optim.b1" in msg and "model.dropout_rate" in msg


@pytest.mark.parametrize("part,field,value,valid", [
    ("model", "name", "transformer", "mlp"), ("optim", "name", "adamax", "adam"),
    ("optim", "schedule", "linear_warmup", "exponential")])
def test_an_unknown_registry_name_is_refused_when_planned_before_any_data_loads(
    part, field, value, valid, monkeypatch):
  from lr_jax import engine
  monkeypatch.setattr(engine.plan, "_load", lambda *a: pytest.fail("data loaded before the check"))
  exp = lr_jax.Experiment().replace(**{f"{part}__{field}": value})
  with pytest.raises(ConfigError) as e:
    engine.plan_sweep(exp, lr_jax.Grid())
  msg = str(e.value)
  assert "\n" not in msg and repr(value) in msg and valid in msg, msg


@pytest.mark.parametrize("part,field,value,valid", [
    ("model", "dropout", 1.0, "[0, 1)"),
    ("optim", "plateau_factor", 1.0, "(0, 1)"),
    ("optim", "plateau_patience", 0, "[1, inf)"),
    ("optim", "plateau_cooldown", -1, "[0, inf)"),
    ("optim", "alpha", 1.5, "[0, 1]"),
    ("optim", "clip_norm", 0.0, "(0, inf)"),
])
def test_a_config_default_outside_its_numbers_range_is_refused_in_one_line(part, field, value,
                                                                            valid):
  exp = lr_jax.Experiment().replace(**{f"{part}__{field}": value})  # The configs know no registry:
  with pytest.raises(ConfigError) as e:  # planning checks the ranges, before any data loads.
    hparams.check_experiment(exp)
  msg = str(e.value)
  assert "\n" not in msg and field in msg and repr(value) in msg and valid in msg


def test_a_user_optimizer_may_not_take_another_registrys_name():
  with pytest.raises(ConfigError, match="'dropout_rate' is taken"):
    optim.register_optimizer("test_taken", lambda learning_rate, dropout_rate: optax.sgd(
        learning_rate), {"dropout_rate": 0.1})
  assert "test_taken" not in optim.OPTIMIZERS


def test_a_registry_lookup_anywhere_refuses_an_unknown_name_in_one_line():
  # Not only planning: the public builders and a saved model's rebuild look names up too.
  from lr_jax import models
  for call, needle in (
      (lambda: lr_jax.make_optimizer(lr_jax.OptimConfig(name="adamax"), 10), "unknown optimizer"),
      (lambda: lr_jax.make_optimizer(lr_jax.OptimConfig(schedule="nope"), 10), "unknown schedule"),
      (lambda: lr_jax.build_model(lr_jax.ModelConfig(name="transformer"), 10, (64,)),
       "unknown model"),
      (lambda: models.MODELS["transformer"], "valid choices: mlp, linear, cnn")):
    with pytest.raises(ConfigError) as e:
      call()
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
