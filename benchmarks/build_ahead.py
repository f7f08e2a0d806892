"""Compilation off the critical path: commands end to end with and without building ahead.

    python -m benchmarks.build_ahead --out runs/benchmarks/build_ahead [--fill_doc]

`RunOptions.build_ahead` (on by default; `--nobuild_ahead`) builds a group's first call's
program in a background thread while the host builds and runs its initializers, and the next
group's while this one trains. Each command below runs as a user runs it, a new process each
time (imports, plan, compile, train, report, exit), with building ahead on and off
alternating (the order rotating each round), each first with an empty persistent compilation
cache ("cold") and then again with the cache that run filled ("warm"), `--reps` rounds:

- `default_sweep`: `python -m experiments.lr_sweep` (digits, MLP(128), Adam, 16 learning
  rates x 3 seeds; one group);
- `halving_64x3`: the same with `--num_lrs=64 --lr_min=1e-5 --lr_max=1 --seeds=3
  --prune=halving` (one group);
- `study_quick`: `python -m experiments.small_data_study --quick`'s groups (several groups in
  turn: the next one's program builds while this one trains), run through the library as the
  command does (`study.run_groups` with its options), the report not written.

Columns: the wall clock of the whole process (median of the rounds); the compile seconds on
the critical path (what the groups waited for programs: their own thread's tracing, lowering
and compiling, and the wait for a program built ahead; summed over the groups, from the
engine's log line or `GroupOutput.compile_s`); the programs compiled or loaded.

Prints a table, writes `<out>/build_ahead.json` and, with `--fill_doc`, the table into
`benchmarks/BENCHMARKS.md` (its `build_ahead` marker).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

import benchmarks

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/benchmarks/build_ahead", "Output folder.")
flags.DEFINE_integer("reps", 3, "Rounds: each command with and without building ahead, cold "
                     "and warm, per round.")
flags.DEFINE_multi_enum("part", ["default_sweep", "halving_64x3", "study_quick"],
                        ["default_sweep", "halving_64x3", "study_quick"],
                        "The commands to run (repeat the flag for several).")
flags.DEFINE_bool("fill_doc", False, "Fill the build_ahead section of BENCHMARKS.md.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = [sys.executable, "-m", "experiments.lr_sweep"]
COMMANDS = {
    "default_sweep": SWEEP,
    "halving_64x3": SWEEP + ["--num_lrs=64", "--lr_min=1e-5", "--lr_max=1", "--seeds=3",
                             "--prune=halving"],
    "study_quick": [sys.executable, "-c",
                    "import sys, benchmarks.build_ahead as b; b.study_child(sys.argv[1:])"],
}
_COMPILED = re.compile(r"compiled (\d+) programs?(?:, \d+ loaded from the persistent cache)? "
                       r"in ([\d.]+) s")
_CHILD = "BUILD_AHEAD_CHILD "


def study_child(argv: list[str]) -> None:
  """The quick study's groups as its command runs them (the persistent compilation cache on,
  `study.run_groups` with the study's options and call lengths), without its report; prints
  the compile seconds on the critical path and the programs as one JSON line."""
  import dataclasses
  from lr_jax import cli, study
  ahead = "--nobuild_ahead" not in argv
  cli.enable_compilation_cache()
  plan = study.plan_study(study.StudyConfig.quick())
  options = dataclasses.replace(study.study_options(), build_ahead=ahead)
  outputs, _ = study.run_groups(plan.groups, options=options,
                                call_epochs=plan.call_epochs or None)
  print(_CHILD + json.dumps({"compile_s": sum(o.compile_s or 0.0 for o in outputs),
                             "programs": sum(o.programs_compiled for o in outputs),
                             "groups": len(outputs)}))


def _run(part: str, ahead: bool, cache: str, out: str) -> dict:
  """One run of a command in a new process: its wall clock, compile on the critical path."""
  argv = COMMANDS[part] + ["--build_ahead" if ahead else "--nobuild_ahead"]
  if part != "study_quick":
    argv += [f"--out={out}"]
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache)
  t0 = time.perf_counter()
  proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t0
  if proc.returncode:
    raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")
  text = proc.stdout + proc.stderr
  if part == "study_quick":
    line = next(l for l in text.splitlines() if l.startswith(_CHILD))
    child = json.loads(line[len(_CHILD):])
    return {"wall_s": wall, "compile_s": child["compile_s"], "programs": child["programs"]}
  found = _COMPILED.findall(text)
  return {"wall_s": wall, "compile_s": sum(float(s) for _, s in found),
          "programs": sum(int(n) for n, _ in found)}


def measure(parts: list[str], reps: int) -> dict:
  """Every part, `reps` rounds of (on, off) in rotating order, each cold then warm."""
  runs = {p: {s: {"cold": [], "warm": []} for s in ("on", "off")} for p in parts}
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(reps):
      for part in parts:
        order = ("on", "off") if r % 2 == 0 else ("off", "on")
        for setting in order:
          cache = os.path.join(tmp, f"cache-{part}-{setting}-{r}")
          for state in ("cold", "warm"):
            got = _run(part, setting == "on", cache,
                       os.path.join(tmp, f"out-{part}-{setting}-{r}-{state}"))
            runs[part][setting][state].append(got)
            print(f"round {r + 1}/{reps} {part} build ahead {setting} {state}: "
                  f"{got['wall_s']:.2f} s, compile on the critical path {got['compile_s']:.2f} s, "
                  f"{got['programs']} programs", flush=True)
  return runs


def summary(runs: dict) -> dict:
  """Medians per part, setting and cache state, and the off / on ratios of the wall clock."""
  out = {}
  for part, by_setting in runs.items():
    row = {}
    for setting, by_state in by_setting.items():
      for state, got in by_state.items():
        row[f"{setting}_{state}_wall_s"] = statistics.median(g["wall_s"] for g in got)
        row[f"{setting}_{state}_compile_s"] = statistics.median(g["compile_s"] for g in got)
        row[f"{setting}_{state}_programs"] = got[0]["programs"]
    for state in ("cold", "warm"):
      row[f"{state}_speedup"] = row[f"off_{state}_wall_s"] / row[f"on_{state}_wall_s"]
    out[part] = row
  return out


def table(results: dict) -> str:
  fmt = benchmarks.fmt
  rows = []
  for part, s in results["summary"].items():
    for setting in ("off", "on"):
      rows.append([part, setting,
                   f"{fmt(s[f'{setting}_cold_wall_s'])} / {fmt(s[f'{setting}_warm_wall_s'])}",
                   f"{fmt(s[f'{setting}_cold_compile_s'])} / "
                   f"{fmt(s[f'{setting}_warm_compile_s'])}",
                   f"{s[f'{setting}_cold_programs']} / {s[f'{setting}_warm_programs']}",
                   f"{fmt(s['cold_speedup'])} / {fmt(s['warm_speedup'])}" if setting == "on"
                   else ""])
  n = results["reps"]
  return benchmarks.markdown_table(
      ["command", "build ahead", f"wall s cold / warm (median of {n})",
       "compile s on the critical path, cold / warm", "programs cold / warm",
       "off / on wall, cold / warm"], rows) + (
      f"\n\nEach run a new process; cold: an empty persistent compilation cache, warm: the "
      f"cache that run filled. Load average (1, 5, 15 min) at start {results['load_start']}, "
      f"at end {results['load_end']}; {results['total_s']:.0f} s in all.")


def main(argv):
  del argv
  results = {"load_start": benchmarks.loadavg(), "machine": benchmarks.machine_info(),
             "reps": FLAGS.reps}
  t0 = time.perf_counter()
  results["runs"] = measure(FLAGS.part, FLAGS.reps)
  results["summary"] = summary(results["runs"])
  results["load_end"] = benchmarks.loadavg()
  results["total_s"] = time.perf_counter() - t0
  os.makedirs(FLAGS.out, exist_ok=True)
  benchmarks.publish(FLAGS.out, "build_ahead", results, {"build_ahead": table(results)},
                     FLAGS.fill_doc)


if __name__ == "__main__":
  app.run(main)
