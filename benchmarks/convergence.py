r"""Convergence speed: how fast each optimizer and learning rate reaches a validation accuracy.

    python -m benchmarks.convergence --out runs/benchmarks/convergence        # a few minutes
    python -m benchmarks.convergence --quick --out /tmp/convergence           # checks it runs

For each optimizer (sgd, momentum, adam, rmsprop) over a log-spaced learning-rate grid, on
digits with an MLP(128), batch 32, no early stopping, every seed in one `lr_jax.run_sweep`:
epochs and optimizer steps to reach --target validation accuracy (mean over the seeds that
reach it), the estimated wall time to target, and the best validation accuracy. The same for
the article's three configurations:

  A  MLP(128), Adam, lr 1e-4, 100 epochs.
  B  MLP(64), RMSprop, lr 1e-3, 50 epochs, early stopping with patience 5 (val_loss).
  C  MLP(128), Adam, lr 1e-3 with exponential decay (1000 steps, rate 0.9), 50 epochs.

Wall time to target is an estimate: every variant of a compile group trains in one program, so
a variant has no wall time of its own. It is the group's measured wall time per epoch (a second,
compiled run of the whole group divided by the epochs its loop ran) times the variant's epochs
to target: how long the sweep takes to get that variant there.

Writes convergence.json, convergence.csv (one row per optimizer or configuration and learning
rate), convergence.md (the tables, between the markers of benchmarks/BENCHMARKS.md; --fill_doc
pastes them there) and convergence.png (epochs to target against learning rate) into --out.
"""

from __future__ import annotations

import math
import os
import shutil
import time

from absl import app, flags

import benchmarks
from benchmarks import fmt, markdown_table

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
ARTICLES = ("A", "B", "C")

flags.DEFINE_string("out", "runs/benchmarks/convergence", "Output folder.")
flags.DEFINE_bool("quick", False, "A short run that checks the script works: adam, 2 learning "
                  "rates, 1 seed, 1 epoch, article B; its numbers mean nothing.")
flags.DEFINE_list("optimizers", list(OPTIMIZERS), "Optimizer families to sweep.")
flags.DEFINE_list("articles", list(ARTICLES), "Article configurations to run (A, B, C).")
flags.DEFINE_float("lr_min", 1e-4, "Smallest learning rate of the grid.")
flags.DEFINE_float("lr_max", 1.0, "Largest learning rate of the grid.")
flags.DEFINE_integer("num_lrs", 13, "Learning rates, log-spaced (13 = 4 per decade over 1e-4..1).")
flags.DEFINE_integer("seeds", 3, "Training seeds per learning rate.")
flags.DEFINE_integer("epochs", 50, "Epochs of the optimizer sweeps (no early stopping).")
flags.DEFINE_integer("max_epochs", None,
                     "Cap on every run's epochs, the articles' too (--quick: 2).")
flags.DEFINE_float("target", 0.95, "Validation accuracy to reach.")
flags.DEFINE_bool("fill_doc", False, "Paste the tables into benchmarks/BENCHMARKS.md's markers.")
FLAGS = flags.FLAGS


def article_experiments(max_epochs: int | None):
  """The article's configurations: name -> (description, Experiment, learning rate)."""
  import lr_jax
  exponential = {"schedule": "exponential", "decay_steps": 1000, "decay_rate": 0.9}
  # name: (description, hidden width, optimizer, schedule fields, epochs, patience, lr)
  table = {
      "A": ("MLP(128), Adam 1e-4", 128, "adam", {}, 100, 0, 1e-4),
      "B": ("MLP(64), RMSprop 1e-3, patience 5", 64, "rmsprop", {}, 50, 5, 1e-3),
      "C": ("MLP(128), Adam 1e-3 x 0.9^(step/1000)", 128, "adam", exponential, 50, 0, 1e-3),
  }
  out = {}
  for name, (what, width, optimizer, schedule, epochs, patience, lr) in table.items():
    run = min(epochs, max_epochs) if max_epochs else epochs
    what += f", {epochs} epochs" + (f" (capped at {run})" if run < epochs else "")
    out[name] = (what, lr_jax.Experiment(
        model=lr_jax.ModelConfig(name="mlp", hidden=(width,)),
        optim=lr_jax.OptimConfig(name=optimizer, **schedule),
        train=lr_jax.TrainConfig(epochs=run, patience=patience)), lr)
  return out


