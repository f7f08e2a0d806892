"""The study's contrasts, cell against cell: each factor against the reference line, the
regularisation and label-noise arms against their own plain cells, the held-out test set."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_jax import report, stats
from lr_jax.study.cells import CellRow, decided, direction, small_lr_ok
from lr_jax.study.phrases import (budget_label, count, left_out, median, model_name, plural,
                                  runs_text, setting_text, signed_points, sizes_text)

FACTORS = ("optimizer", "width", "schedule", "budget")
"""The factors varied around the reference line, in the order of `StudyConfig.reference`."""

_AT = {"": "the clean-validation best epoch", "last_epoch": "the last epoch"}


def _show(factor: str, value: object) -> str:
  if factor == "width":
    return model_name(value)
  return budget_label(value) if factor == "budget" else str(value)


def _with(factor: str, value: object) -> str:
  """'with sgd', 'with MLP(16)', 'under fixed steps', 'trained to convergence'."""
  if factor != "budget":
    return f"with {_show(factor, value)}"
  return "trained to convergence" if value == "converge" else f"under {budget_label(value)}"


def _ways_text(ways: Sequence[str]) -> str:
  """'larger in 1, smaller in 0, the not-worse sets overlapping in 2 of 3 cells'."""
  return (f"larger in {ways.count('larger')}, smaller in {ways.count('smaller')}, the not-worse "
          f"sets overlapping in {ways.count('undecided')} of {plural(len(ways), 'cell')}")


def _left_pairs(pairs: Sequence[tuple[CellRow, CellRow]], kept: Sequence, ref_lr: float
                ) -> str:
  """Why pairs are left out of a count: a cell not `decided` ('; 1 cell left out with the
  cell it pairs with: ...', `left_out`), and pairs whose best point was unconverged."""
  dropped = [p for p in pairs if p not in kept]
  undecided = [p for p in dropped if not (decided(p[0], ref_lr) and decided(p[1], ref_lr))]
  why = left_out([r for p in undecided for r in p], ref_lr)
  alone = sum(not decided(r, ref_lr) for p in undecided for r in p) == 1
  with_ = " with the cell it pairs with" if alone else " with the cells they pair with"
  text = "; " + why.replace(" left out", " left out" + with_, 1) if why else ""
  return text + _unconverged_note(len(dropped) - len(undecided), "more pair" if why else "pair")


def _directions(ways: Sequence[str]) -> str:
  """'larger in 2 of 8 cells and smaller in 1; in the other 5 the not-worse sets overlap, so
  the data cannot decide', from `direction`'s answers."""
  return (f"larger in {ways.count('larger')} of {len(ways)} cells and smaller in "
          f"{ways.count('smaller')}; in the other {ways.count('undecided')} the not-worse sets "
          "overlap, so the data cannot decide")


def _converged(pairs: Sequence[tuple[CellRow, CellRow]]) -> list[tuple[CellRow, CellRow]]:
  """The pairs whose best points both converged: a direction may rest on them."""
  return [(a, b) for a, b in pairs if not (a.best_unconverged or b.best_unconverged)]


def _unconverged_note(left: int, noun: str = "cell") -> str:
  return (f"; {plural(left, noun)} left out: a best point was still improving at the cap"
          if left else "")


def factor_pairs(rows: Sequence[CellRow], factor: str, reference: Sequence
                 ) -> dict[object, list[tuple[CellRow, CellRow]]]:
  """Each other value of a factor, its main cells paired with the reference's by size.

  A pair is (the reference value's cell, the other value's cell) where the two main cells
  (`CellRow.main`) differ in `factor` alone: same size and other factors. Under the "union"
  design that pairs each alternative line with the reference line size by size; no count
  compares cells of different sizes or budgets.

  Args:
    rows: the table.
    factor: one of `FACTORS`.
    reference: (optimizer, width, schedule, budget) of the reference line.

  Returns:
    Other value -> its pairs, in table order.
  """
  i = FACTORS.index(factor)
  main = [r for r in rows if r.main and math.isfinite(r.best_lr)]

  def key(r: CellRow) -> tuple:
    values = (r.optimizer, r.width, r.schedule, r.budget)
    return tuple(None if j == i else v for j, v in enumerate(values)) + (r.train_size,)

  refs = {key(r): r for r in main if getattr(r, factor) == reference[i]}
  out: dict[object, list[tuple[CellRow, CellRow]]] = {}
  for r in main:
    if getattr(r, factor) != reference[i] and key(r) in refs:
      out.setdefault(getattr(r, factor), []).append((refs[key(r)], r))
  return out


def factor_findings(rows: Sequence[CellRow], reference: Sequence, ref_lr: float) -> list[str]:
  """Each factor's other values against the reference line, paired by size (`factor_pairs`).

  Per other value: in how many pairs a learning rate <= `ref_lr` is within the noise of the
  best with each, at how many sizes that answer changes, and the best learning rate's
  direction (counted where the not-worse sets do not overlap). A pair whose answer rests on
  an unconverged point (`decided`, a best point still improving) is left out, and said.
  """
  ref = report.format_lr(ref_lr)
  out = []
  for factor in FACTORS:
    base = _show(factor, reference[FACTORS.index(factor)])
    for value, pairs in factor_pairs(rows, factor, reference).items():
      kept = [(a, b) for a, b in _converged(pairs) if decided(a, ref_lr) and decided(b, ref_lr)]
      alt, alt_with, base_with = _show(factor, value), _with(factor, value), _with(
          factor, reference[FACTORS.index(factor)])
      if not kept:
        out.append(f"{factor.capitalize()}: {alt} against the reference line's {base}: no pair "
                   f"of cells is counted{_left_pairs(pairs, kept, ref_lr)}.")
        continue
      changed = [a.train_size for a, b in kept
                 if small_lr_ok(a, ref_lr) != small_lr_ok(b, ref_lr)]
      unit = "sizes" if len({a.train_size for a, _ in kept}) == len(kept) else "pairs"
      ways = [direction(b, a) for a, b in kept]
      out.append(
          f"{factor.capitalize()}: {alt} against the reference line's {base} "
          f"({plural(len(kept), 'pair')} of cells, same size and other factors; "
          f"{runs_text([r.runs for p in kept for r in p])}): a learning rate <= {ref} is "
          f"within the noise of the best in {count(small_lr_ok(b, ref_lr) for _, b in kept)} "
          f"of {len(kept)} {alt_with} and {count(small_lr_ok(a, ref_lr) for a, _ in kept)} "
          f"{base_with}, so the answer changes at {len(changed)} of {len(kept)} {unit}"
          + (f" (at {sizes_text(changed)})" if changed else "")
          + f"; {alt_with} the best learning rate is larger than {base_with} at "
          f"{ways.count('larger')}, smaller at {ways.count('smaller')}, and the not-worse "
          f"sets overlap at {ways.count('undecided')}" + _left_pairs(pairs, kept, ref_lr) + ".")
  return out


def regularisation_pairs(rows: Sequence[CellRow]) -> list[tuple[CellRow, CellRow]]:
  """(off, tuned) pairs of the regularisation arm (`CellRow.arm`): each tuned row with the
  arm's own row without regularisation of the same line, size and budget; by size."""
  arm = [r for r in rows if r.arm == "regularisation" and r.label_noise == 0 and not r.score
         and math.isfinite(r.best_lr)]
  plain = {(r.line, r.train_size, r.budget): r for r in arm if not r.regularisation}
  key = lambda r: (r.line, r.train_size, r.budget)
  return sorted(((plain[key(t)], t) for t in arm
                 if t.regularisation == "tuned" and key(t) in plain),
                key=lambda pair: (pair[1].train_size, pair[1].schedule))


def regularisation_findings(budget: str, rows: Sequence[CellRow], ref_lr: float, *,
                            settings: int | None = None) -> list[str]:
  """The regularisation arm: dropout and weight decay tuned against off, per size.

  Pairs each tuned row of the arm (`CellRow.arm` "regularisation") with the arm's own cell
  without regularisation (same line, size and budget): the best learning rate's move, the
  accuracy tuning buys (optimistic: the best of `settings` settings per learning rate), how
  often the best point without it is significantly worse (Bonferroni-corrected over those
  settings, `CellRow.plain_worse`), and the small learning rates' standing.

  Args:
    budget: the budget of `rows`.
    rows: the table's rows under `budget`.
    ref_lr: the article's small learning rate.
    settings: the settings each learning rate's tuned score is the best of; None: unknown.

  Returns:
    The sentences; none without the arm.
  """
  pairs = regularisation_pairs(rows)
  if not pairs:
    return []
  label = budget_label(budget).capitalize()
  small = pairs[0][1].train_size
  first = pairs[0][1]
  of = f"the best of its {settings} settings" if settings else "the best of its settings"
  counted = _converged(pairs)
  ways = [direction(t, p) for p, t in counted]
  at_small = "; ".join(
      f"{t.schedule}: {report.format_lr(p.best_lr)} without, {report.format_lr(t.best_lr)} "
      f"with ({setting_text(t.best_setting)})" for p, t in pairs if t.train_size == small)
  gains = [t.best_mean - p.best_mean for p, t in pairs]
  # "Significantly worse" rests on both best points: not counted where one was unconverged.
  known = [t.plain_worse for _, t in counted if t.plain_worse is not None]
  level = (f"{100 * stats.ALPHA:g}% / {settings} = {100 * stats.ALPHA / settings:.2g}%"
           if settings else f"{100 * stats.ALPHA:g}% / the number of settings")
  scores = "; ".join(
      f"{t.schedule}: {report.format_ci(p.best_mean, p.best_ci)} without, "
      f"{report.format_ci(t.best_mean, t.best_ci)} with" for p, t in pairs
      if t.train_size == small)
  both = [(p, t) for p, t in pairs if decided(p, ref_lr) and decided(t, ref_lr)]
  ok = lambda r: small_lr_ok(r, ref_lr)
  n = f"{sizes_text([t.train_size for _, t in pairs])}; {plural(len(pairs), 'cell')}, " \
      f"{runs_text([r.runs for p in pairs for r in p])}"
  if both:
    standing = (f"{label}: a learning rate <= {report.format_lr(ref_lr)} is within the noise "
                f"of the best in {count(ok(p) for p, _ in both)} of {len(both)} cells without "
                f"regularisation and {count(ok(t) for _, t in both)} of {len(both)} with it "
                f"tuned{_left_pairs(pairs, both, ref_lr)}.")
  else:
    standing = (f"{label}: whether a learning rate <= {report.format_lr(ref_lr)} is within the "
                f"noise of the best with and without regularisation is not said"
                f"{_left_pairs(pairs, both, ref_lr)}.")
  return [
      f"{label}, regularisation ({first.optimizer} {model_name(first.width)} "
      f"{'/'.join(dict.fromkeys(t.schedule for _, t in pairs))}, {n}; dropout and weight decay "
      f"tuned, each learning rate at {of}): against no regularisation the best learning rate "
      f"with it tuned is {_directions(ways)}{_unconverged_note(len(pairs) - len(counted))} "
      f"(at n={small}: {at_small}).",
      f"{label}: tuning the regularisation changed the validation accuracy by a median "
      f"of {signed_points(median(gains))} points (from {signed_points(min(gains))} to "
      f"{signed_points(max(gains))}; the tuned score is {of}, so optimistic), and the best point "
      f"without it is significantly worse than the best with it in {count(known)} of "
      f"{len(known)} cells (a test Bonferroni-corrected for taking the best setting: "
      f"{level}; at n={small}: {scores})"
      f"{_unconverged_note(len(pairs) - len(counted))}.",
      standing,
  ]


def _noise_pairs(rows: Sequence[CellRow]) -> dict[tuple[float, str], list[tuple[CellRow,
                                                                               CellRow]]]:
  """(noise level, score) -> pairs (clean row, noisy row) of the label-noise arm: the same
  arm cell (line, size, budget) and the same score (`CellRow.score`)."""
  arm = [r for r in rows if r.arm == "label noise" and not r.regularisation
         and math.isfinite(r.best_lr)]
  clean = {(r.line, r.train_size, r.budget, r.score): r for r in arm if r.label_noise == 0}
  out: dict[tuple[float, str], list[tuple[CellRow, CellRow]]] = {}
  for r in arm:
    key = (r.line, r.train_size, r.budget, r.score)
    if r.label_noise > 0 and key in clean:
      out.setdefault((r.label_noise, r.score), []).append((clean[key], r))
  return dict(sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1] != "")))


