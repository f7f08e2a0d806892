"""A researcher's own script against the library: user optimizers and models refused in one line.

Every refusal here happens before anything is compiled: at registration, when a sweep is
planned, or at a model's first (abstract) trace. No training program is built.
"""

import functools

import flax.linen as nn
import jax
import optax
import pytest
from flax import nnx

import lr_jax
from lr_jax import engine, finder, optim
from lr_jax.errors import ConfigError

GRID = lr_jax.Grid(learning_rates=(1e-3,), seeds=(0,))


@pytest.fixture
def started():
  """JAX's backends up, as in a notebook that has run anything: a probe runs at registration."""
  jax.devices()


def _one_line(info) -> str:
  message = str(info.value)
  assert "\n" not in message
  return message


# ------------------------------------------------------- 1. a factory that ignores its rate

def _ignores_its_rate(learning_rate):
  del learning_rate
  return optax.adam(1e-3)


def _sgd_momentum_constant(learning_rate, momentum=0.9):
  del learning_rate
  return optax.sgd(0.01, momentum=momentum)


@pytest.mark.parametrize("factory, hparams", [
    (_ignores_its_rate, None),
    (_sgd_momentum_constant, {"momentum": 0.5}),
    # Its own warmup from 0 makes the first update the same at both rates; it never uses them.
    (lambda learning_rate: optax.contrib.schedule_free_adamw(1e-3, warmup_steps=100), None),
], ids=["constant_adam", "constant_sgd_extra_number", "constant_schedule_free_warmup"])
def test_a_factory_that_ignores_its_learning_rate_is_refused_at_registration(
    started, factory, hparams):
  name = f"safety_ignores_{getattr(factory, '__name__', 'x').strip('<>')}"
  with pytest.raises(ConfigError) as info:
    optim.register_optimizer(name, factory, hparams)
  assert _one_line(info) == (
      f"optimizer {name!r} ignores its learning_rate: its update is the same at 0.001 and "
      "0.002; the factory must use the learning_rate it is given (e.g. optax.adam("
      "learning_rate), not a constant)")
  assert name not in optim.OPTIMIZERS


def test_registered_before_jax_starts_it_is_refused_when_a_sweep_is_planned(monkeypatch):
  # At import, before `jax.distributed.initialize`, registering must start no backend: the
  # probe waits for the family's first lookup, which planning makes before loading any data.
  monkeypatch.setattr(optim.register, "_backends_started", lambda: False)
  optim.register_optimizer("safety_deferred", _ignores_its_rate)
  exp = lr_jax.Experiment(optim=lr_jax.OptimConfig(name="safety_deferred"))
  with pytest.raises(ConfigError, match=r"^optimizer 'safety_deferred' ignores its "
                                        r"learning_rate: its update is the same at 0\.001 and "
                                        r"0\.002; ") as info:
    lr_jax.plan_sweep(exp, GRID)
  _one_line(info)
  assert "safety_deferred" not in optim.OPTIMIZERS  # Free again for a factory that uses it.


def _adafactor(learning_rate):
  return optax.adafactor(learning_rate, min_dim_size_to_factor=2)


def _schedule_free(learning_rate):
  return optax.contrib.schedule_free_adamw(learning_rate, b1=0.9)


def _schedule_free_warmup(learning_rate):  # Its first update is at rate 0: the same at both.
  return optax.contrib.schedule_free_adamw(learning_rate, warmup_steps=10)


def _warmup_from_zero(learning_rate):
  return optax.adam(optax.linear_schedule(0.0, learning_rate, 5))


def _plateau_adam(learning_rate, factor):
  return optax.chain(optax.adam(learning_rate),
                     optax.contrib.reduce_on_plateau(factor=factor, patience=1))


def _masked_adamw(learning_rate, weight_decay):
  return optax.adamw(learning_rate, weight_decay=weight_decay,
                     mask=lambda p: jax.tree_util.tree_map(lambda a: a.ndim > 1, p))


def _with_defaults(learning_rate, weight_decay=1e-4, b1=0.9, eps=1e-8):
  return optax.adamw(learning_rate, b1=b1, eps=eps, weight_decay=weight_decay)