def sweep_experiment(optimizer: str, epochs: int):
  """An optimizer's learning-rate sweep: MLP(128) on digits, batch 32, no early stopping."""
  import lr_jax
  return lr_jax.Experiment(
      model=lr_jax.ModelConfig(name="mlp", hidden=(128,)), optim=lr_jax.OptimConfig(name=optimizer),
      train=lr_jax.TrainConfig(epochs=epochs, batch_size=32, patience=0))


def measure(experiment, grid, target: float) -> dict:
  """Runs one compile group twice (compile, then timed) and summarizes each grid point.

  Returns:
    `points` (one dict per learning rate: epochs, steps and estimated wall time to target,
    best validation accuracy), `wall_s` of the timed run, `loop_epochs`, `s_per_epoch`,
    `first_s` (compile included) and the group's `variants`.
  """
  import lr_jax
  t0 = time.perf_counter()
  lr_jax.run_sweep(experiment, grid, target=target)
  first = time.perf_counter() - t0
  t0 = time.perf_counter()
  result = lr_jax.run_sweep(experiment, grid, target=target)
  wall = time.perf_counter() - t0
  # The loop runs while any variant trains: its epochs are the longest variant's.
  loop_epochs = int(result.rows["epochs_run"].max())
  per_epoch = wall / max(loop_epochs, 1)
  points = []
  for a in result.aggregates:
    reached = a["reached_target"]
    epochs = a["mean_epochs_to_target"] if reached else math.nan
    points.append({
        "learning_rate": a["learning_rate"], "seeds": a["n_total"], "reached": reached,
        "epochs_to_target": epochs, "steps_to_target": a["mean_steps_to_target"] if reached
        else math.nan, "wall_to_target_s": per_epoch * epochs,
        "best_val_accuracy": a["mean"], "best_val_accuracy_std": a["std"],
        "epochs_run": a["mean_epochs_run"], "diverged": a["diverged"]})
  return {"points": points, "wall_s": wall, "first_s": first, "loop_epochs": loop_epochs,
          "s_per_epoch": per_epoch, "variants": result.num_variants,
          "steps_per_epoch": _steps_per_epoch(result)}


