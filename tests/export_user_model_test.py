"""A user model out: `from_nnx` and `from_linen` models refit, saved, loaded and predicted with.

One tiny sweep and its refit per model kind (digits, 150 rows, 1 epoch): what is checked is the
model folder -- that a saved user model reloads with the model it was trained with and predicts
exactly as the one in memory, and that `experiments.predict --model_module` does the same --
not accuracy. The refusals read only model.json and import modules: nothing compiles.
"""

import csv
import functools
import json
import os

import flax.linen as nn
import numpy as np
import pytest
from flax import nnx, serialization

import lr_jax
from lr_jax import export

from predict_safety_test import _trained  # tests/ is on sys.path under pytest

TINY = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=150),
    train=lr_jax.TrainConfig(epochs=1, patience=0, batch_size=32))


class Net(nnx.Module):
  """Linear, relu, dropout, linear: an `nnx.List` (integer keys) and rng state beside params."""

  def __init__(self, rngs, hidden=16):
    self.layers = nnx.List([nnx.Linear(64, hidden, rngs=rngs), nnx.Linear(hidden, 10, rngs=rngs)])
    self.dropout = nnx.Dropout(0.1, rngs=rngs)

  def __call__(self, x):
    return self.layers[1](self.dropout(nnx.relu(self.layers[0](x))))


class Mine(nn.Module):

  @nn.compact
  def __call__(self, x):
    return nn.Dense(10)(nn.relu(nn.Dense(16)(x)))


@functools.cache
def make_model() -> lr_jax.Model:
  """The factory --model_module names (`<this module>:make_model`): one Model object, so the
  script's predictions run the program the test's in-memory model runs."""
  return lr_jax.from_nnx(Net)


def not_a_model():
  return {"layers": 2}


NOT_A_FUNCTION = 3


def _refit(model: lr_jax.Model) -> export.TrainedModel:
  """The refit of a one-point sweep: two seeds, so two ensemble members."""
  grid = lr_jax.Grid(learning_rates=(0.03,), seeds=(0, 1))
  return export.refit(lr_jax.run_sweep(TINY, grid, model=model))


@pytest.fixture(scope="module")
def nnx_saved(tmp_path_factory):
  """(the folder of the saved `from_nnx` refit, the refit in memory, raw digits rows)."""
  model = _refit(make_model())
  folder = str(tmp_path_factory.mktemp("nnx") / "model")
  export.save_model(model, folder)  # Raised "can not serialize 'State' object" before.
  x = lr_jax.data.load_dataset(TINY.data).x[:60]
  return folder, model, x


@pytest.fixture(scope="module")
def builtin_saved(tmp_path_factory):
  """The folder of a built-in MLP, saved without training."""
  folder = str(tmp_path_factory.mktemp("builtin") / "model")
  export.save_model(_trained(), folder)
  return folder


def test_a_from_nnx_model_is_saved_as_plain_arrays_and_loads_to_the_same_predictions(nnx_saved):
  folder, model, x = nnx_saved
  with open(os.path.join(folder, "params.msgpack"), "rb") as f:
    members = serialization.msgpack_restore(f.read())["members"]
  # Each member is its nnx.State's pure dict: the Params' values, string keys, no Variables.
  assert sorted(members["0"]["layers"]) == ["0", "1"]
  np.testing.assert_array_equal(members["0"]["layers"]["1"]["kernel"],
                                model.params[0]["layers"][1]["kernel"][...])
  with pytest.raises(lr_jax.ConfigError, match=r"user model 'Net'.*load_model\(path, model="):
    lr_jax.load_model(folder)
  loaded = lr_jax.load_model(folder, model=make_model())
  assert len(loaded.params) == 2 and isinstance(loaded.params[1], nnx.State)
  # The same model and parameter bits: the same program, bitwise by construction.
  np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
  np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_from_nnx_model_of_another_width_is_named_at_load(nnx_saved):
  folder, _, _ = nnx_saved
  wider = lr_jax.from_nnx(lambda rngs: Net(rngs, hidden=32))
  with pytest.raises(lr_jax.ConfigError, match=r"params.msgpack does not match the given model's "
                     r"architecture \(member 0\): expected shape \(32,\) for layers/0/bias, "
                     r"found \(16,\)"):
    lr_jax.load_model(folder, model=wider)


