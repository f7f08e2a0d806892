"""The host shell: chunking under a budget, the budget itself, and one program per signature."""

import dataclasses
import functools
import logging
import threading
import types

import chex
import jax
import numpy as np
import pytest

import lr_jax
from lr_jax import engine, hparams

EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(train_size=200), model=lr_jax.ModelConfig(hidden=(32,)),
    train=lr_jax.TrainConfig(epochs=4, patience=2))
GRID = lr_jax.Grid(learning_rates=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), seeds=(0, 1))


def test_chunk_layout_takes_streams_while_they_fit_and_else_one_streams_points():
  assert engine.chunk_layout(3, 16, 21) == (3, 6)  # The default sweep: adjacent lrs together.
  assert engine.chunk_layout(25, 64, 21) == (1, 16)  # Not 13 x 1: one stream's 16 points.
  assert engine.chunk_layout(2, 5, 4) == (2, 2) and engine.chunk_layout(3, 5, 2) == (1, 2)
  assert engine.chunk_layout(25, 64, 21, ndev=4) == (1, 16)
  assert engine.chunk_layout(2, 3, 2, ndev=4) == (2, 4)  # Points padded to the devices.
  assert engine.chunk_layout(30, 1, 21) == (15, 1)


def test_chunking_under_a_memory_budget_does_not_change_results():
  grid = lr_jax.Grid(learning_rates=GRID.learning_rates, seeds=(0, 1, 2))
  whole = lr_jax.run_sweep(EXP, grid)
  for budget in (2, 4):  # 1 stream x 2 points (padded 5 -> 6), 3 streams x 1 point
    chunked = lr_jax.run_sweep(EXP, grid, options=engine.RunOptions(max_variants_per_chunk=budget))
    for k in whole.history:
      np.testing.assert_allclose(chunked.history[k], whole.history[k], rtol=1e-5, atol=1e-7,
                                 err_msg=k)
    # Other widths are other programs; their integer outcomes are exact here because no
    # epoch's val loss comes within 0.5% of the best before it (far above float32 rounding).
    np.testing.assert_array_equal(chunked.rows["best_epoch"], whole.rows["best_epoch"])
    np.testing.assert_array_equal(chunked.rows["epochs_run"], whole.rows["epochs_run"])


def test_default_budget_is_the_smaller_of_memory_and_cache(monkeypatch):
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 1e-2, 16), seeds=(0, 1, 2))
  group = engine.plan_sweep(lr_jax.Experiment(), grid)[0]
  trainer = engine.programs._compiled(*engine.programs._compile_key(group))[0]
  budget = functools.partial(engine.default_max_variants, group, trainer)
  monkeypatch.setattr(engine.chunks, "_device_memory_bytes", lambda: 2**30)
  monkeypatch.setattr(engine.chunks, "_cache_bytes", lambda: 2**40)  # The cache does not bind.
  a, b = budget(fraction=1e-2), budget(fraction=2e-2)
  assert 1 < a and abs(b - 2 * a) <= 1  # Memory binds, linearly in its fraction.
  monkeypatch.setattr(engine.chunks, "_cache_bytes", lambda: 2**23)  # An 8 MiB cache binds.
  c = budget(fraction=1e-2)
  monkeypatch.setattr(engine.chunks, "_cache_bytes", lambda: 2**24)
  d = budget(fraction=1e-2)
  assert 1 < c < a and abs(d - 2 * c) <= 1


def test_chunks_are_as_even_as_their_count_allows():
  even_chunk = engine.chunks._even_chunk
  assert [even_chunk(n, most) for n, most in [(256, 21), (16, 7), (3, 21), (7, 7)]] == [
      20, 6, 3, 7]


@pytest.fixture
def traced_once(monkeypatch):
  """Every trainer built from here on raises if its training program is traced twice."""
  real = engine.programs.make_trainer

  def make_trainer(*args, **kwargs):
    trainer = real(*args, **kwargs)
    return trainer._replace(run=chex.assert_max_traces(trainer.run, n=1))

  monkeypatch.setattr(engine.programs, "make_trainer", make_trainer)
  engine.programs._compiled.cache_clear()  # Trainers built by earlier tests are not wrapped.
  chex.clear_trace_counter()
  yield
  engine.programs._compiled.cache_clear()  # Later tests get unwrapped trainers again.
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


