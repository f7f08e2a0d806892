"""The configs, the grid and the sweep's arguments: types, numpy inputs, duplicates, ranges.

Every refusal is one `ConfigError` line naming the field and what it must be, raised before
any data is loaded where the check needs no data, and always before anything is compiled.
"""

import dataclasses
import json
import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags

import lr_jax
from experiments import lr_sweep
from lr_jax import engine, hparams, optim
from lr_jax.config import DataConfig, Experiment, ModelConfig, OptimConfig, TrainConfig

TINY = Experiment(data=DataConfig(dataset="iris", train_size=60),
                  model=ModelConfig(hidden=(8,)),
                  train=TrainConfig(epochs=1, batch_size=16, patience=0))


def _fail(*args, **kwargs):
  raise AssertionError("bad input reached the data loader or the compiler")


@pytest.fixture
def nothing_loads(monkeypatch):
  """Loading data or compiling fails the test: a type or range error must come first."""
  monkeypatch.setattr(engine.plan, "_load", _fail)
  monkeypatch.setattr(engine.loop, "run_group", _fail)


@pytest.fixture
def nothing_compiles(monkeypatch):
  """Compiling fails the test: an error that needs the data's task must come before it."""
  monkeypatch.setattr(engine.loop, "run_group", _fail)


def _refused(build, message):
  with pytest.raises(lr_jax.ConfigError) as e:
    build()
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


# ---------------------------------------------------------------------------------- types

WRONG_TYPES = [
    (lambda: lr_jax.Grid(learning_rates=0.1),
     "Grid.learning_rates must be a sequence of numbers, got float 0.1"),
    (lambda: lr_jax.Grid(learning_rates="0.1"),
     "Grid.learning_rates must be a sequence of numbers, got str '0.1'"),
    (lambda: lr_jax.Grid(seeds=3), "Grid.seeds must be a sequence of integers, got int 3"),
    (lambda: lr_jax.Grid(seeds=(0, 1.5)), "Grid.seeds[1] must be an integer, got float 1.5"),
    (lambda: lr_jax.Grid(seeds=np.zeros((2, 2), int)),
     "Grid.seeds must be a sequence of integers, got ndarray array([[0, 0], [0, 0]])"),
    (lambda: lr_jax.Grid(hparams=("momentum", (0.9,))),
     "Grid.hparams[0] must be a pair (a string, a sequence of numbers), got str 'momentum'"),
    (lambda: ModelConfig(hidden=64),
     "ModelConfig.hidden must be a sequence of integers, got int 64"),
    (lambda: ModelConfig(hidden="64"),
     "ModelConfig.hidden must be a sequence of integers, got str '64'"),
    (lambda: ModelConfig(dropout="0.1"), "ModelConfig.dropout must be a number, got str '0.1'"),
    (lambda: DataConfig(standardize="no"),
     "DataConfig.standardize must be a bool (True or False), got str 'no'"),
    (lambda: DataConfig(train_size=100.0),
     "DataConfig.train_size must be an integer or None, got float 100.0"),
    (lambda: DataConfig(dataset=3),
     "DataConfig.dataset must be a string or a PathLike or a Dataset, got int 3"),
    (lambda: OptimConfig(staircase=1),
     "OptimConfig.staircase must be a bool (True or False), got int 1"),
    (lambda: OptimConfig(schedule="piecewise", boundaries=100, scales=(0.1,)),
     "OptimConfig.boundaries must be a sequence of integers, got int 100"),
    (lambda: TrainConfig(epochs="10"), "TrainConfig.epochs must be an integer, got str '10'"),
    (lambda: TrainConfig(restore_best="yes"),
     "TrainConfig.restore_best must be a bool (True or False), got str 'yes'"),
    (lambda: Experiment(data="digits"), "Experiment.data must be a DataConfig, got str 'digits'"),
    (lambda: Experiment(model=ModelConfig), "Experiment.model must be a ModelConfig, got type"),
    (lambda: lr_jax.RunOptions(resume="no"),
     "RunOptions.resume must be a bool (True or False), got str 'no'"),
    (lambda: lr_jax.RunOptions(max_variants_per_chunk=2.5),
     "RunOptions.max_variants_per_chunk must be an integer or None, got float 2.5"),
    (lambda: Experiment().replace(data__trainsize=100),
     "unknown field 'data__trainsize'; data fields"),
]


@pytest.mark.parametrize("build,message", WRONG_TYPES, ids=[m for _, m in WRONG_TYPES])
def test_a_wrong_type_is_refused_naming_the_field_and_the_type(build, message):
  _refused(build, message)


GRID = lr_jax.Grid(learning_rates=(1e-2,))