def _steps_per_epoch(result) -> int | None:
  rows = result.rows
  for steps, epochs in zip(rows["steps_to_target"], rows["epochs_to_target"]):
    if epochs > 0:
      return int(steps // epochs)
  return None


def _reached(p: dict) -> str:
  return f"{p['reached']}/{p['seeds']}"


def _acc(p: dict) -> str:
  if not math.isfinite(p["best_val_accuracy"]):
    return "-"
  if not math.isfinite(p["best_val_accuracy_std"]):  # One run: no spread to show.
    return f"{p['best_val_accuracy']:.4f}, n=1"
  return f"{p['best_val_accuracy']:.4f} ± {p['best_val_accuracy_std']:.4f}"


def report(cfg: dict, result: dict) -> dict[str, str]:
  """The Markdown sections (named as the markers of BENCHMARKS.md)."""
  noise = ("**Quick mode: a few epochs, 1 seed; these numbers only show that the script "
           "runs.**\n\n" if cfg["quick"] else "")
  head = (f"target: validation accuracy >= {cfg['target']}; epochs/steps to target are means "
          "over the seeds that reached it; wall to target = the group's measured wall time per "
          "epoch x epochs to target (an estimate).\n\n")
  rows = []
  for name, group in result["optimizers"].items():
    for p in group["points"]:
      rows.append([name, fmt(p["learning_rate"]), _reached(p), fmt(p["epochs_to_target"]),
                   fmt(p["steps_to_target"]), fmt(p["wall_to_target_s"]), _acc(p),
                   p["diverged"]])
  sections = {"convergence:optimizers": noise + head + markdown_table(
      ["optimizer", "lr", "reached", "epochs to target", "steps to target",
       "wall to target (s, est.)", "best val acc (mean ± std)", "diverged"], rows)}

  summary = []
  for name, group in result["optimizers"].items():
    # A learning rate where a seed diverged is no recommendation, however fast it got there.
    fastest = min((p for p in group["points"] if p["reached"] == p["seeds"] and not p["diverged"]),
                  key=lambda p: p["epochs_to_target"], default=None)
    best = max((p for p in group["points"] if math.isfinite(p["best_val_accuracy"])
                and not p["diverged"]), key=lambda p: p["best_val_accuracy"], default=None)
    summary.append([
        name, group["variants"], fmt(group["s_per_epoch"]),
        f"{fmt(fastest['learning_rate'])} ({fmt(fastest['epochs_to_target'])} epochs, "
        f"{fmt(fastest['wall_to_target_s'])} s)" if fastest else "none reached",
        f"{fmt(best['learning_rate'])} ({_acc(best)})" if best else "-",
        fmt(group["first_s"])])
  sections["convergence:summary"] = noise + markdown_table(
      ["optimizer", "variants", "group wall / epoch (s)", "fastest lr to target (all seeds)",
       "most accurate lr", "first run incl. compile (s)"], summary)

  rows = []
  for name, art in result["articles"].items():
    p = art["points"][0]
    rows.append([name, art["description"], fmt(p["learning_rate"]), _reached(p),
                 fmt(p["epochs_to_target"]), fmt(p["steps_to_target"]),
                 fmt(p["wall_to_target_s"]), _acc(p), fmt(p["epochs_run"])])
  sections["convergence:articles"] = noise + head + markdown_table(
      ["config", "what", "lr", "reached", "epochs to target", "steps to target",
       "wall to target (s, est.)", "best val acc (mean ± std)", "epochs run"], rows)
  sections["convergence:figure"] = (
      noise + "![epochs to target against learning rate](convergence.png)")
  return sections


def plot(cfg: dict, result: dict, path: str) -> None:
  """Epochs to target and best accuracy against learning rate, per optimizer (log x)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, (ax, ax_acc) = plt.subplots(1, 2, figsize=(12, 4.5))
  for name, group in result["optimizers"].items():
    lrs = [p["learning_rate"] for p in group["points"]]
    epochs = [p["epochs_to_target"] for p in group["points"]]
    line, = ax.plot(lrs, epochs, "o-", label=name)
    ax_acc.plot(lrs, [p["best_val_accuracy"] for p in group["points"]], "o-", label=name,
                color=line.get_color())
  # Fixed marks, so that an article reads the same in both panels (some never reach the target).
  marks = {"A": ("*", "black"), "B": ("P", "dimgray"), "C": ("X", "purple")}
  for name, art in result["articles"].items():
    p = art["points"][0]
    marker, color = marks[name]
    style = {"marker": marker, "color": color, "markersize": 12, "linestyle": "none",
             "label": f"article {name}"}
    if math.isfinite(p["epochs_to_target"]):
      ax.plot([p["learning_rate"]], [p["epochs_to_target"]], **style)
    ax_acc.plot([p["learning_rate"]], [p["best_val_accuracy"]], **style)
  ax.set(xscale="log", xlabel="learning rate (peak)", ylabel="epochs to target",
         title=f"epochs to val accuracy >= {cfg['target']} (missing: never reached)")
  ax_acc.set(xscale="log", xlabel="learning rate (peak)", ylabel="best val accuracy",
             title="best validation accuracy (mean over seeds)")
  for a in (ax, ax_acc):
    a.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _csv(result: dict) -> str:
  import csv
  import io
  buf = io.StringIO()
  fields = ["kind", "name", "learning_rate", "seeds", "reached", "epochs_to_target",
            "steps_to_target", "wall_to_target_s", "best_val_accuracy", "best_val_accuracy_std",
            "epochs_run", "diverged"]
  writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
  writer.writeheader()
  for kind in ("optimizers", "articles"):
    for name, group in result[kind].items():
      for p in group["points"]:
        writer.writerow({"kind": kind[:-1], "name": name, **p})
  return buf.getvalue()


def config_from_flags() -> dict:
  quick = FLAGS.quick
  given = lambda name: FLAGS[name].present
  unknown = sorted(set(FLAGS.articles) - set(ARTICLES))
  if unknown:
    raise app.UsageError(f"unknown article configuration {unknown[0]!r}; valid choices: A, B, C")
  cfg = {"quick": quick, "optimizers": list(FLAGS.optimizers), "articles": list(FLAGS.articles),
         "lr_min": FLAGS.lr_min, "lr_max": FLAGS.lr_max, "num_lrs": FLAGS.num_lrs,
         "seeds": FLAGS.seeds, "epochs": FLAGS.epochs, "max_epochs": FLAGS.max_epochs,
         "target": FLAGS.target}
  if quick:
    # Explicit flags still win over the quick defaults. Each optimizer and each article is a
    # program of its own (compiled in seconds): one of each checks the script. B, another
    # optimizer with early stopping, rather than A, the adam sweep's at another learning rate.
    # The adam sweep is throughput.py --quick's program at N = 2 (workload P, 1 epoch): a
    # process that runs both (the tests' does) compiles it once.
    cfg.update({k: v for k, v in {
        "optimizers": ["adam"], "articles": ["B"], "lr_min": 1e-3, "lr_max": 1e-1,
        "num_lrs": 2, "seeds": 1, "epochs": 1, "max_epochs": 1, "target": 0.8}.items()
        if not given(k)})
  return cfg


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  cfg = config_from_flags()
  import lr_jax
  from lr_jax import cli
  # Bad names are refused here, before anything compiles.
  epochs = min(cfg["epochs"], cfg["max_epochs"] or cfg["epochs"])
  experiments = {name: sweep_experiment(name, epochs) for name in cfg["optimizers"]}
  articles = {k: v for k, v in article_experiments(cfg["max_epochs"]).items()
              if k in cfg["articles"]}
  grid = lr_jax.Grid(learning_rates=lr_jax.log_spaced(cfg["lr_min"], cfg["lr_max"], cfg["num_lrs"]),
                     seeds=tuple(range(cfg["seeds"])))
  cli.enable_compilation_cache()
  machine = benchmarks.machine_info()
  print(f"machine: {machine.get('model_name', '?')}, {machine['cpu_count']} cores, load average "
        f"{machine['loadavg']}", flush=True)
  result = {"config": cfg, "machine": machine,
            "versions": benchmarks.package_versions(["jax", "jaxlib", "flax", "optax", "numpy"]),
            "optimizers": {}, "articles": {}}
  for name, exp in experiments.items():
    print(f"sweeping {name}: {len(grid.learning_rates)} lrs x {len(grid.seeds)} seeds ...",
          flush=True)
    result["optimizers"][name] = measure(exp, grid, cfg["target"])
    print(f"  first run {result['optimizers'][name]['first_s']:.1f} s, then "
          f"{result['optimizers'][name]['s_per_epoch']:.3g} s per epoch", flush=True)
  for name, (description, exp, lr) in articles.items():
    print(f"article configuration {name}: {description} ...", flush=True)
    art = measure(exp, lr_jax.Grid(learning_rates=(lr,), seeds=grid.seeds), cfg["target"])
    result["articles"][name] = dict(art, description=description)
    print(f"  first run {art['first_s']:.1f} s, then {art['s_per_epoch']:.3g} s per epoch",
          flush=True)
  result["loadavg_end"] = benchmarks.loadavg()
  out = FLAGS.out
  sections = report(cfg, result)
  png = os.path.join(out, "convergence.png")
  os.makedirs(out, exist_ok=True)
  plot(cfg, result, png)
  benchmarks.write_json(os.path.join(out, "convergence.json"), result)
  benchmarks.write_text(os.path.join(out, "convergence.csv"), _csv(result))
  benchmarks.write_text(os.path.join(out, "convergence.md"), benchmarks.sections_markdown(sections))
  print()
  for name, body in sections.items():
    print(f"## {name}\n{body}\n")
  if FLAGS.fill_doc:
    # The document shows the figure from beside itself.
    shutil.copyfile(png, os.path.join(os.path.dirname(benchmarks.DOC), "convergence.png"))
    missing = benchmarks.fill_markers(benchmarks.DOC, sections)
    print(f"filled {benchmarks.DOC}"
          + (f" (no markers for {', '.join(missing)})" if missing else ""))
  print(f"wrote {out}/convergence.json, convergence.csv, convergence.md, convergence.png")


if __name__ == "__main__":
  app.run(main)