def test_runs_that_differ_only_in_their_budget_share_one_program(traced_once):
  # Epochs, patience, the step cap, min_delta and the divergence factor are traced
  # (`train.Budget`), so the small-data study's
  # three budgets of a cell are one program; each run still keeps to its own budget.
  grid = lr_jax.Grid(learning_rates=(1e-3, 3e-2), seeds=(0,))
  budgets = {"epochs": dict(epochs=4, patience=0), "steps": dict(epochs=6, patience=0, max_steps=9),
             "patience": dict(epochs=6, patience=1),
             # What counts as an improvement and as a divergence: traced too.
             "strict": dict(epochs=6, patience=1, min_delta=10.0),
             "fragile": dict(epochs=4, patience=0, divergence_factor=1.0 + 1e-6)}
  # Without compaction: a narrower population would be a program of its own.
  runs = {name: lr_jax.run_sweep(EXP.replace(**{f"train__{k}": v for k, v in b.items()}), grid,
                                 options=engine.RunOptions(chunk_epochs=2, compact=False))
          for name, b in budgets.items()}
  np.testing.assert_array_equal(runs["epochs"].rows["epochs_run"], [4, 4])
  np.testing.assert_array_equal(runs["steps"].rows["steps_run"], [9, 9])
  rows = runs["patience"].rows
  assert rows["stopped_early"].any()
  assert np.all(rows["stopped_early"] == (rows["epochs_run"] - rows["best_epoch"] == 1))
  assert np.all(rows["stopped_early"] | (rows["epochs_run"] == 6))
  # No loss improves by 10: every run stops after patience 1 from its first epoch.
  np.testing.assert_array_equal(runs["strict"].rows["epochs_run"], [2, 2])
  np.testing.assert_array_equal(runs["strict"].rows["best_epoch"], [1, 1])
  # The larger learning rate's first minibatch losses rise above the initial one: diverged.
  assert runs["fragile"].rows["diverged"].any()
  assert not runs["epochs"].rows["diverged"].any()
  # A schedule whose shape depends on the run's length compiles per length.
  key = lambda exp: engine.programs._compile_key(engine.plan_sweep(exp, grid)[0])
  assert key(EXP) == key(EXP.replace(train__epochs=9, train__patience=0, train__max_steps=5,
                                     train__min_delta=0.5, train__divergence_factor=3.0))
  # The key is an allow-list (`ProgramKey`): a host-only field is not in it.
  assert key(EXP) == key(EXP.replace(train__restore_best=False))
  assert isinstance(key(EXP)[0], engine.programs.ProgramKey)
  cosine = EXP.replace(optim__schedule="cosine")
  assert key(cosine) != key(cosine.replace(train__epochs=9))


ENGINE_PROGRAMS = ("jit(initial_params)", "jit(init)", "jit(run)")


def _compiled_programs(run):
  """(thread name, program name) of every XLA compile while `run()` runs, and its result."""
  seen = []

  def on(event, start, end, fun_name="", **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
      seen.append((threading.current_thread().name, fun_name))

  jax.monitoring.register_event_time_span_listener(on)
  try:
    return run(), seen
  finally:
    jax.monitoring.unregister_event_time_span_listener(on)


def test_programs_built_ahead_compile_once_and_are_the_programs_built_on_demand():
  # A group's first call's program is built in a background thread while the host builds its
  # initializers, the next group's programs while this one trains (`RunOptions.build_ahead`).
  # A call finds a program only if its signature is the call's exactly (shapes, dtypes,
  # placement): else every program would compile twice. Signatures no other test compiles.
  exps = [EXP.replace(model__hidden=(7,)), EXP.replace(model__hidden=(9,))]
  options = engine.RunOptions(compact=False)
  ahead, built = _compiled_programs(lambda: lr_jax.run_sweep(exps, GRID, options=options))
  assert sorted(n for _, n in built if n in ENGINE_PROGRAMS) == sorted(ENGINE_PROGRAMS * 2), built
  runs = [name for name in built if name[1] == "jit(run)"]
  assert runs == [("lr_jax-build-ahead", "jit(run)")] * 2, built
  # The second group's initializers too, while the first group trained.
  assert built.count(("lr_jax-build-ahead", "jit(init)")) == 1, built
  # The second group (all built ahead) again, its programs built on demand: the same bits.
  _clear_program_caches()
  on_demand, demanded = _compiled_programs(lambda: lr_jax.run_sweep(
      exps[1], GRID, options=dataclasses.replace(options, build_ahead=False)))
  assert sorted(n for t, n in demanded if t == "MainThread" and n in ENGINE_PROGRAMS) == sorted(
      ENGINE_PROGRAMS), demanded
  second = np.asarray(ahead.rows["group"]) == 1
  for k in on_demand.history:
    np.testing.assert_array_equal(ahead.history[k][second], on_demand.history[k], err_msg=k)


def _clear_program_caches():
  for cache in (engine.programs._compiled, engine.programs._compiled_init,
                engine.programs._engine_model):
    cache.cache_clear()  # New jitted functions: the same programs would be built again.


def test_a_resumed_run_builds_nothing_ahead_it_does_not_run(tmp_path):
  # A resumed group's first calls are its chunks' (regrouped, perhaps), and a finished one
  # makes none: building its programs ahead would be compile time for nothing.
  exps = [EXP.replace(model__hidden=(11,)), EXP.replace(model__hidden=(13,))]
  options = engine.RunOptions(checkpoint_dir=str(tmp_path), checkpoint_every=1)
  first = lr_jax.run_sweep(exps, GRID, options=options)
  _clear_program_caches()
  again, seen = _compiled_programs(lambda: lr_jax.run_sweep(
      exps, GRID, options=dataclasses.replace(options, resume=True)))
  assert [n for n in seen if n[1] in ENGINE_PROGRAMS] == [], seen
  for k in first.history:
    np.testing.assert_array_equal(again.history[k], first.history[k], err_msg=k)


def test_a_group_whose_build_ahead_fails_is_planned_and_built_on_demand(monkeypatch):
  # Preparing the next group runs while this one trains: its failure must not end this group.
  def fail(*args, **kwargs):
    raise RuntimeError("the build ahead failed")

  monkeypatch.setattr(engine.loop, "_plan_and_build", fail)
  result = lr_jax.run_sweep([EXP, EXP.replace(optim__name="sgd")], GRID)
  assert sorted(set(result.rows["optimizer"])) == ["adam", "sgd"]


# Variants that stop at very different epochs: slow ones run all 12, fast ones stop within a
# few, the largest learning rates diverge in the first epoch.
SPREAD_EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(train_size=200), model=lr_jax.ModelConfig(hidden=(16,)),
    train=lr_jax.TrainConfig(epochs=12, patience=1))
