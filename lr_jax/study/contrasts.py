"""The study's side arms against its plain cells: regularisation, label noise, test set."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_jax import report
from lr_jax.study.cells import CellRow, direction, small_lr_ok
from lr_jax.study.phrases import (budget_label, count, decades_text, median, model_name,
                                  setting_text)


def _directions(ways: Sequence[str]) -> str:
  """'larger in 2 of 8 cells and smaller in 1; in the other 5 the not-worse sets overlap, so
  the data cannot decide', from `direction`'s answers."""
  return (f"larger in {ways.count('larger')} of {len(ways)} cells and smaller in "
          f"{ways.count('smaller')}; in the other {ways.count('undecided')} the not-worse sets "
          "overlap, so the data cannot decide")


def _shift_text(decades: float) -> str:
  """A move of the best learning rate in decades: '0.5 decades smaller', 'none'."""
  if not math.isfinite(decades):
    return "n/a"
  if abs(decades) < 1e-9:
    return "none"
  return f"{decades_text(abs(decades))} {'larger' if decades > 0 else 'smaller'}"


def _points(x: float) -> str:
  return f"{100 * x:+.1f}"


def regularisation_findings(budget: str, rows: Sequence[CellRow], ref_lr: float) -> list[str]:
  """With tuned dropout and weight decay against without, per size (clean labels): the best
  learning rate's move, the accuracy it buys, and the small learning rates' standing."""
  plain = {(r.line, r.train_size): r for r in rows
           if not r.regularisation and r.label_noise == 0 and math.isfinite(r.best_lr)}
  pairs = sorted(((plain[(t.line, t.train_size)], t) for t in rows
                  if t.regularisation == "tuned" and t.label_noise == 0
                  and math.isfinite(t.best_lr) and (t.line, t.train_size) in plain),
                 key=lambda pair: (pair[1].train_size, pair[1].schedule))
  if not pairs:
    return []
  label = budget_label(budget).capitalize()
  small = pairs[0][1].train_size
  first = pairs[0][1]
  ways = [direction(t, p) for p, t in pairs]
  at_small = "; ".join(
      f"{t.schedule}: {report.format_lr(p.best_lr)} without, {report.format_lr(t.best_lr)} "
      f"with ({setting_text(t.best_setting)})" for p, t in pairs if t.train_size == small)
  gains = [t.best_mean - p.best_mean for p, t in pairs]
  known = [t.plain_worse for _, t in pairs if t.plain_worse is not None]
  scores = "; ".join(
      f"{t.schedule}: {report.format_ci(p.best_mean, p.best_ci)} without, "
      f"{report.format_ci(t.best_mean, t.best_ci)} with" for p, t in pairs
      if t.train_size == small)
  ok = lambda r: small_lr_ok(r, ref_lr)
  return [
      f"{label}, regularisation ({first.optimizer} {model_name(first.width)}, dropout and weight "
      f"decay tuned): against no regularisation the best learning rate with it tuned is "
      f"{_directions(ways)} (at "
      f"n={small}: {at_small}).",
      f"{label}: tuning the regularisation changed the validation accuracy by a median "
      f"of {_points(median(gains))} points (from {_points(min(gains))} to "
      f"{_points(max(gains))}; the tuned score is the best of more points, so a little "
      f"optimistic), and the best point without it is significantly worse than the best with "
      f"it in {count(known)} of {len(known)} cells (at n={small}: {scores}).",
      f"{label}: a learning rate <= {report.format_lr(ref_lr)} is within the noise of the best "
      f"in {count(ok(p) for p, _ in pairs)} of {len(pairs)} cells without regularisation and "
      f"{count(ok(t) for _, t in pairs)} of {len(pairs)} with it tuned.",
  ]


def noise_findings(budget: str, rows: Sequence[CellRow], ref_lr: float) -> list[str]:
  """With noisy training labels against clean ones (regularisation off): does the best
  learning rate move, by how much, how sure; and the small learning rates' standing."""
  plain = [r for r in rows if not r.regularisation and math.isfinite(r.best_lr)]
  levels = sorted({r.label_noise for r in plain if r.label_noise > 0})
  if not levels:
    return []
  clean = {(r.line, r.train_size): r for r in plain if r.label_noise == 0}
  label = budget_label(budget).capitalize()
  out, by_level = [], {}
  for v in levels:
    pairs = [(clean[(r.line, r.train_size)], r) for r in plain
             if r.label_noise == v and (r.line, r.train_size) in clean]
    if not pairs:
      continue
    by_level[v] = pairs
    sizes = ", ".join(str(n) for n in sorted({r.train_size for _, r in pairs}))
    ways = [direction(r, c) for c, r in pairs]
    shifts = [math.log10(r.best_lr / c.best_lr) for c, r in pairs]
    out.append(
        f"{label}, label noise {v:g} (n={sizes}): against clean labels the best learning rate "
        f"is {_directions(ways)}; the median move is "
        f"{_shift_text(median(shifts))} (from {_shift_text(min(shifts))} to "
        f"{_shift_text(max(shifts))}), and the best's median P(best) is "
        f"{median([r.best_p for _, r in pairs]):.2f}.")
  if not by_level:
    return []
  ok = lambda r: small_lr_ok(r, ref_lr)
  cleans = list(by_level.values())[0]
  counts = [f"{count(ok(c) for c, _ in cleans)} of {len(cleans)} cells with clean labels"]
  counts += [f"{count(ok(r) for _, r in pairs)} of {len(pairs)} at noise {v:g}"
             for v, pairs in by_level.items()]
  accuracy = [f"{median([c.best_mean for c, _ in cleans]):.3f} clean"]
  accuracy += [f"{median([r.best_mean for _, r in pairs]):.3f} at noise {v:g}"
               for v, pairs in by_level.items()]
  out.append(f"{label}: a learning rate <= {report.format_lr(ref_lr)} is within the noise of "
             f"the best in {', '.join(counts)}; the median validation accuracy (clean "
             f"validation labels) is {', '.join(accuracy)}.")
  return out


def test_findings(budget: str, rows: Sequence[CellRow]) -> list[str]:
  """How optimistic the winner's validation score is: against its runs' held-out test score."""
  tested = [r for r in rows if math.isfinite(r.test_mean) and r.label_noise == 0]
  out = []
  label = budget_label(budget).capitalize()
  for n in sorted({r.train_size for r in tested}):
    mine = [r for r in tested if r.train_size == n and not r.regularisation]
    if not mine:
      continue
    gaps = [r.best_mean - r.test_mean for r in mine]
    below = count(r.test_mean + np.nan_to_num(r.test_ci) < r.best_mean - np.nan_to_num(r.best_ci)
                   for r in mine)
    verb = "overstates" if median(gaps) >= 0 else "understates"
    text = (f"{label}: at n={n} the chosen learning rate's validation accuracy (median "
            f"{median([r.best_mean for r in mine]):.3f}) {verb} the same runs' accuracy on "
            f"{mine[0].test_n} held-out test examples (median "
            f"{median([r.test_mean for r in mine]):.3f}) by a median of "
            f"{abs(100 * median(gaps)):.1f} points (gap from {_points(min(gaps))} to "
            f"{_points(max(gaps))} across {len(mine)} cells; the test interval lies wholly "
            f"below the validation one in {below})")
    tuned = [r.best_mean - r.test_mean for r in tested if r.train_size == n
             and r.regularisation == "tuned"]
    if tuned:
      text += (f"; with the regularisation tuned too (more points to choose from) the median "
               f"gap is {_points(median(tuned))} points")
    out.append(text + ".")
  return out