def test_a_from_linen_model_is_saved_and_loads_to_the_same_predictions(tmp_path):
  user = lr_jax.from_linen(Mine(), 64)
  model = _refit(user)
  export.save_model(model, str(tmp_path / "m"))
  loaded = lr_jax.load_model(str(tmp_path / "m"), model=user)
  x = lr_jax.data.load_dataset(TINY.data).x[:60]
  # The same model and parameter bits: the same program, bitwise by construction.
  np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
  np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_load_model_refuses_a_model_given_for_a_built_in_one(builtin_saved):
  with pytest.raises(lr_jax.ConfigError, match=r"holds the built-in model 'mlp', which is "
                     r"rebuilt from model.json; load it without model="):
    lr_jax.load_model(builtin_saved, model=make_model())
  assert export.saved_model_name(builtin_saved) == ("mlp", False)


# ----------------------------------------------------------------------------- the script


def _error_line(code, err):
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
  return lines[0]


def test_predict_with_model_module_writes_the_in_memory_models_predictions(predict, nnx_saved,
                                                                           tmp_path):
  folder, model, x = nnx_saved
  data, out = str(tmp_path / "x.npz"), str(tmp_path / "preds.csv")
  np.savez(data, x=x)
  args = (f"--model={folder}", f"--dataset={data}", f"--out={out}")
  assert predict(*args, f"--model_module={__name__}:make_model") == (0, "")
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert [r["prediction"] for r in rows] == [str(v) for v in model.predict(x).tolist()]
  # The same Model object and parameter bits: the same program, so the same file, digit for digit.
  with open(out) as f:
    assert f.read() == export.predictions_csv(model, x)


def _factories(tmp_path, monkeypatch):
  """A module `user_factories` on sys.path, as a user's would be."""
  (tmp_path / "user_factories.py").write_text("def none():\n  return None\n\nCONSTANT = 3\n")
  monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize("spec, needle", [
    (None, "holds user model 'Net', which cannot be rebuilt from its model.json; give "
           "--model_module=pkg.mod:factory"),
    ("make_model", "--model_module=make_model is not of the form pkg.mod:factory"),
    ("a.b:", "--model_module=a.b: is not of the form pkg.mod:factory"),
    ("no_such_pkg_xyz.mod:make", "--model_module=no_such_pkg_xyz.mod:make: no module named "
                                 "'no_such_pkg_xyz'"),
    ("user_factories:absent", "--model_module=user_factories:absent: module 'user_factories' "
                              "has no 'absent'; give pkg.mod:factory"),
    ("user_factories:CONSTANT", "'CONSTANT' of module 'user_factories' is not a function (its "
                                "type is int); give pkg.mod:factory"),
    ("user_factories:none", "none() returned None, not an lr_jax Model; it must return "
                            "lr_jax.from_linen(...) or lr_jax.from_nnx(...)"),
    (f"{__name__}:not_a_model", "not_a_model() returned an object of type dict, not an lr_jax "
                                "Model"),
])
def test_predict_refuses_a_user_model_folder_without_a_valid_model_module(
    predict, nnx_saved, tmp_path, monkeypatch, spec, needle):
  folder, _, x = nnx_saved
  _factories(tmp_path, monkeypatch)
  data, out = str(tmp_path / "x.npz"), str(tmp_path / "preds.csv")
  np.savez(data, x=x)
  flag = [] if spec is None else [f"--model_module={spec}"]
  line = _error_line(*predict(f"--model={folder}", f"--dataset={data}", f"--out={out}", *flag))
  assert needle in line, line
  assert not os.path.exists(out)


def test_predict_refuses_model_module_for_a_built_in_model(predict, builtin_saved, tmp_path):
  data, out = str(tmp_path / "x.csv"), str(tmp_path / "preds.csv")
  with open(data, "w") as f:
    f.write("a,b,c,d\n1,2,3,4\n")
  line = _error_line(*predict(f"--model={builtin_saved}", f"--dataset={data}", f"--out={out}",
                              f"--model_module={__name__}:make_model"))
  assert line == (f"error: --model_module={__name__}:make_model does not apply: --model "
                  f"{builtin_saved} holds the built-in model 'mlp', which is rebuilt from its "
                  "model.json; drop --model_module")
  assert not os.path.exists(out)
  assert json.load(open(os.path.join(builtin_saved, "model.json")))["user_model"] is None