USERS = {
    "adafactor": (_adafactor, {}),
    "schedule_free": (_schedule_free,
                      {"eval_params": optax.contrib.schedule_free_eval_params}),
    "schedule_free_warmup": (_schedule_free_warmup, {}),
    "warmup_from_zero": (_warmup_from_zero, {}),
    "plateau": (_plateau_adam, {"fixed": {"factor": 0.5}, "extra_args": lambda loss: {
        "value": loss}}),
    "masked_adamw": (_masked_adamw, {"hparams": {"weight_decay": 1e-4}}),
    # Extra numbers with defaults: one traced, one off at its default, one left to the factory.
    "with_defaults": (_with_defaults, {"hparams": {
        "weight_decay": 1e-4, "b1": optim.HParam(0.9, optim.MOMENTUM, off=0.9)}}),
    "accumulating": (lambda learning_rate: optax.MultiSteps(optax.sgd(learning_rate), 3), {}),
}


def test_every_built_in_family_and_common_user_factories_pass_the_probe(started):
  for name in optim._BUILT_IN:
    optim._check_uses_learning_rate(name, optim.OPTIMIZERS[name])  # No refusal.
  for name, (factory, kwargs) in USERS.items():
    assert optim.register_optimizer(f"safety_{name}", factory, **kwargs) == f"safety_{name}"
    assert optim.OPTIMIZERS[f"safety_{name}"].factory is factory


# -------------------------------------------------------------- 2. registering a name again

def _sgd(learning_rate):
  return optax.sgd(learning_rate)


@pytest.fixture
def compiled(monkeypatch):
  """Stand-ins for the compile caches that key an optimizer by name, each holding a program."""
  # The real caches register their cache_clear with optim (which imports neither module).
  for cache in (engine.programs._compiled, finder._compiled):
    assert cache.cache_clear in optim._ON_REREGISTER
  caches = []
  for _ in range(3):
    cache = functools.lru_cache(maxsize=None)(lambda key: object())
    cache("a program traced with the old optimizer")
    caches.append(cache)
  monkeypatch.setattr(optim.reregister, "_ON_REREGISTER", [c.cache_clear for c in caches])
  return lambda: [c.cache_info().currsize for c in caches]


def test_the_same_function_again_is_accepted_another_needs_overwrite(started, compiled):
  optim.register_optimizer("safety_again", _masked_adamw, {"weight_decay": 1e-4})
  # A notebook cell re-run: the same function, its hooks and defaults re-stated.
  optim.register_optimizer("safety_again", _masked_adamw, {"weight_decay": 1e-4})
  assert compiled() == [1, 1, 1]  # Nothing changed: the compiled programs stay.
  optim.register_optimizer("safety_again", _masked_adamw, {"weight_decay": 1e-3})
  assert optim.OPTIMIZERS["safety_again"].hparams["weight_decay"].default == 1e-3
  assert compiled() == [0, 0, 0]  # Changed: no program traced with the old entry is reused.

  def _masked_adamw_edited(learning_rate, weight_decay):  # The cell's function, edited.
    return optax.adamw(learning_rate, weight_decay=weight_decay)

  with pytest.raises(ConfigError) as info:
    optim.register_optimizer("safety_again", _masked_adamw_edited, {"weight_decay": 1e-4})
  assert _one_line(info) == (
      "optimizer 'safety_again' is already registered to another factory (_masked_adamw); "
      "pass overwrite=True to replace it, or choose a new name")
  assert optim.OPTIMIZERS["safety_again"].factory is _masked_adamw
  optim.register_optimizer("safety_again", _masked_adamw_edited, {"weight_decay": 1e-4},
                           overwrite=True)
  assert optim.OPTIMIZERS["safety_again"].factory is _masked_adamw_edited


def test_overwrite_replaces_no_built_in_family_and_is_a_bool(started):
  with pytest.raises(ConfigError) as info:
    optim.register_optimizer("adam", _sgd, overwrite=True)
  assert "built in" in _one_line(info) and "adam" in str(info.value)
  assert optim.OPTIMIZERS["adam"].factory is optax.adam
  with pytest.raises(ConfigError, match="overwrite must be True or False, got 'yes'"):
    optim.register_optimizer("safety_bool", _sgd, overwrite="yes")


# ----------------------------------------------------------- 3. a convolution on flat rows