SPREAD_GRID = lr_jax.Grid(learning_rates=lr_jax.log_spaced(1e-4, 3.0, 8), seeds=(0, 1))


def test_compaction_changes_no_row_and_executes_fewer_variant_epochs():
  engine.programs._compiled.cache_clear()
  # Compacted wherever the survivors fit (too small a sweep to pay for it by default).
  on = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID,
                        options=engine.RunOptions(chunk_epochs=2, compile_cost_gflop=0))
  off = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID,
                         options=engine.RunOptions(chunk_epochs=2, compact=False))
  ran = off.rows["epochs_run"]
  assert ran.max() == 12 and ran.min() <= 2 and off.rows["diverged"].any()  # A real spread.
  # Compacted populations are other programs. Their integer outcomes are exact here because
  # the decisions are far from ties: no val loss within 0.3% of the best before it, and the
  # same divergences for any divergence_factor from 5 to 11.
  for k in ("best_epoch", "epochs_run", "steps_run", "diverged", "stopped_early", "pruned"):
    np.testing.assert_array_equal(on.rows[k], off.rows[k], err_msg=k)
  for k in ("best_val_loss", "best_val_accuracy", "final_train_loss"):
    np.testing.assert_allclose(on.rows[k], off.rows[k], rtol=1e-5, atol=1e-7, err_msg=k)
  for k in off.history:
    np.testing.assert_allclose(on.history[k], off.history[k], rtol=1e-5, atol=1e-6, err_msg=k)
  t_on, t_off = on.timings[0], off.timings[0]
  assert t_on["variant_epochs_trained"] == t_off["variant_epochs_trained"] == ran.sum()
  assert t_off["variant_epochs_executed"] == 16 * 12  # The whole chunk, every epoch.
  assert ran.sum() <= t_on["variant_epochs_executed"] < t_off["variant_epochs_executed"]
  # Populations take rows of the chunk's width or narrower ones of `row_widths`, at most a
  # chunk's lanes: a handful of programs. Here the chunk is 2 seeds x 8 points.
  group = engine.plan_sweep(SPREAD_EXP, SPREAD_GRID)[0]
  run = engine.programs._compiled(*engine.programs._compile_key(group))[2]
  assert 2 <= run._cache_size() <= 8


def test_compaction_is_used_only_where_it_pays_for_its_program():
  # By default (50 GFLOP a program) this sweep is far too small to pay for a narrower
  # population, so it runs compact=False's program on the same whole chunks; its first call
  # ends after one epoch, a host round trip that changes no bit (as a resume): the same rows,
  # bit for bit.
  auto = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID, options=engine.RunOptions(chunk_epochs=2))
  off = lr_jax.run_sweep(SPREAD_EXP, SPREAD_GRID,
                         options=engine.RunOptions(chunk_epochs=2, compact=False))
  assert auto.timings[0]["variant_epochs_executed"] == 16 * 12
  for k in off.history:
    np.testing.assert_array_equal(auto.history[k], off.history[k], err_msg=k)
  # Its estimate of a variant's epoch: 6 FLOPs per parameter and training row, 2 per
  # validation row.
  group = engine.plan_sweep(SPREAD_EXP, SPREAD_GRID)[0]
  plan = engine.loop._plan_group(group, 0, engine.RunOptions())
  model = lr_jax.build_model(SPREAD_EXP.model, 10, group.dataset.feature_shape)
  num_params = sum(a.size for a in jax.tree_util.tree_leaves(
      jax.eval_shape(model.init, jax.random.PRNGKey(0))))
  rows = 6 * group.splits.train_idx.shape[1] + 2 * group.splits.val_idx.shape[1]
  assert plan.variant_epoch_flops == num_params * rows