def memorisation(rows: Sequence[CellRow]) -> dict[float, list[float]]:
  """Per label-noise level (0 = clean) of the noise arm: per cell, the best learning rate's
  accuracy at the best epoch minus at the last epoch (each score's own best; positive: the
  last epoch lost accuracy, the signature of noise memorised late, Arpit et al. 2017)."""
  arm = [r for r in rows if r.arm == "label noise" and not r.regularisation
         and math.isfinite(r.best_lr)]
  best = {(r.line, r.train_size, r.budget, r.label_noise): r for r in arm if not r.score}
  out: dict[float, list[float]] = {}
  for r in arm:
    key = (r.line, r.train_size, r.budget, r.label_noise)
    if r.score == "last_epoch" and key in best:
      out.setdefault(r.label_noise, []).append(best[key].best_mean - r.best_mean)
  return dict(sorted(out.items()))


def _move_summary(ways: Sequence[str]) -> str:
  """What the directions support: a move where they agree, 'cannot decide' where they tie."""
  larger, smaller = ways.count("larger"), ways.count("smaller")
  if not larger and not smaller:
    return ("the data cannot decide the direction in " + (
        "its one cell" if len(ways) == 1 else f"any of its {len(ways)} cells"))
  if larger and smaller:
    return f"it moves both ways ({larger} larger, {smaller} smaller of {len(ways)} cells)"
  way = "larger" if larger else "smaller"
  return (f"it is {way} under noise in {max(larger, smaller)} of {len(ways)} cells (the "
          "not-worse sets overlap in the rest)")