WRONG_ARGUMENTS = [
    (lambda: lr_jax.run_sweep("digits", GRID),
     "experiments must be an Experiment or a sequence of Experiments, got str 'digits'"),
    (lambda: lr_jax.plan_sweep("digits", GRID),
     "experiments must be an Experiment or a sequence of Experiments, got str 'digits'"),
    (lambda: lr_jax.run_sweep([TINY, "digits"], GRID),
     "experiments[1] must be an Experiment, got str 'digits'"),
    (lambda: lr_jax.run_sweep(TINY, [0.1, 0.01]), "grid must be a Grid, got list [0.1, 0.01]"),
    (lambda: lr_jax.run_sweep(TINY, GRID, target="0.9"),
     "target must be a number or None, got str '0.9'"),
    (lambda: lr_jax.run_sweep(TINY, GRID, options={"resume": True}),
     "options must be a RunOptions, got dict"),
    (lambda: lr_jax.run_sweep(TINY, GRID, model=nn.Dense(3)), "model must be a Model"),
]


@pytest.mark.parametrize("call,message", WRONG_ARGUMENTS, ids=[m for _, m in WRONG_ARGUMENTS])
def test_a_wrong_argument_to_the_sweep_is_refused_before_any_data_loads(nothing_loads, call,
                                                                        message):
  _refused(call, message)


# ---------------------------------------------------------------------------------- numpy

def test_numpy_inputs_plan_the_same_points_as_python_inputs():
  python = Experiment(
      data=DataConfig(dataset="iris", train_size=60, folds=3, standardize=True),
      model=ModelConfig(hidden=(16, 8), dropout=0.25),
      optim=OptimConfig(name="momentum", schedule="exponential", decay_rate=0.5),
      train=TrainConfig(epochs=3, batch_size=16))
  numpy = Experiment(
      data=DataConfig(dataset=np.str_("iris"), train_size=np.int64(60), folds=np.int64(3),
                      standardize=np.bool_(True)),
      model=ModelConfig(hidden=np.array([16, 8]), dropout=np.float32(0.25)),
      optim=OptimConfig(name="momentum", schedule="exponential", decay_rate=np.float32(0.5)),
      train=TrainConfig(epochs=np.array(3), batch_size=np.int64(16)))
  python_grid = lr_jax.Grid(learning_rates=(1e-3, 1e-2, 0.1), seeds=(0, 1, 2),
                            hparams=(("momentum", (0.5, 0.9)),))
  numpy_grid = lr_jax.Grid(learning_rates=np.array([1e-3, 1e-2, 0.1], np.float32),
                           seeds=np.arange(3), hparams={"momentum": np.array([0.5, 0.9])})
  jax_grid = lr_jax.Grid(learning_rates=jnp.array([1e-3, 1e-2, 0.1]), seeds=jnp.arange(3),
                         hparams=(("momentum", (jnp.float32(0.5), 0.9)),))
  assert numpy == python and hash(numpy) == hash(python)
  assert numpy_grid == python_grid and jax_grid == python_grid
  # Stored as Python numbers: json refuses numpy's integers and float32.
  json.dumps([dataclasses.asdict(numpy), dataclasses.asdict(numpy_grid)])
  [a], [b] = lr_jax.plan_sweep(python, python_grid), lr_jax.plan_sweep(numpy, numpy_grid)
  assert list(a.points) == list(b.points) == ["learning_rate", "momentum", "decay_rate",
                                                   "dropout_rate"]
  for name in a.points:
    np.testing.assert_array_equal(a.points[name], b.points[name])
  np.testing.assert_array_equal(a.seeds, b.seeds)
  np.testing.assert_array_equal(a.folds, b.folds)
  assert len(a.points["learning_rate"]) == 6 and len(a.seeds) == 9  # 3 LRs x 2; 3 seeds x 3 folds
  assert lr_jax.log_spaced(np.float32(1e-4), np.float64(1.0), np.int64(5)) == lr_jax.log_spaced(
      1e-4, 1.0, 5)
  assert engine.check_target(np.float32(0.75)) == 0.75


# ----------------------------------------------------------------------------- duplicates

DUPLICATES = [
    (lambda: lr_jax.Grid(learning_rates=(1e-3, 1e-2, 1e-3)),
     "learning rates must be distinct (a repeated one would be trained twice and counted as "
     "more runs), got 0.001 twice in (0.001, 0.01, 0.001)"),
    (lambda: lr_jax.Grid(learning_rates=(np.float32(1e-3), 1e-3)),
     "got 0.001 twice in (0.001, 0.001)"),
    (lambda: lr_jax.Grid(hparams=(("weight_decay", (0.0, 1e-4, 0.0)),)),
     "weight_decay values must be distinct"),
    (lambda: lr_jax.Grid(hparams=(("momentum", (0.9,)), ("momentum", (0.5,)))),
     "hyperparameter names must be distinct, got 'momentum' twice"),
]


@pytest.mark.parametrize("build,message", DUPLICATES, ids=[m for _, m in DUPLICATES])
def test_a_duplicated_grid_value_is_refused(build, message):
  _refused(build, message)