def test_a_lane_costs_a_variant_epoch_over_the_epochs_ahead():
  plan = types.SimpleNamespace(num_epochs=100, patience=5, variant_epoch_flops=1e6)
  assert engine.rounds.lane_flops(plan, 20) == 10 * 1e6  # Twice the patience.
  assert engine.rounds.lane_flops(plan, 97) == 3 * 1e6  # 3 epochs left.
  plan.patience = 0  # No early stopping: every epoch ahead.
  assert engine.rounds.lane_flops(plan, 20) == 80 * 1e6
  # A row's stream costs about a quarter of a lane, shared by its points.
  assert engine.rounds.lane_cost(1) == 1.25 and engine.rounds.lane_cost(16) == 1 + 0.25 / 16


def test_calls_end_at_multiples_of_their_length_and_compacting_the_first_after_one_epoch():
  plan = types.SimpleNamespace(num_epochs=23, call_epochs=5)
  stops = lambda compact: [engine.rounds._stop(plan, e, compact) for e in (0, 1, 5, 7, 20)]
  # Every rung is a multiple of the call's length (`_plan_group`), so a round ends at each.
  assert stops(False) == [5, 5, 10, 10, 23]
  # The first epoch shows most divergences; the survivors regroup after it.
  assert stops(True) == [1, 5, 10, 10, 23]


def test_a_shape_this_run_has_used_costs_nothing_more_and_a_resume_knows_it(tmp_path):
  group = engine.plan_sweep(SPREAD_EXP, SPREAD_GRID)[0]
  options = engine.RunOptions(checkpoint_dir=str(tmp_path))
  plan = engine.loop._plan_group(group, 0, options)
  assert plan.paid == set() and (plan.s_c, plan.h_c) == (2, 8)
  assert engine.rounds._cost(plan, (2, 8), 5e10) == 0.0  # A whole chunk's: always built.
  assert engine.rounds._cost(plan, (4, 4), 5e10) == 5e10
  plan.paid.update({(4, 4), (1, 2)})  # As two calls would.
  assert engine.rounds._cost(plan, (4, 4), 5e10) == 0.0
  assert engine.rounds._cost(plan, (2, 4), 5e10) == 5e10
  engine.checkpoints._save_chunks(plan, {})
  resumed = engine.loop._plan_group(group, 0, dataclasses.replace(options, resume=True))
  assert resumed.paid == {(4, 4), (1, 2)}


def _chunk_with(live):
  """A chunk on the host whose variants `live` ([s_c, h_c] bool) are training."""
  live = np.asarray(live, bool)
  variants = types.SimpleNamespace(stopped=~live, diverged=np.zeros_like(live))
  return types.SimpleNamespace(real=np.ones_like(live), pruned=np.zeros_like(live),
                               state=types.SimpleNamespace(variants=variants), epoch=20)


def _plan(s_c, h_c, blocks, paid=()):
  return types.SimpleNamespace(s_c=s_c, h_c=h_c, ndev=1, num_epochs=100, patience=5,
                               variant_epoch_flops=1e6, paid=set(paid), blocks=blocks)


def test_survivors_keep_their_streams_points_together_in_the_cheapest_populations():
  populations = engine.rounds._populations
  # One stream's 64 points in four chunks of 16 (the 1600-variant sweep's layout).
  plan = _plan(1, 16, [(0, 0), (0, 16), (0, 32), (0, 48)])

  def members(first, last):
    live = np.zeros(64, bool)
    live[first:last] = True
    return [(b, _chunk_with(live[None, 16 * b:16 * b + 16])) for b in range(2)]

  # 16 survivors across two chunks: one row of the chunk's own shape, a program every run has.
  got = populations(plan, members(12, 28), True, 1e12)
  assert [p.shape for p in got] == [(1, 16)] and got[0].write.all()
  np.testing.assert_array_equal(16 * got[0].chunk + got[0].point, np.arange(12, 28)[None])
  # 22 survivors: as rows of 16 (16 and 6) no fewer lanes than the two chunks whole, which is
  # what a new program that costs more than it saves leaves.
  whole = populations(plan, members(10, 32), True, 1e12)
  assert [(p.shape, int(p.write.sum())) for p in whole] == [((1, 16), 6), ((1, 16), 16)]
  # Free programs: the fewest lanes, rows of 8 (2 x 8 and the last row alone: 24 lanes).
  got = populations(plan, members(10, 32), True, 0.0)
  assert [p.shape for p in got] == [(2, 8), (1, 8)]
  # Each row one stream's points in grid order, every survivor written back once.
  np.testing.assert_array_equal(
      np.concatenate([(16 * p.chunk + p.point)[p.write] for p in got]), np.arange(10, 32))
  assert got[1].write.sum() == 6 and got[1].write[0, :6].all()  # 2 padding copies.
  # 24 lanes in rows of 8 (1 + 0.25 / 8 each) instead of 32 in rows of 16 (1 + 0.25 / 16)
  # save 7.75 lanes x 10 epochs x 1 MFLOP: worth two new programs of 20 MFLOP each, not of 50.
  lane_cost = engine.rounds.lane_cost
  assert 32 * lane_cost(16) - 24 * lane_cost(8) == pytest.approx(7.75)
  assert [p.shape for p in populations(plan, members(10, 32), True, 2e7)] == [(2, 8), (1, 8)]
  assert [p.shape for p in populations(plan, members(10, 32), True, 5e7)] == [(1, 16)] * 2
  # Built already: the cheapest way again.
  plan.paid = {(2, 8), (1, 8)}
  assert [p.shape for p in populations(plan, members(10, 32), True, 1e12)] == [(2, 8), (1, 8)]
  assert [p.shape for p in populations(plan, members(10, 32), False, 0.0)] == [(1, 16)] * 2


