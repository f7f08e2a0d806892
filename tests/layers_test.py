"""The house's layers, drawn from the code's own imports: data flows one way.

Every `import` of an lr_jax module, at the top of a file or inside a function, goes to a lower
layer (`LAYERS`, lowest first) — so there are no cycles, and a late import cannot hide one. A
new module gets a layer here, in the same commit that adds it (docs/architecture.md, "Layers").
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = [
    {"errors", "io"},                      # leaves: the error, atomic writes and JSON
    {"config"},                            # frozen experiment dataclasses, no registry
    {"spec", "stats"},                     # HParam and ranges; the statistics of a sweep
    {"data", "models", "optim"},           # data sets and splits; the registries
    {"hparams", "train", "trained", "checkpoint"},  # the catalog; the pure core; a model; state
    {"results"},                           # the result of a sweep
    {"outputs", "report"},                 # output folders; Markdown and figures
    {"engine"},                            # the host shell: plan, compile, run
    {"export", "finder"},                  # refit, save, load; the range test
    {"api", "cli"},                        # the public sweep (nested CV composed); script helpers
    {"study", "transfer"},                 # the small-data study; the fine-tuning experiment
    {"article"},                           # the article's examples
    {"commands"},                          # the `lr-jax` commands (each module of the package)
]


def _layer(module: str) -> int:
  """`lr_jax.commands.lr_sweep` -> the index of its layer ("commands")."""
  short = module.split(".")[1]
  for i, names in enumerate(LAYERS):
    if short in names:
      return i
  raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/layers_test.py")


def _imports() -> dict[str, set[str]]:
  """Module -> the lr_jax modules it imports anywhere in its file (the package face excepted)."""
  modules = {}
  for folder, _, files in os.walk(os.path.join(ROOT, "lr_jax")):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(folder, f)
        parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  edges = {}
  for name, path in modules.items():
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    targets = set()
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        found = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
          up = package.split(".")[:len(package.split(".")) - node.level + 1]
          base = ".".join(up + ([base] if base else []))
        found = [base] + [f"{base}.{a.name}" for a in node.names]
      else:
        continue
      for target in found:
        while target and target not in modules:
          target = target.rpartition(".")[0]
        if target and target not in (name, "lr_jax"):
          targets.add(target)
    edges[name] = targets
  return {k: v for k, v in edges.items() if k != "lr_jax"}


def _against_the_layers(edges: dict[str, set[str]]) -> list[str]:
  """The imports that do not go down: to the same layer or up (a package's own modules, such as
  `commands`', may import one another: their order is the package's business)."""
  bad = []
  for module, targets in sorted(edges.items()):
    for target in sorted(targets):
      same_package = module.split(".")[1] == target.split(".")[1] and (
          module.count(".") > 1 or target.count(".") > 1)
      if _layer(target) >= _layer(module) and not same_package:
        bad.append(f"{module} -> {target}")
  return bad


def test_every_import_goes_down_a_layer():
  bad = _against_the_layers(_imports())
  assert not bad, "imports against the layers (docs/architecture.md, Layers):\n" + "\n".join(bad)


def test_the_contract_sees_an_import_that_runs_back_up():
  # The failure this test exists for, shown once: the engine importing export (as it did for
  # nested cross-validation) or config importing a registry (as its name checks did).
  edges = _imports()
  edges["lr_jax.engine"] = edges["lr_jax.engine"] | {"lr_jax.export"}
  edges["lr_jax.config"] = edges["lr_jax.config"] | {"lr_jax.optim"}
  assert _against_the_layers(edges) == ["lr_jax.config -> lr_jax.optim",
                                        "lr_jax.engine -> lr_jax.export"]
  with pytest.raises(AssertionError, match="lr_jax.newthing has no layer"):
    _against_the_layers({"lr_jax.newthing": {"lr_jax.errors"}})


def test_importing_the_configs_loads_no_jax():
  # A script's flags and a config file need only the dataclasses; jax, flax and optax take ~2 s.
  code = ("import sys, lr_jax, lr_jax.config, lr_jax.errors; "
          "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout
  assert out.strip() == "[]", out


def _cycle(edges: dict[str, set[str]]) -> list[str]:
  """One import cycle (its modules in order), or [] for none."""
  state: dict[str, int] = {}  # 1: on the current path, 2: done.
  path: list[str] = []

  def visit(module: str) -> list[str]:
    state[module] = 1
    path.append(module)
    for target in sorted(edges.get(module, ())):
      if state.get(target) == 1:
        return path[path.index(target):] + [target]
      if target not in state and (found := visit(target)):
        return found
    path.pop()
    state[module] = 2
    return []

  for module in sorted(edges):
    if module not in state and (found := visit(module)):
      return found
  return []


def test_no_import_cycles_inside_a_package_either():
  assert _cycle(_imports()) == []
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
