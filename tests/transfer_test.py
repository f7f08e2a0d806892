"""Fine-tuning: a pretrained start, a new head, the backbone's learning-rate scale traced."""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lr_jax
from lr_jax import models

EXP = lr_jax.Experiment(
    data=lr_jax.DataConfig(dataset="digits", train_size=100),
    model=lr_jax.ModelConfig(hidden=(16,)), optim=lr_jax.OptimConfig(name="adam"),
    train=lr_jax.TrainConfig(epochs=5, batch_size=0, patience=0, restore_best=False))
LR, SEED = 3e-3, 7
RUN = dataclasses.replace(EXP, model=lr_jax.ModelConfig())  # A given model: its own layers.


@functools.lru_cache(maxsize=None)
def _models():
  """The built-in MLP, and it started from other parameters (another key's init, perturbed)."""
  model = lr_jax.build_model(EXP.model, 10, (64,))
  source = jax.tree_util.tree_map(lambda a: np.asarray(a) * 1.5,
                                  model.init(jax.random.PRNGKey(123)))
  return model, source, models.pretrained(model, source, head="last")


@functools.lru_cache(maxsize=None)
def _sweep(scales):
  _, _, start = _models()
  hparams = (("backbone_lr_scale", scales),) if scales else ()
  return lr_jax.run_sweep(RUN, lr_jax.Grid(learning_rates=(LR,), seeds=(SEED,), hparams=hparams),
                          model=start)


def _params(result, row):
  return jax.tree_util.tree_map(np.asarray, result.params_of(row))


def test_the_start_is_the_given_parameters_and_the_seeds_new_head():
  model, source, start = _models()
  key = jax.random.fold_in(jax.random.PRNGKey(SEED), 0)  # The seed's init key (the contract).
  params = start.init(key)
  np.testing.assert_array_equal(params["Dense_0"]["kernel"], source["Dense_0"]["kernel"])
  np.testing.assert_array_equal(params["Dense_1"]["kernel"], model.init(key)["Dense_1"]["kernel"])
  assert models.layer_names(model) == ("Dense_0", "Dense_1")
  assert models.head_layers(model) == ("Dense_1",)
  assert models.layer_depths(model) == {"Dense_1": 0, "Dense_0": 1}


def test_a_frozen_backbone_is_bit_identical_and_its_head_a_hand_written_linear_probe():
  result = _sweep((0.0, 1.0))
  frozen = _params(result, int(np.flatnonzero(result.rows["backbone_lr_scale"] == 0.0)[0]))
  _, source, start = _models()
  for name in ("kernel", "bias"):  # Not one bit moved: its updates are multiplied by 0.
    np.testing.assert_array_equal(frozen["Dense_0"][name], source["Dense_0"][name].astype(np.float32))
  # The same probe by hand: optax's Adam on the head alone, the backbone fixed, full batch.
  dataset = lr_jax.load_dataset(EXP.data)
  splits = lr_jax.make_splits(dataset, EXP.data)
  idx = splits.train_idx[0][splits.train_mask[0]]
  x = jnp.asarray((dataset.x[idx] - splits.mean[0]) / splits.std[0])
  y = jnp.asarray(dataset.y[idx])
  params = start.init(jax.random.fold_in(jax.random.PRNGKey(SEED), 0))
  head, tx = params["Dense_1"], optax.adam(LR)
  state = tx.init(head)

  def loss(head):
    out = start.apply({**params, "Dense_1": head}, x, None, True)
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()

  for _ in range(EXP.train.epochs):
    updates, state = tx.update(jax.grad(loss)(head), state, head)
    head = optax.apply_updates(head, updates)
  for name in ("kernel", "bias"):
    np.testing.assert_allclose(frozen["Dense_1"][name], head[name], rtol=1e-5, atol=1e-6)