def test_rows_never_mix_streams_and_lone_survivors_share_a_population():
  # Chunks of 2 streams x 4 points; three streams keep one survivor each, one keeps three.
  plan = _plan(2, 4, [(0, 0), (2, 0)])
  a = _chunk_with([[1, 0, 0, 0], [0, 1, 1, 1]])
  b = _chunk_with([[0, 0, 1, 0], [0, 0, 0, 1]])
  pops = engine.rounds._populations(plan, [(0, a), (1, b)], True, 0.0)
  lanes = sum(p.chunk.size for p in pops)
  assert lanes < 16  # Fewer than the two chunks whole.
  for p in pops:
    stream = np.array([[plan.blocks[b][0] for b in row] for row in p.chunk]) + p.stream
    assert (stream == stream[:, :1]).all()  # A row is one stream.
  written = sorted((int(plan.blocks[c][0] + s), int(pt)) for p in pops
                   for c, s, pt in zip(p.chunk[p.write], p.stream[p.write], p.point[p.write]))
  assert written == [(0, 0), (1, 1), (1, 2), (1, 3), (2, 2), (3, 3)]


def test_survivors_of_several_chunks_continue_together_and_change_no_row():
  # Two chunks of 2 seeds x 4 points, each with slow and fast learning rates: once half of
  # each has stopped, the survivors of both share one compacted call per round (lockstep)
  # instead of a call per chunk, with the rows of one whole uncompacted chunk.
  lrs = lr_jax.log_spaced(1e-4, 3.0, 8)
  grid = lr_jax.Grid(learning_rates=[lrs[i] for i in (0, 7, 1, 6, 2, 5, 3, 4)], seeds=(0, 1))
  whole = lr_jax.run_sweep(SPREAD_EXP, grid, options=engine.RunOptions(chunk_epochs=2, compact=False))
  calls = []
  real_call = engine.rounds._call
  with pytest.MonkeyPatch.context() as m:
    m.setattr(engine.rounds, "_call", lambda plan, pop, *a: (
        calls.append(len(np.unique(pop.chunk))), real_call(plan, pop, *a)))
    split = lr_jax.run_sweep(SPREAD_EXP, grid, options=engine.RunOptions(
        chunk_epochs=2, max_variants_per_chunk=8, compile_cost_gflop=0))
  assert max(calls) == 2  # The survivors of both chunks in one call.
  # Other programs; integer outcomes exact, far from ties (as in the test above).
  for k in ("best_epoch", "epochs_run", "diverged", "stopped_early"):
    np.testing.assert_array_equal(split.rows[k], whole.rows[k], err_msg=k)
  np.testing.assert_allclose(split.rows["best_val_loss"], whole.rows["best_val_loss"],
                             rtol=1e-5, atol=1e-7)
  t = split.timings[0]
  assert t["variant_epochs_trained"] <= t["variant_epochs_executed"] < 16 * 12


def test_rows_are_the_chunks_width_or_powers_of_two_times_the_devices_below_it():
  assert engine.row_widths(16, 1) == [16, 8, 4, 2, 1]
  assert engine.row_widths(6, 1) == [6, 4, 2, 1]
  assert engine.row_widths(16, 4) == [16, 8, 4]
  assert engine.row_widths(4, 4) == [4]


def _chunk(score_SxP, stopped_SxP=None):
  """A chunk of one stream per row whose variants' best monitored values are given."""
  s = np.asarray(score_SxP, np.float32)
  false = np.zeros(s.shape, bool)
  v = types.SimpleNamespace(best_score=s, diverged=false.copy(),
                            stopped=false.copy() if stopped_SxP is None else np.asarray(stopped_SxP))
  return engine.chunks._Chunk(state=types.SimpleNamespace(epoch=np.int32(5), variants=v),
                              history={}, pruned=false.copy(), real=~false)


