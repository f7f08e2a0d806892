"""Benchmarks of lr_jax: throughput against its peers, and convergence speed.

    python -m benchmarks.throughput --out runs/benchmarks/throughput
    python -m benchmarks.convergence --out runs/benchmarks/convergence
    python -m benchmarks.compaction --out runs/benchmarks/compaction
    python -m benchmarks.yardstick --out runs/benchmarks/yardstick

What the scripts share lives here: the machine description, Markdown tables, filling the
marked sections of `BENCHMARKS.md`, memory readings. Standard library only, so that the peer
implementations (`benchmarks.peers`) import it from their own virtual environment too.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import resource
import subprocess
import tempfile
from collections.abc import Mapping, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "benchmarks", "BENCHMARKS.md")


def peak_rss_mb() -> float:
  """This process's peak resident memory so far, in MiB.

  Linux's `VmHWM`, not `getrusage`: `ru_maxrss` survives `exec`, so a child spawned by a
  large parent reports at least the parent's size at the fork.
  """
  try:
    with open("/proc/self/status") as f:
      return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024.0
  except (OSError, AttributeError):
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux.


def current_rss_mb() -> float:
  """This process's resident memory now, in MiB (NaN where /proc is missing)."""
  try:
    with open("/proc/self/statm") as f:
      pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
  except (OSError, ValueError, IndexError):
    return math.nan


def loadavg() -> list[float]:
  """1, 5 and 15 minute load averages: a busy machine makes every timing here noisy."""
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return []


def machine_info() -> dict:
  """CPU model, cores, memory, OS and Python of this machine."""
  info = {"python": platform.python_version(), "platform": platform.platform(),
          "cpu_count": os.cpu_count(), "loadavg": loadavg()}
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    for key in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Socket(s)",
                "CPU max MHz", "L2 cache", "L3 cache", "Hypervisor vendor"):
      if key in fields:
        info[key.lower().replace("(s)", "s").replace(" ", "_")] = fields[key]
    flags = fields.get("Flags", "").split()
    info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags) or "none seen"
  except (OSError, subprocess.SubprocessError):
    pass
  try:
    with open("/proc/meminfo") as f:
      kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    info["memory_gib"] = round(kib / 2**20, 1)
  except (OSError, AttributeError):
    pass
  return info


def package_versions(names: Sequence[str]) -> dict[str, str]:
  """Installed versions of `names` in this environment ("absent" for a missing one)."""
  from importlib import metadata
  out = {}
  for name in names:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      out[name] = "absent"
  return out


def fmt(x: float | None, digits: int = 3) -> str:
  """A number for a table: `digits` significant digits, '-' for missing or NaN."""
  if x is None or (isinstance(x, float) and not math.isfinite(x)):
    return "-"
  return f"{x:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
  """A GitHub-flavoured Markdown table; cells are converted with `str`."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
  return "\n".join(lines)


def write_text(path: str, text: str) -> None:
  """Writes `text` through a temporary file and a rename, so a reader never sees half a file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  with os.fdopen(fd, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: object) -> None:
  """Writes `obj` as JSON; NaN and infinities become null so that any JSON reader accepts it."""
  write_text(path, json.dumps(_finite(obj), indent=2) + "\n")


def run_as_worker(argv: Sequence[str], worker: str | None, run_worker) -> bool:
  """The start of a benchmark script's `main` whose points run in subprocesses (`--worker`):
  refuses stray arguments; in a worker, runs the spec file's point with `run_worker(spec)`,
  writes its result and returns True (main returns); otherwise False."""
  from absl import app
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not worker:
    return False
  with open(worker) as f:
    spec = json.load(f)
  write_json(spec["result"], run_worker(spec))
  return True


def _finite(x):
  if isinstance(x, Mapping):
    return {str(k): _finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_finite(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def sections_markdown(sections: Mapping[str, str]) -> str:
  """The sections as one Markdown file, each between the markers `fill_markers` looks for."""
  return "\n\n".join(f"<!-- BEGIN {name} -->\n{body.strip()}\n<!-- END {name} -->"
                     for name, body in sections.items()) + "\n"


def fill_markers(doc_path: str, sections: Mapping[str, str]) -> list[str]:
  """Replaces the text between `<!-- BEGIN name -->` and `<!-- END name -->` for each section.

  Args:
    doc_path: the Markdown file to update in place (e.g. `benchmarks/BENCHMARKS.md`).
    sections: name -> new body.

  Returns:
    The names of the sections that the document has no markers for (left out).
  """
  with open(doc_path) as f:
    doc = f.read()
  missing = []
  for name, body in sections.items():
    pattern = re.compile(
        rf"(<!-- BEGIN {re.escape(name)} -->\n).*?(\n<!-- END {re.escape(name)} -->)", re.S)
    if not pattern.search(doc):
      missing.append(name)
      continue
    doc = pattern.sub(lambda m: m.group(1) + body.strip() + m.group(2), doc)
  write_text(doc_path, doc)
  return missing


def publish(out: str, name: str, result: object, sections: Mapping[str, str],
            fill_doc: bool) -> None:
  """A script's outputs: `<out>/<name>.json` (the numbers), `<out>/<name>.md` (the sections),
  the sections printed and, with `fill_doc`, pasted into BENCHMARKS.md's markers."""
  write_json(os.path.join(out, f"{name}.json"), result)
  text = sections_markdown(sections)
  write_text(os.path.join(out, f"{name}.md"), text)
  print(text)
  if fill_doc:
    missing = fill_markers(DOC, sections)
    if missing:
      print("BENCHMARKS.md has no markers for: " + ", ".join(missing))


def python_of_venv(venv: str) -> str:
  """The interpreter of a virtual environment folder (POSIX layout)."""
  return os.path.join(venv, "bin", "python")
