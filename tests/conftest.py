"""Test-wide settings: strict rank promotion catches silent broadcasting, and XLA compiles fast.

Dtype promotion stays "standard": optax's `inject_hyperparams` state mixes an int32 step count
with float32 hyperparameters inside optax itself, which "strict" refuses.
"""

import os

# One CPU device here; multi-device behaviour is tested in subprocesses (the XLA flag must be
# set before JAX starts).
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The suite's time is compilation (docs/architecture.md). XLA's CPU kernels from its older
# emitters compile ~1 s faster per training program and run ~35% slower, a trade only tests want:
# the suite took 632 s instead of 714-786 s. Set in the environment, so the scripts the tests
# start in subprocesses inherit it. lr_jax itself keeps XLA's default.
# CI also runs the numerical invariants once under the emitters users run
# (LR_JAX_TEST_EMITTERS=default: `make test-invariants`), so a difference between them is seen.
FAST_COMPILE = "--xla_cpu_use_fusion_emitters=false"
if (os.environ.get("LR_JAX_TEST_EMITTERS") != "default"
    and FAST_COMPILE not in os.environ.get("XLA_FLAGS", "")):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


# ---------------------------------------------------------------- what each module compiles
# A test costs what it compiles (docs/architecture.md, "The test suite and its time"). Every
# XLA compilation in the test processes is counted per test, and `make test` prints the sum per
# module. Compilations in the subprocesses a test starts are not seen here.

import collections  # noqa: E402

import pytest  # noqa: E402

from jax import monitoring  # noqa: E402

_COMPILES = {"n": 0, "big": 0, "s": 0.0}
BIG_PROGRAM_S = 0.5  # A training program compiles in 1-3 s; eager jnp ops in milliseconds.


def _on_duration(event: str, seconds: float, **kwargs) -> None:
  if event == "/jax/core/compile/backend_compile_duration":
    _COMPILES["n"] += 1
    _COMPILES["big"] += seconds >= BIG_PROGRAM_S
    _COMPILES["s"] += seconds


monitoring.register_event_duration_secs_listener(_on_duration)


def pytest_runtest_protocol(item, nextitem):
  item.config._lr_jax_before = dict(_COMPILES)


def pytest_runtest_teardown(item, nextitem):
  before = getattr(item.config, "_lr_jax_before", None)
  if before is not None:
    item.user_properties.append(("compiles", {k: _COMPILES[k] - before[k] for k in _COMPILES}))


_BY_MODULE = collections.defaultdict(lambda: {"n": 0, "big": 0, "s": 0.0, "tests": 0})


def pytest_runtest_logreport(report):
  if report.when != "teardown":
    return
  for name, counts in report.user_properties:
    if name == "compiles":
      row = _BY_MODULE[report.nodeid.split("::")[0]]
      row["tests"] += 1
      for k, v in counts.items():
        row[k] += v


def pytest_terminal_summary(terminalreporter):
  if not _BY_MODULE:
    return
  tr = terminalreporter
  tr.section("XLA compilations per module (in the test processes)")
  tr.write_line(f"{'module':<32} {'tests':>5} {'compiles':>8} {'programs>=0.5s':>14} {'compile s':>9}")
  total = {"n": 0, "big": 0, "s": 0.0, "tests": 0}
  for module, row in sorted(_BY_MODULE.items(), key=lambda kv: -kv[1]["s"]):
    tr.write_line(f"{module:<32} {row['tests']:>5} {row['n']:>8} {row['big']:>14} {row['s']:>9.1f}")
    for k in total:
      total[k] += row[k]
  tr.write_line(f"{'all':<32} {total['tests']:>5} {total['n']:>8} {total['big']:>14} "
                f"{total['s']:>9.1f}")


# ------------------------------------------------------------ predict's main, in process


@pytest.fixture
def predict(monkeypatch, capsys):
  """Runs experiments.predict's main in-process with its own flags; returns (exit code,
  stderr). Shared by the predict tests (a data file, a user model, a folder of images)."""
  from absl import flags

  from experiments import predict as script
  fv = flags.FlagValues()  # Its own flags: --model, --dataset and --out are lr_sweep's too.
  script.define_flags(fv)
  monkeypatch.setattr(script, "FLAGS", fv)

  def run(*args):
    fv.unparse_flags()
    fv(["predict", *args])
    code = 0
    try:
      script.main(["predict"])
    except SystemExit as e:
      code = e.code
    return code, capsys.readouterr().err

  return run


# ------------------------------------------------------------ lr_sweep's main, in process


@pytest.fixture
def run_script(monkeypatch, capsys, tmp_path):
  """Runs lr_sweep's main in-process with the given flags; returns (exit code, stderr).

  Reaching the engine fails the test (bad input is refused before anything compiles), and so
  does a refused run that leaves files in --out or in its working directory (an empty, temporary
  one: an empty --out was it).
  """
  from absl import flags

  from experiments import lr_sweep
  from lr_jax import engine

  def must_not_run(*args, **kwargs):
    raise AssertionError("bad input reached the engine")

  monkeypatch.setattr(engine, "run_planned", must_not_run)
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  out = tmp_path / "out"

  def run(*args):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["lr_sweep", f"--out={out}", *args])
    with pytest.raises(SystemExit) as exc:
      lr_sweep.main(["lr_sweep"])
    err = capsys.readouterr().err
    assert not out.exists(), "a refused run left files in --out"
    assert not os.listdir(cwd), f"a refused run wrote into the working directory: {os.listdir(cwd)}"
    return exc.value.code, err

  yield run
  flags.FLAGS.unparse_flags()