def test_halving_prunes_the_clearly_worse_and_never_a_point_inside_the_noise_of_the_best():
  # Lower is better. Points: best, noisy (ranks 3rd, not significantly worse than the best),
  # second, and three worse on every stream. eta 3 keeps the best ceil(6 / 3) = 2 by rank.
  score_SxP = np.array([[0.10, 0.00, 0.20, 0.30, 0.40, 0.50],
                        [0.10, 0.05, 0.21, 0.31, 0.41, 0.51],
                        [0.10, 0.60, 0.19, 0.29, 0.39, 0.49]])
  folds_S = np.arange(3)  # One seed per fold: each stream its own unit, as a paired t-test.
  pruned = engine.rounds._halving(_chunk(score_SxP), eta=3, folds_S=folds_S)
  np.testing.assert_array_equal(pruned.any(axis=0), [False, False, False, True, True, True])
  assert pruned[:, 3:].all()  # Every stream of a pruned point.
  # Without the noisy point's protection it would be cut: it is outside the best 2 by rank.
  assert np.argsort(score_SxP.mean(axis=0)).tolist().index(1) == 2
  # A variant that already stopped early stays `stopped_early`, not pruned.
  stopped = np.zeros_like(score_SxP, bool)
  stopped[0, 4] = True
  pruned = engine.rounds._halving(_chunk(score_SxP, stopped), eta=3, folds_S=folds_S)
  assert not pruned[0, 4] and pruned[1:, 4].all()


def test_halving_flags_pruned_rows_ineligible_and_shows_how_far_they_got():
  exp = SPREAD_EXP.replace(train__patience=0, train__epochs=8)
  grid = lr_jax.Grid(learning_rates=(1e-6, 3e-6, 3e-3, 1e-2), seeds=(0, 1))
  options = engine.RunOptions(prune="halving", prune_rungs=(2,), prune_eta=2,
                              compile_cost_gflop=0)
  r = lr_jax.run_sweep(exp, grid, options=options)
  slow = r.rows["learning_rate"] < 1e-5  # Barely moves from init: worse on every seed.
  assert r.rows["pruned"][slow].all() and not r.rows["pruned"][~slow].any()
  np.testing.assert_array_equal(r.rows["epochs_run"][slow], 2)  # Stopped at the first rung.
  assert not r.rows["stopped_early"][slow].any()  # A flag of its own.
  assert np.isnan(r.history["val_loss"][slow][:, 2:]).all()
  for a in r.aggregates:
    assert a["eligible"] == (a["learning_rate"] > 1e-5), a
  assert r.best[0]["learning_rate"] > 1e-5
  assert "pruned 2/2, ineligible" in lr_jax.format_table(r)
  # The rest trained as without pruning (the pruned points changed nothing else).
  plain = lr_jax.run_sweep(exp, grid)
  np.testing.assert_allclose(r.rows["best_val_loss"][~slow], plain.rows["best_val_loss"][~slow],
                             rtol=1e-5)
  assert r.timings[0]["variant_epochs_executed"] < plain.timings[0]["variant_epochs_executed"]


def test_bad_pruning_options_are_refused_in_one_line():
  for kwargs, msg in [({"prune": "hyperband"}, "valid choices: halving, or None"),
                      ({"prune_eta": 1.0}, "prune_eta must be a number > 1"),
                      ({"prune_rungs": (15, 5)}, "must be increasing"),
                      ({"prune_rungs": ()}, "prune_rungs is empty"),
                      ({"prune_rungs": (0,)}, "prune rung must be > 0")]:
    with pytest.raises(lr_jax.ConfigError, match=msg):
      engine.RunOptions(**kwargs)


def test_halving_ranks_every_point_of_the_group_whatever_the_chunks():
  # Chunks of one point each: the chunks run in lockstep, so the rung ranks all four points
  # over both seeds, as one chunk would, and the survivors then share compacted calls.
  exp = SPREAD_EXP.replace(train__patience=0, train__epochs=8)
  grid = lr_jax.Grid(learning_rates=(1e-6, 3e-6, 3e-3, 1e-2), seeds=(0, 1))
  prune = dict(prune="halving", prune_rungs=(2,), prune_eta=2)
  whole = lr_jax.run_sweep(exp, grid, options=engine.RunOptions(**prune))
  split = lr_jax.run_sweep(exp, grid, options=engine.RunOptions(max_variants_per_chunk=2, **prune))
  assert whole.rows["pruned"].sum() == 4
  # Other programs; exact, since the rung's ranking is far from a tie (val loss ~2.56 for the
  # slow points, at most 2.05 for the others) and patience 0 stops nothing.
  np.testing.assert_array_equal(split.rows["pruned"], whole.rows["pruned"])
  np.testing.assert_array_equal(split.rows["epochs_run"], whole.rows["epochs_run"])
  np.testing.assert_allclose(split.rows["best_val_loss"], whole.rows["best_val_loss"], rtol=1e-5)


# ------------------------------------------------------------------ the grid's named numbers