class LinenCNN(nn.Module):

  @nn.compact
  def __call__(self, x):
    h = nn.relu(nn.Conv(4, (3, 3))(x))
    return nn.Dense(10)(h.reshape((h.shape[0], -1)))


class NnxCNN(nnx.Module):

  def __init__(self, rngs):
    self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    self.out = nnx.Linear(4 * 64, 10, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.conv(x)).reshape((x.shape[0], -1)))


DIGITS = lr_jax.Experiment(data=lr_jax.DataConfig(dataset="digits"))
IRIS = lr_jax.Experiment(data=lr_jax.DataConfig(dataset="iris"))


def test_a_linen_cnn_given_flat_rows_says_so_at_its_first_trace():
  model = lr_jax.from_linen(LinenCNN(), 64)
  with pytest.raises(ConfigError) as info:  # Its shapes only: nothing runs or compiles.
    jax.eval_shape(model.init, jax.random.PRNGKey(0))
  assert _one_line(info) == (
      "model 'LinenCNN': its Conv layer Conv_0 (kernel_size (3, 3)) needs image-shaped "
      "examples (height, width, channels), it got examples of shape (64,); give from_linen "
      "input_shape=(h, w, c) of that form (e.g. (8, 8, 1) for 8x8 images of one channel), or "
      "use a dense model for flat features")


@pytest.mark.parametrize("model, wrapper", [
    (lambda: lr_jax.from_linen(LinenCNN(), 64), "from_linen"),
    (lambda: lr_jax.from_nnx(NnxCNN), "from_nnx"),
], ids=["linen", "nnx"])
def test_a_user_cnn_on_flat_rows_of_digits_is_told_the_input_shape(model, wrapper):
  with pytest.raises(ConfigError) as info:
    lr_jax.plan_sweep(DIGITS, GRID, model())
  message = _one_line(info)
  assert message.startswith("model ") and "broadcast" not in message
  assert ("fails on inputs of 64 features, the width of the data set 'digits' (10 classes): "
          "its Conv layer") in message
  assert message.endswith("needs image-shaped examples (height, width, channels), it got "
                          f"examples of shape (64,); give {wrapper} input_shape=(8, 8, 1) "
                          "(the data set's feature_shape)")
  lr_jax.plan_sweep(DIGITS, GRID, lr_jax.from_linen(LinenCNN(), (8, 8, 1)))  # That fits.


def test_a_linen_cnn_given_images_without_their_channel_axis_is_refused():
  # Silent before: flax took [B, 8, 8] for one image of B rows and 8 channels, convolving
  # across the batch's examples; every shape fit, so nothing was refused.
  model = lr_jax.from_linen(LinenCNN(), (8, 8))
  with pytest.raises(ConfigError) as info:
    lr_jax.plan_sweep(DIGITS, GRID, model)
  assert _one_line(info) == (
      "model 'LinenCNN' fails on inputs of 64 features, the width of the data set 'digits' (10 "
      "classes): its Conv layer Conv_0 (kernel_size (3, 3)) needs image-shaped examples "
      "(height, width, channels), it got examples of shape (8, 8) (no channel axis: flax would "
      "take the batch for an image axis and convolve across examples); give from_linen "
      "input_shape=(8, 8, 1) (the data set's feature_shape)")


def test_a_cnn_on_a_flat_data_set_is_refused_before_compiling():
  with pytest.raises(ConfigError) as info:
    lr_jax.plan_sweep(IRIS, GRID, lr_jax.from_linen(LinenCNN(), 4))
  assert _one_line(info) == (
      "model 'LinenCNN' fails on inputs of 4 features, the width of the data set 'iris' (3 "
      "classes): its Conv layer Conv_0 (kernel_size (3, 3)) needs image-shaped examples "
      "(height, width, channels), it got examples of shape (4,); the data set has flat "
      "features of shape (4,), which a convolution cannot take: use a dense model (e.g. "
      "lr_jax's mlp)")
  # The built-in cnn too (already refused when it is built).
  with pytest.raises(ConfigError, match=r"'cnn' needs image-shaped features .*\(4,\)") as info:
    lr_jax.plan_sweep(IRIS.replace(model__name="cnn"), GRID)
  _one_line(info)