# --------------------------------------------------------------------------------- ranges

OUT_OF_RANGE = [
    ("momentum", "momentum", 1.0, "momentum 1.0 is outside its valid range [0, 1)"),
    ("nesterov", "momentum", 1.5, "momentum 1.5 is outside its valid range [0, 1)"),
    ("momentum", "momentum", -0.1, "momentum -0.1 is outside its valid range [0, 1)"),
    ("adamw", "weight_decay", -1e-4, "weight_decay -0.0001 is outside its valid range [0, inf)"),
    ("lion", "weight_decay", -1.0, "weight_decay -1.0 is outside its valid range [0, inf)"),
    ("adam", "decay_rate", 0.0, "decay_rate 0.0 is outside its valid range (0, inf)"),
]


@pytest.mark.parametrize("optimizer,name,value,message", OUT_OF_RANGE,
                         ids=[m for *_, m in OUT_OF_RANGE])
def test_a_hyperparameter_outside_its_range_is_refused_before_any_data_loads(
    nothing_loads, optimizer, name, value, message):
  exp = TINY.replace(optim__name=optimizer, optim__schedule="exponential")
  _refused(lambda: lr_jax.run_sweep(exp, lr_jax.Grid(hparams=((name, (value,)),))), message)


def test_the_ends_of_a_range_that_are_in_it_are_planned():
  exp = TINY.replace(optim__name="momentum")
  [group] = lr_jax.plan_sweep(exp, lr_jax.Grid(hparams=(("momentum", (0.0, 0.999)),)))
  np.testing.assert_array_equal(group.points["momentum"], [0.0, 0.999])


def test_every_declared_default_is_in_its_range():
  for name in optim.OPTIMIZERS:
    for schedule in optim.SCHEDULES:
      cfg = OptimConfig(name=name, schedule=schedule, boundaries=(10,), scales=(0.1,))
      for hparam, spec in hparams.hparam_specs(cfg).items():
        # An off default (no clipping: a norm of infinity) is never a grid's value.
        assert spec.default in spec.valid or spec.default == spec.off, (name, schedule, hparam,
                                                                        spec)


UNREACHABLE = [
    ("iris", 2.0, "target 2.0 can never be reached: the validation accuracy of 'iris' "
     "(classification) lies in [0, 1]"),
    ("iris", -0.1, "validation accuracy of 'iris' (classification) lies in [0, 1]"),
    ("linear", -0.5, "target -0.5 can never be reached: the validation loss of 'linear' "
     "(regression) lies in [0, inf)"),
    ("iris", math.nan, "target must be finite, got nan"),
    ("iris", math.inf, "target must be finite, got inf"),
]


@pytest.mark.parametrize("dataset,target,message", UNREACHABLE, ids=[m for *_, m in UNREACHABLE])
def test_an_unreachable_target_is_refused_before_compiling(nothing_compiles, dataset, target,
                                                            message):
  exp = TINY.replace(data__dataset=dataset)
  _refused(lambda: lr_jax.run_sweep(exp, GRID, target=target), message)


def test_a_reachable_regression_target_above_one_is_accepted():
  groups = lr_jax.plan_sweep(TINY.replace(data__dataset="linear"), GRID)
  assert engine.check_target(3, groups) == 3.0


# ------------------------------------------------------------------------- the main script

@pytest.fixture
def main_script(monkeypatch, capsys, tmp_path):
  """Runs lr_sweep's main in-process with the given flags; returns (exit code, stderr)."""
  monkeypatch.setattr(engine.loop, "run_group", _fail)

  def run(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["lr_sweep", f"--out={tmp_path / 'out'}", "--dataset=iris", *args])
    with pytest.raises(SystemExit) as exc:
      lr_sweep.main(["lr_sweep"])
    return exc.value.code, capsys.readouterr().err

  yield run
  flags.FLAGS.unparse_flags()


SCRIPT_CASES = [
    (["--lrs=1e-3,1e-2,1e-3"], ["learning rates must be distinct", "0.001 twice"]),
    (["--optimizer=momentum", "--momentum=1.5"], ["--momentum: 1.5 is outside", "[0, 1)"]),
    (["--optimizer=adamw", "--weight_decay=0,-0.1"], ["--weight_decay: -0.1 is outside", "[0, inf)"]),
    (["--target=2"], ["target 2.0", "[0, 1]"]),
    (["--target=nan"], ["target", "nan"]),
]


@pytest.mark.parametrize("args,needles", SCRIPT_CASES, ids=[" ".join(a) for a, _ in SCRIPT_CASES])
def test_the_script_refuses_with_one_line_and_exit_2(main_script, args, needles):
  code, err = main_script(*args)
  lines = err.strip().splitlines()
  assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
  for needle in needles:
    assert needle in lines[0], (needle, lines[0])