TINY = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=100), model=lr_jax.ModelConfig(hidden=(8,)),
    train=lr_jax.TrainConfig(epochs=2, batch_size=25, patience=0))


def _fail(*args, **kwargs):
  raise AssertionError("bad input reached the data loader or the compiler")


OUT_OF_RANGE = [
    ({}, "model.dropout_rate", 1.0, "dropout_rate 1.0 is outside its valid range [0, 1)"),
    ({}, "label_smoothing", -0.1, "label_smoothing -0.1 is outside its valid range [0, 1)"),
    ({}, "data.input_noise", -1.0, "input_noise -1.0 is outside its valid range [0, inf)"),
    ({}, "shift", -1, "shift -1.0 is outside its valid range [0, inf)"),
    ({"optim__schedule": "plateau"}, "plateau_factor", 1.0,
     "plateau_factor 1.0 is outside its valid range (0, 1)"),
    ({"optim__schedule": "plateau"}, "schedule.plateau_patience", 2.5,
     "plateau_patience 2.5 is not a whole number; valid choices: integers in [1, inf)"),
    ({}, "b1", 1.0, "b1 1.0 is outside its valid range [0, 1)"),
    ({"optim__name": "sgd"}, "b1", 0.5,
     "hyperparameter 'b1' does not apply to optimizer 'sgd'; valid choices: "
     "optim.learning_rate, optim.clip_norm, optim.backbone_lr_scale, optim.layer_lr_decay, "
     "optim.l2sp, loss.label_smoothing"),
    ({}, "warmup_fraction", 0.5, "hyperparameter 'warmup_fraction' does not apply to schedule "
     "'constant'"),
    ({"model__name": "linear", "model__hidden": ()}, "dropout_rate", 0.5,
     "hyperparameter 'dropout_rate' does not apply to model 'linear'"),
]


@pytest.mark.parametrize("changes,name,value,message", OUT_OF_RANGE,
                         ids=[m.split(";")[0] for *_, m in OUT_OF_RANGE])
def test_a_number_outside_its_range_is_refused_in_one_line_before_any_data_loads(
    monkeypatch, changes, name, value, message):
  monkeypatch.setattr(engine.plan, "_load", _fail)
  monkeypatch.setattr(engine.loop, "run_group", _fail)
  with pytest.raises(lr_jax.ConfigError) as e:
    lr_jax.run_sweep(TINY.replace(**changes), lr_jax.Grid(hparams={name: (value,)}))
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_a_number_at_its_off_value_is_accepted_where_it_does_not_apply():
  # Dropout 0 on a linear model, label smoothing 0 on regression data: they change nothing,
  # so a grid shared by several experiments (or --dropout=0) plans without them.
  linear = TINY.replace(model__name="linear", model__hidden=())
  points = engine.grid._points(linear, lr_jax.Grid(hparams={"dropout_rate": (0.0,)}))
  assert list(points) == ["learning_rate"]
  regression = TINY.replace(data__dataset="linear")
  points = engine.grid._points(regression, lr_jax.Grid(hparams={"label_smoothing": (0.0,)}),
                               task="regression", feature_shape=(8,))
  assert "label_smoothing" not in points


def test_learning_rates_are_given_as_such_not_as_a_grid_number():
  with pytest.raises(lr_jax.ConfigError, match=r"Grid\(learning_rates=\.\.\.\)"):
    lr_jax.Grid(hparams={"optim.learning_rate": (0.1,)})


@pytest.mark.parametrize("name", ["dropout", "model.b1", "optim.dropout_rate", "noise"])
def test_a_name_no_registry_declares_is_refused_by_the_grid_listing_the_valid_ones(name):
  with pytest.raises(lr_jax.ConfigError) as e:
    lr_jax.Grid(hparams={name: (0.1,)})
  msg = str(e.value)
  assert f"no hyperparameter {name!r}" in msg and "\n" not in msg
  assert "valid choices: optim.learning_rate, " in msg and "model.dropout_rate" in msg
  assert "data.shift" in msg and "schedule.plateau_factor" in msg


