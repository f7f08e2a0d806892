"""The host shell: chunking under a budget, the budget itself, and one program per signature."""

import functools

import chex
import numpy as np
import pytest

import lr_jax
from lr_jax import engine

EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(train_size=200), model=lr_jax.ModelConfig(hidden=(32,)),
    train=lr_jax.TrainConfig(epochs=4, patience=2, chunk_epochs=2))
GRID = lr_jax.Grid(learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), seeds=(0, 1))


def test_chunking_under_a_memory_budget_does_not_change_results():
  whole = lr_jax.run_sweep(EXP, GRID)
  for budget in (3, 4):  # 2 streams x 1 point, 2 x 2 (padded 5 -> 6 points)
    chunked = lr_jax.run_sweep(EXP, GRID, options=engine.RunOptions(max_variants_per_chunk=budget))
    for k in whole.history:
      np.testing.assert_allclose(chunked.history[k], whole.history[k], rtol=1e-5, atol=1e-7,
                                 err_msg=k)
    np.testing.assert_array_equal(chunked.rows["best_epoch"], whole.rows["best_epoch"])
    np.testing.assert_array_equal(chunked.rows["epochs_run"], whole.rows["epochs_run"])


def test_default_budget_is_the_smaller_of_memory_and_cache(monkeypatch):
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 1e-2, 16), seeds=(0, 1, 2))
  group = engine.plan_sweep(lr_jax.Experiment(), grid)[0]
  trainer = engine._compiled(*engine._compile_key(group))[0]
  budget = functools.partial(engine.default_max_variants, group, trainer)
  monkeypatch.setattr(engine, "_device_memory_bytes", lambda: 2**30)
  monkeypatch.setattr(engine, "_cache_bytes", lambda: 2**40)  # The cache does not bind.
  a, b = budget(fraction=1e-2), budget(fraction=2e-2)
  assert 1 < a and abs(b - 2 * a) <= 1  # Memory binds, linearly in its fraction.
  monkeypatch.setattr(engine, "_cache_bytes", lambda: 2**23)  # An 8 MiB cache binds.
  c = budget(fraction=1e-2)
  monkeypatch.setattr(engine, "_cache_bytes", lambda: 2**24)
  d = budget(fraction=1e-2)
  assert 1 < c < a and abs(d - 2 * c) <= 1


def test_chunks_are_as_even_as_their_count_allows():
  assert [engine._even_chunk(n, most) for n, most in [(256, 21), (16, 7), (3, 21), (7, 7)]] == [
      20, 6, 3, 7]


@pytest.fixture
def traced_once(monkeypatch):
  """Every trainer built from here on raises if its training program is traced twice."""
  real = engine.make_trainer

  def make_trainer(*args, **kwargs):
    trainer = real(*args, **kwargs)
    return trainer._replace(run=chex.assert_max_traces(trainer.run, n=1))

  monkeypatch.setattr(engine, "make_trainer", make_trainer)
  engine._compiled.cache_clear()  # Trainers built by earlier tests are not wrapped.
  chex.clear_trace_counter()
  yield
  engine._compiled.cache_clear()  # Later tests get unwrapped trainers again.
  chex.clear_trace_counter()


def test_new_learning_rates_and_seeds_reuse_the_compiled_program(traced_once):
  # chex counts traces by where the trainer was built, so a program rebuilt for new numbers
  # (a cache keyed by the values, a new jit) raises here as a retrace would.
  exp = EXP.replace(train__epochs=2)
  first = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-3, 2e-3), seeds=(0,)))
  second = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(5e-3, 7e-3), seeds=(1,)))
  assert first.rows["learning_rate"].tolist() != second.rows["learning_rate"].tolist()
  with pytest.raises(AssertionError, match="traced > 1 times"):  # The check itself can fail.
    lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(1e-3, 2e-3, 3e-3), seeds=(0,)))