def noise_findings(budget: str, rows: Sequence[CellRow], ref_lr: float) -> list[str]:
  """The label-noise arm: noisy training labels against clean ones, at both scores.

  Pairs each noisy row of the arm with the arm's clean row of the same cell and score:
  scored at the clean-validation best epoch (what early stopping restores) and at the last
  epoch (what a practitioner without clean labels keeps). Per level: the best learning
  rate's move (counted where the not-worse sets do not overlap and neither best point is
  unconverged) and the median accuracy, clean vs noisy, at each score; then what the
  directions support at each score, what the last epoch loses against the best one under
  noise and clean (memorisation, Arpit et al. 2017), and the small learning rates' standing.
  """
  by_key = _noise_pairs(rows)
  if not by_key:
    return []
  label = budget_label(budget).capitalize()
  out = []
  levels = sorted({v for v, _ in by_key})
  for v in levels:
    clauses, cells = [], []
    for (level, score), pairs in by_key.items():
      if level != v:
        continue
      cells += [r for _, r in pairs]
      counted = _converged(pairs)
      ways = [direction(r, c) for c, r in counted]
      clauses.append(
          f"at {_AT.get(score, score)}, the median accuracy is "
          f"{median([c.best_mean for c, _ in pairs]):.3f} clean and "
          f"{median([r.best_mean for _, r in pairs]):.3f} noisy, and the best learning rate "
          f"under noise is {_ways_text(ways)}"
          f"{_unconverged_note(len(pairs) - len(counted), 'pair')}")
    cells_n = len({(r.line, r.train_size) for r in cells})
    out.append(f"{label}, label noise {v:g} ({sizes_text([r.train_size for r in cells])}; "
               f"{plural(cells_n, 'cell')}, {runs_text([r.runs for r in cells])}): "
               + "; ".join(clauses) + ".")
  summary = []
  for score in dict.fromkeys(s for _, s in by_key):
    ways = [direction(r, c) for (_, s), pairs in by_key.items() if s == score
            for c, r in _converged(pairs)]
    summary.append(f"scored at {_AT.get(score, score)}, {_move_summary(ways)}")
  out.append(f"{label}, label noise: the best learning rate's move is stated only where the "
             f"not-worse sets do not overlap: {'; '.join(summary)}.")
  drops = memorisation(rows)
  if 0.0 in drops and len(drops) > 1:
    parts = [f"{signed_points(median(d))} points with clean labels" if v == 0 else
             f"{signed_points(median(d))} at noise {v:g}" for v, d in drops.items()]
    stops = ("; a run stops soon after its best epoch under this budget, so its last epoch "
             "is near the best" if budget == "converge" else "")
    out.append(f"{label}, label noise: the best epoch's accuracy minus the last epoch's (each "
               f"at its own best learning rate) is a median of {', '.join(parts)} "
               f"({plural(len(drops[0.0]), 'cell')}{stops}); a larger loss at the last epoch "
               "under noise than with clean labels is the signature of noisy labels memorised "
               "late in training (Arpit et al. 2017).")
  ok = lambda r: small_lr_ok(r, ref_lr)
  standing, all_pairs, all_kept = [], [], []
  for score in dict.fromkeys(s for _, s in by_key):
    parts = []
    for (v, s), pairs in by_key.items():
      if s != score:
        continue
      both = [(c, r) for c, r in pairs if decided(c, ref_lr) and decided(r, ref_lr)]
      all_pairs += pairs
      all_kept += both
      if not parts:
        parts.append(f"{count(ok(c) for c, _ in both)} of {len(both)} cells with clean labels")
      parts.append(f"{count(ok(r) for _, r in both)} of {len(both)} at noise {v:g}")
    standing.append(f"at {_AT.get(score, score)} in {', '.join(parts)}")
  out.append(f"{label}, label noise: a learning rate <= {report.format_lr(ref_lr)} is within "
             f"the noise of the best {'; '.join(standing)}"
             f"{_left_pairs(all_pairs, all_kept, ref_lr)}.")
  return out


def test_findings(budget: str, rows: Sequence[CellRow]) -> list[str]:
  """How optimistic the winner's validation score is: against its runs' held-out test score.

  The factor lines' main cells (`CellRow.main`) at each tested size; the arms' clean cells
  are the same runs again and are not counted twice. The regularisation arm's tuned cells at
  that size, where tested, are said beside them (more points to choose the best from).
  """
  tested = [r for r in rows if math.isfinite(r.test_mean)]
  out = []
  label = budget_label(budget).capitalize()
  for n in sorted({r.train_size for r in tested}):
    mine = [r for r in tested if r.train_size == n and r.main]
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
            f"{abs(100 * median(gaps)):.1f} points (gap from {signed_points(min(gaps))} to "
            f"{signed_points(max(gaps))} across {plural(len(mine), 'cell')}, "
            f"{runs_text([r.runs for r in mine])}; the test interval lies wholly below the "
            f"validation one in {below})")
    tuned = [r.best_mean - r.test_mean for r in tested if r.train_size == n
             and r.regularisation == "tuned" and r.label_noise == 0]
    if tuned:
      text += (f"; with the regularisation tuned too (more points to choose from) the median "
               f"gap is {signed_points(median(tuned))} points")
    out.append(text + ".")
  return out
