"""The package as pip installs it: lr_jax alone, with the `lr-jax` command.

The wheel is built from a copy of the checkout (setuptools' build/ folder of an earlier build
would otherwise slip stale files into it), without the network (`--no-build-isolation`: the
venv's setuptools, a test extra), installed with `pip install --target` into a folder of its
own, and run from there, away from the checkout: its `lr_jax` is imported from that folder, not
from the editable install.
"""

import csv
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from lr_jax import commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1",
       "JAX_PLATFORMS": "cpu"}
_NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", ".venv-*", "__pycache__", "*.egg-info",
                                      ".pytest_cache", ".jax_cache", "build", "dist", "runs",
                                      "out")


def _pip(*args, cwd):
  proc = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "-q"], cwd=cwd,
                        env=ENV, capture_output=True, text=True, timeout=180)
  assert proc.returncode == 0, (f"pip {args[0]} failed (it needs setuptools >= 70.1 in this "
                                f"venv: pip install -e '.[test]'):\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """(the wheel's path, the folder it is installed in, an empty working directory)."""
  base = tmp_path_factory.mktemp("package")
  src, dist, target, work = (base / n for n in ("src", "dist", "target", "work"))
  shutil.copytree(ROOT, src, ignore=_NOT_SOURCES)
  _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src), cwd=base)
  wheels = list(dist.glob("lr_jax-*.whl"))
  assert len(wheels) == 1, wheels
  _pip("install", "--no-deps", "--target", str(target), str(wheels[0]), cwd=base)
  work.mkdir()
  return wheels[0], target, work


def _installed_env(target):
  return {**ENV, "PYTHONPATH": str(target)}  # The installed package only, not the checkout.


def test_the_wheel_holds_lr_jax_and_its_command_only(installed):
  wheel, _, _ = installed
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    info = next(t for t in tops if t.endswith(".dist-info"))
    entry_points = z.read(f"{info}/entry_points.txt").decode()
  assert tops == {"lr_jax", info}, sorted(tops)  # No top-level experiments/ or benchmarks/.
  for module in ("__init__", "__main__", *(m for m, _ in commands.COMMANDS.values())):
    assert f"lr_jax/commands/{module}.py" in names, module
  assert "[console_scripts]\nlr-jax = lr_jax.commands:main" in entry_points, entry_points


def test_the_installed_lr_jax_command_runs_a_sweep(installed):
  _, target, work = installed
  env = _installed_env(target)
  # The same interpreter and path the console script gets: lr_jax comes from the install.
  proc = subprocess.run(
      [sys.executable, "-c", "import lr_jax, lr_jax.commands as c; print(lr_jax.__file__); "
       "print(c.__file__)"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for path in proc.stdout.split():
    assert path.startswith(str(target) + os.sep), (path, target)
  out = work / "out"
  proc = subprocess.run(
      [str(target / "bin" / "lr-jax"), "sweep", "--epochs=1", "--num_lrs=2", "--seeds=1",
       "--train_size=100", "--hidden=8", "--noreport", f"--out={out}"],
      cwd=work, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / "results.csv") as f:
    assert len(list(csv.DictReader(f))) == 2  # 2 learning rates x 1 seed
  assert not os.path.exists(out / "report.md")


def test_an_unknown_command_is_one_line_naming_the_commands_exit_2(installed):
  _, target, work = installed
  proc = subprocess.run([str(target / "bin" / "lr-jax"), "nope"], cwd=work,
                        env=_installed_env(target), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and not proc.stdout
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: unknown command 'nope'"), proc.stderr
  for name in ("sweep", "find", "study", "examples", "predict"):
    assert name in lines[0]


def test_an_installed_commands_help_is_its_scripts(installed):
  _, target, work = installed
  proc = subprocess.run([str(target / "bin" / "lr-jax"), "sweep", "--helpshort"], cwd=work,
                        env=_installed_env(target), capture_output=True, text=True, timeout=120)
  assert proc.returncode == 1, proc.stderr[-3000:]  # absl's exit after help.
  assert proc.stdout.startswith("The main job: a learning-rate sweep"), proc.stdout[:500]
  assert "    lr-jax sweep --optimizer=sgd" in proc.stdout  # Its examples as run here.
  assert "\nlr-jax sweep:\n" in proc.stdout  # Its flags, lr_jax's and its own:
  listed = set(re.findall(r"^  --(?:\[no\])?(\w+):", proc.stdout, re.M))
  assert {"out", "report", "lrs", "seeds", "optimizer", "overwrite", "save_model"} <= listed


def test_the_commands_print_themselves_as_they_were_run(monkeypatch):
  argv = ["lr_sweep.py", "--out=a b", "--noresume", "--seeds=2"]
  assert commands.program("lr_sweep") == "python -m experiments.lr_sweep"  # In a checkout.
  assert commands.resume_command("lr_sweep", argv) == (
      "python -m experiments.lr_sweep '--out=a b' --seeds=2 --resume")
  monkeypatch.setattr(commands, "_invoked", "lr-jax")  # As `commands.main` sets it.
  assert commands.resume_command("lr_sweep", argv) == "lr-jax sweep '--out=a b' --seeds=2 --resume"
  assert commands.command_line("small_data_study", ["x", "--quick"]) == "lr-jax study --quick"
  from lr_jax.commands import predict
  doc = commands.help_text(predict)  # What `lr-jax predict --help` prints.
  assert "lr-jax sweep --train_size=200" in doc and "lr-jax predict --model=" in doc
  assert "experiments" not in doc


def test_the_dispatcher_in_process_help_and_refusals(capsys):
  # What the installed command's tests show from outside, here where coverage sees it.
  with pytest.raises(SystemExit) as exit_help:
    commands.main(["lr-jax", "--help"])
  assert exit_help.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith("usage: lr-jax <command> [--flag=value ...]")
  assert all(f"  {name}" in out for name in commands.COMMANDS)
  for argv, given in ((["lr-jax"], "no command given"), (["lr-jax", "nope"], "unknown command")):
    with pytest.raises(SystemExit) as refused:
      commands.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert refused.value.code == 2 and len(err) == 1 and err[0].startswith(f"error: {given}")


def test_the_lazy_package_lists_its_names_and_refuses_others():
  import lr_jax
  assert {"run_sweep", "Grid", "Experiment", "refit", "load_model"} <= set(dir(lr_jax))
  with pytest.raises(AttributeError, match="module 'lr_jax' has no attribute 'nope'"):
    lr_jax.nope  # pylint: disable=pointless-statement