def test_a_scale_of_one_is_plain_fine_tuning():
  scaled = _sweep((0.0, 1.0))
  row = int(np.flatnonzero(scaled.rows["backbone_lr_scale"] == 1.0)[0])
  plain = _sweep(())  # Not swept: no scaling code in the program at all.
  np.testing.assert_allclose(scaled.history["train_loss"][row], plain.history["train_loss"][0],
                             rtol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(_params(scaled, row)),
                  jax.tree_util.tree_leaves(_params(plain, 0))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert not np.allclose(_params(scaled, row)["Dense_0"]["kernel"],
                         _params(scaled, 1 - row)["Dense_0"]["kernel"])  # The scale acts.


def test_a_new_scale_traces_nothing(monkeypatch):
  real = lr_jax.engine.programs.make_trainer

  def make_trainer(*args, **kwargs):  # A trainer whose program is traced twice raises.
    trainer = real(*args, **kwargs)
    return trainer._replace(run=chex.assert_max_traces(trainer.run, n=1))

  monkeypatch.setattr(lr_jax.engine.programs, "make_trainer", make_trainer)
  lr_jax.engine.programs._compiled.cache_clear()
  chex.clear_trace_counter()
  try:
    _, _, start = _models()
    for scales in ((0.0, 1.0), (0.1, 0.5)):  # Other values of the traced number.
      lr_jax.run_sweep(RUN, lr_jax.Grid(learning_rates=(LR,), seeds=(SEED,),
                                        hparams=(("backbone_lr_scale", scales),)), model=start)
  finally:
    lr_jax.engine.programs._compiled.cache_clear()
    chex.clear_trace_counter()


def test_layer_decay_scales_each_layer_below_the_head_and_l2sp_pulls_to_the_start():
  _, source, start = _models()
  grid = lr_jax.Grid(learning_rates=(LR,), seeds=(SEED,),
                     hparams=(("layer_lr_decay", (1.0, 1e-6)), ("l2sp", (0.0, 1e3))))
  result = lr_jax.run_sweep(RUN, grid, model=start)
  row = {(d, s): i for i, (d, s) in enumerate(zip(result.rows["layer_lr_decay"],
                                                  result.rows["l2sp"]))}
  moved = lambda r: np.abs(_params(result, r)["Dense_0"]["kernel"] - source["Dense_0"]["kernel"]).max()
  assert moved(row[1e-6, 0.0]) < 1e-5 * moved(row[1.0, 0.0])  # Decay 1e-6: barely moves.
  assert moved(row[1.0, 1e3]) < 0.5 * moved(row[1.0, 0.0])  # L2-SP: held near the start.


def test_a_shape_that_does_not_fit_is_one_line_naming_both_shapes():
  model, source, _ = _models()
  other = lr_jax.build_model(EXP.model.__class__(hidden=(8,)), 10, (64,))
  with pytest.raises(lr_jax.ConfigError,
                     match=r"^pretrained Dense_0/bias has shape \(16,\), model 'MLP' has \(8,\)"):
    models.pretrained(other, source)
  wide_head = lr_jax.build_model(EXP.model, 3, (64,))  # Three classes: the head is new.
  assert models.pretrained(wide_head, source).init(jax.random.PRNGKey(0))["Dense_1"]["kernel"].shape == (16, 3)
  with pytest.raises(lr_jax.ConfigError, match=r"head 'Dense_9' matches no layer; valid choices: Dense_0, Dense_1"):
    models.pretrained(model, source, head="Dense_9")


def test_read_params_reads_a_model_folder_a_flax_msgpack_file_and_an_orbax_checkpoint(tmp_path):
  import orbax.checkpoint as ocp
  from flax import serialization
  model, source, _ = _models()
  want = jax.tree_util.tree_map(np.float32, source)
  (tmp_path / "w.msgpack").write_bytes(serialization.to_bytes({"params": want}))  # A TrainState's.
  ocp.PyTreeCheckpointer().save(str(tmp_path / "orbax"), want)
  for path in (tmp_path / "w.msgpack", tmp_path / "orbax"):  # Each the same tree.
    got = lr_jax.models.read_params(str(path))
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
    start = models.pretrained(model, got, head=None).init(jax.random.PRNGKey(0))
    jax.tree_util.tree_map(np.testing.assert_array_equal, start, want)
  with pytest.raises(lr_jax.ConfigError, match=r"do not exist"):
    lr_jax.models.read_params(str(tmp_path / "nothing"))
  (tmp_path / "junk.bin").write_bytes(b"\x00\x01junk")
  with pytest.raises(lr_jax.ConfigError, match=r"^'.*junk\.bin' is not a Flax msgpack file"):
    lr_jax.models.read_params(str(tmp_path / "junk.bin"))


def test_a_saved_models_parameters_start_a_sweep(tmp_path):
  # save_model's folder -> read_params -> pretrained: the start is the saved member, bit for bit.
  result = _sweep(())
  refit = lr_jax.refit(result)  # One member: the sweep had one seed.
  lr_jax.save_model(refit, str(tmp_path / "model"))
  saved = lr_jax.models.read_params(str(tmp_path / "model"))
  jax.tree_util.tree_map(np.testing.assert_array_equal, saved,
                         jax.tree_util.tree_map(np.asarray, refit.params[0]))
  model, _, _ = _models()
  start = models.pretrained(model, saved, head=None).init(jax.random.PRNGKey(1))
  jax.tree_util.tree_map(np.testing.assert_array_equal, start, saved)
  with pytest.raises(lr_jax.ConfigError, match=r"has 1 member\(s\); valid: member in 0..0"):
    lr_jax.models.read_params(str(tmp_path / "model"), member=1)


def test_a_built_in_model_starts_from_init_from_and_reloads_without_it(tmp_path):
  from flax import serialization
  _, source, _ = _models()
  path = tmp_path / "start.msgpack"
  path.write_bytes(serialization.to_bytes(source))
  exp = EXP.replace(model__init_from=str(path), model__head="last")
  result = lr_jax.run_sweep(exp, lr_jax.Grid(learning_rates=(LR,), seeds=(SEED,),
                                             hparams=(("backbone_lr_scale", (0.0,)),)))
  np.testing.assert_array_equal(_params(result, 0)["Dense_0"]["kernel"],
                                source["Dense_0"]["kernel"].astype(np.float32))
  # A saved fine-tuned model reloads from its own folder, without the start's file.
  lr_jax.save_model(lr_jax.refit(result), str(tmp_path / "model"))
  path.unlink()
  x = lr_jax.load_dataset(EXP.data).x[:5]
  assert lr_jax.load_model(str(tmp_path / "model")).predict(x).shape == (5,)
  with pytest.raises(lr_jax.ConfigError, match=r"head 'a\(' is not a regular expression"):
    lr_jax.ModelConfig(head="a(")
  from lr_jax.config import unused_fields
  assert "head" in unused_fields(lr_jax.ModelConfig(head="last"))  # Without a start.
  assert "head" not in unused_fields(lr_jax.ModelConfig(init_from=str(path), head="last"))


def test_the_flags_take_a_start_and_refuse_head_without_one(run_script):
  code, err = run_script("--head=last")
  assert code == 2 and "--head" in err and "init_from" in err and len(err.strip().splitlines()) == 1, err


def test_a_head_pattern_makes_those_layers_the_head_the_rest_learns_at_the_scale():
  # A three-layer MLP whose head is its last two layers (a regular expression of their names):
  # a frozen backbone is the first layer alone; the seed initializes both head layers anew.
  cfg = lr_jax.ModelConfig(hidden=(16, 8))
  model = lr_jax.build_model(cfg, 10, (64,))
  assert models.layer_depths(models.with_head(model, "Dense_[12]")) == {
      "Dense_2": 0, "Dense_1": 0, "Dense_0": 1}
  source = jax.tree_util.tree_map(np.asarray, model.init(jax.random.PRNGKey(9)))
  start = models.pretrained(model, source, head="Dense_[12]")
  result = lr_jax.run_sweep(RUN, lr_jax.Grid(learning_rates=(LR,), seeds=(SEED,),
                                             hparams=(("backbone_lr_scale", (0.0,)),)),
                            model=start)
  trained = _params(result, 0)
  np.testing.assert_array_equal(trained["Dense_0"]["kernel"], source["Dense_0"]["kernel"])
  assert not np.allclose(trained["Dense_1"]["kernel"], source["Dense_1"]["kernel"])
  with pytest.raises(lr_jax.ConfigError, match=r"head 'Conv.*' matches no layer; valid choices: "
                                               r"Dense_0, Dense_1, Dense_2"):
    models.with_head(model, "Conv.*")


def test_a_head_function_of_leaf_paths_splits_a_layer_between_head_and_backbone():
  # The head is every bias and the last layer (a function of the leaf's path text): a frozen
  # backbone leaves the hidden layers' kernels bit for bit, while their biases learn; the
  # seed initializes exactly the leaves the function picks anew.
  cfg = lr_jax.ModelConfig(hidden=(16, 8))
  model = lr_jax.build_model(cfg, 10, (64,))
  head = lambda path: path.endswith("/bias") or path.startswith("Dense_2/")
  assert models.leaf_paths(model) == ("Dense_0/bias", "Dense_0/kernel", "Dense_1/bias",
                                      "Dense_1/kernel", "Dense_2/bias", "Dense_2/kernel")
  with_head = models.with_head(model, head)
  assert models.head_layers(with_head) == ("Dense_2",)  # The only layer wholly in it.
  assert models.layer_depths(with_head) == {"Dense_2": 0, "Dense_1": 1, "Dense_0": 2}
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
  assert models.depth_of_leaves(models.leaf_depths(with_head), shapes) == {
      "Dense_0": {"bias": 0, "kernel": 2}, "Dense_1": {"bias": 0, "kernel": 1},
      "Dense_2": {"bias": 0, "kernel": 0}}
  source = jax.tree_util.tree_map(np.asarray, model.init(jax.random.PRNGKey(9)))
  start = models.pretrained(model, source, head=head)
  key = jax.random.fold_in(jax.random.PRNGKey(SEED), 0)
  init = start.init(key)
  np.testing.assert_array_equal(init["Dense_1"]["kernel"], source["Dense_1"]["kernel"])
  np.testing.assert_array_equal(init["Dense_2"]["kernel"], model.init(key)["Dense_2"]["kernel"])
  result = lr_jax.run_sweep(RUN, lr_jax.Grid(learning_rates=(LR,), seeds=(SEED,),
                                             hparams=(("backbone_lr_scale", (0.0,)),)),
                            model=start)
  trained = _params(result, 0)
  for layer in ("Dense_0", "Dense_1"):
    np.testing.assert_array_equal(trained[layer]["kernel"], source[layer]["kernel"])
    assert not np.allclose(trained[layer]["bias"], init[layer]["bias"])
  with pytest.raises(lr_jax.ConfigError, match=r"picks no parameter; valid: a function true "
                                               r"for some of Dense_0/bias"):
    models.with_head(model, lambda path: path.startswith("Conv"))


def test_a_frozen_backbone_alone_skips_its_backward_pass_and_its_optimizer_state():
  # Every point at scale 0 (a linear probe alone): the program takes the backbone as a
  # constant and keeps Adam's moments for the head only; it trains as the scale-0 variant of
  # a mixed sweep does (two programs: float32 rounding) and leaves the backbone bit for bit.
  from lr_jax.train import make_trainer
  _, source, start = _models()
  alone = lr_jax.run_sweep(RUN, lr_jax.Grid(learning_rates=(LR,), seeds=(SEED,),
                                            hparams=(("backbone_lr_scale", (0.0,)),)),
                           model=start)
  mixed = _sweep((0.0, 1.0))
  row = int(np.flatnonzero(mixed.rows["backbone_lr_scale"] == 0.0)[0])
  np.testing.assert_allclose(alone.history["train_loss"][0], mixed.history["train_loss"][row],
                             rtol=1e-5)
  np.testing.assert_array_equal(_params(alone, 0)["Dense_0"]["kernel"],
                                source["Dense_0"]["kernel"].astype(np.float32))
  state_size, flops = {}, {}
  hp = lr_jax.train.hparams_tree(optim={"learning_rate": jnp.float32(LR),
                                        "backbone_lr_scale": jnp.float32(0.0)})
  x_BxD, y_B, w_B = jnp.zeros((80, 64)), jnp.zeros(80, jnp.int32), jnp.ones(80)
  for frozen in (False, True):
    rules = make_trainer(RUN, start, task="classification", n_max=80,
                         frozen_backbone=frozen).rules
    v = lr_jax.train.init_variant(rules, hp, start.init(jax.random.PRNGKey(0)),
                                  jnp.float32(1.0))
    state_size[frozen] = sum(x.size for x in jax.tree_util.tree_leaves(v.opt_state))
    step = jax.jit(functools.partial(lr_jax.train.train_step, rules, max_steps=0,
                                     divergence_factor=10.0))
    cost = step.lower(v, hp, x_BxD, y_B, w_B, jax.random.PRNGKey(0)).compile().cost_analysis()
    flops[frozen] = (cost[0] if isinstance(cost, list) else cost)["flops"]
  head = 16 * 10 + 10
  assert state_size[True] < 3 * head + 10 < state_size[False]  # Moments of the head alone.
  assert flops[True] < 0.7 * flops[False], flops  # No backward pass through the backbone.


def test_a_model_without_layers_refuses_the_fine_tuning_numbers_before_compiling(monkeypatch):
  # Parameters that are not a mapping of layers (a bare array): nothing to call a backbone.
  bare = lr_jax.Model(init=lambda key: jnp.zeros((64, 10), jnp.float32),
                      apply=lambda p, x, key, train: x @ p)
  monkeypatch.setattr(lr_jax.engine.loop, "run_group", None)  # Reaching it would fail.
  with pytest.raises(lr_jax.ConfigError, match=r"^backbone_lr_scale needs a model whose parameters "
                                               r"are a mapping of layers"):
    lr_jax.run_sweep(RUN, lr_jax.Grid(learning_rates=(LR,), hparams=(
        ("backbone_lr_scale", (0.0, 1.0)),)), model=bare)