@pytest.mark.parametrize("dataset,given,message", [
    ("iris", 1, "hyperparameter 'shift' does not apply to data of feature shape (4,) "
     "(image-shaped data only: rank >= 2)"),
    ("digits", 8, "shift 8.0 is outside its valid range [0, 7]"),  # 8 x 8 images.
    ("linear", "label_smoothing", "hyperparameter 'label_smoothing' does not apply to "
     "regression data (classification only)"),
    ("linear", "label_noise", "hyperparameter 'label_noise' does not apply to regression data"),
])
def test_a_number_the_data_cannot_take_is_refused_before_compiling(monkeypatch, dataset, given,
                                                                   message):
  # `given`: a shift in pixels, or the name of a number to sweep over (0, 0.1).
  monkeypatch.setattr(engine.loop, "run_group", _fail)
  grid = {"shift": (0, given)} if isinstance(given, int) else {given: (0.0, 0.1)}
  with pytest.raises(lr_jax.ConfigError) as e:
    lr_jax.run_sweep(TINY.replace(data__dataset=dataset, data__train_size=60),
                     lr_jax.Grid(hparams=grid))
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_qualified_and_short_names_plan_the_same_points():
  values = {"dropout_rate": (0.0, 0.2), "b2": (0.99, 0.999), "label_smoothing": (0.0, 0.1),
            "shift": (0, 1)}
  short = lr_jax.Grid(learning_rates=(1e-3, 1e-2), hparams=values)
  qualified = lr_jax.Grid(learning_rates=(1e-3, 1e-2), hparams=[
      (f"{hparams.catalog()[k].namespace}.{k}", v) for k, v in values.items()])
  assert qualified == short
  [a], [b] = engine.plan_sweep(TINY, short), engine.plan_sweep(TINY, qualified)
  assert list(a.points) == list(b.points) == ["learning_rate", "b2", "label_smoothing",
                                              "dropout_rate", "shift"]
  assert len(a.points["learning_rate"]) == 2 ** 5
  for k in a.points:
    np.testing.assert_array_equal(a.points[k], b.points[k])


def test_an_axis_whose_values_are_all_off_is_absent_and_compiles_the_plain_program():
  [plain] = engine.plan_sweep(TINY, lr_jax.Grid())
  assert list(plain.points) == ["learning_rate"]  # adam's b1, b2, eps left to optax.
  off = lr_jax.Grid(hparams={"model.dropout_rate": (0.0,), "label_smoothing": (0.0,),
                             "input_noise": (0,), "b1": (0.9,)})
  [group] = engine.plan_sweep(TINY, off)
  assert list(group.points) == ["learning_rate"]
  assert engine.programs._compile_key(group) == engine.programs._compile_key(plain)
  [on] = engine.plan_sweep(TINY, lr_jax.Grid(hparams={"dropout_rate": (0.0, 0.1)}))
  assert list(on.points) == ["learning_rate", "dropout_rate"]  # 0 beside 0.1: traced too.
  assert engine.programs._compile_key(on) != engine.programs._compile_key(plain)
  # No clipping is the config's default; a grid that lists norms traces them.
  [clipped] = engine.plan_sweep(TINY, lr_jax.Grid(hparams={"clip_norm": (1.0,)}))
  assert clipped.points["clip_norm"].tolist() == [1.0]


def test_config_fields_that_are_only_defaults_share_one_compile_key():
  def plan(**changes):
    return engine.plan_sweep(TINY.replace(**changes), lr_jax.Grid())[0]

  a, b = plan(model__dropout=0.2), plan(model__dropout=0.5)
  np.testing.assert_array_equal(a.points["dropout_rate"], [0.2])
  np.testing.assert_array_equal(b.points["dropout_rate"], [0.5])
  assert engine.programs._compile_key(a) == engine.programs._compile_key(b)
  assert engine.programs._compile_key(plan(model__dropout=0.0)) != engine.programs._compile_key(a)
  schedule = dict(optim__schedule="warmup_cosine")
  c = plan(**schedule, optim__warmup_fraction=0.2, optim__alpha=0.1, optim__clip_norm=1.0)
  d = plan(**schedule, optim__warmup_fraction=0.3, optim__alpha=0.0, optim__clip_norm=5.0)
  assert engine.programs._compile_key(c) == engine.programs._compile_key(d)
  assert c.points["clip_norm"].tolist() == [1.0] and d.points["alpha"].tolist() == [0.0]


def test_a_swept_adam_b1_is_one_compiled_program(traced_once):
  first = lr_jax.run_sweep(TINY, lr_jax.Grid(learning_rates=(1e-2,), hparams={"b1": (0.5, 0.9)}))
  second = lr_jax.run_sweep(TINY, lr_jax.Grid(learning_rates=(1e-2,),
                                              hparams={"optim.b1": (0.9, 0.7)}))
  loss = lambda r, b1: r.rows["best_val_loss"][r.rows["b1"] == b1]
  assert not np.allclose(loss(first, 0.5), loss(first, 0.9), rtol=1e-4)  # b1 is used.
  np.testing.assert_allclose(loss(first, 0.9), loss(second, 0.9), rtol=1e-5)


def test_a_user_models_number_is_named_qualified_and_checked_against_the_model(monkeypatch):
  grid = lr_jax.Grid(hparams={"model.temperature": (0.5, 1.0)})
  assert grid.hparams == (("model.temperature", (0.5, 1.0)),)  # Only the model declares it.
  monkeypatch.setattr(engine.plan, "_load", _fail)
  with pytest.raises(lr_jax.ConfigError, match=r"no hyperparameter 'model.temperature' here; "
                     r"valid choices: optim.learning_rate, optim.b1"):
    engine.plan_sweep(TINY, grid)  # The built-in mlp has no temperature.
