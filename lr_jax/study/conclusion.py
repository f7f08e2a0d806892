"""The study's conclusion: a short answer and findings per budget, computed from the table.

No sentence rests on an unconverged point (`cells.decided`): under the to-convergence budget
a cell whose answer rests on one is left out of the counts, and the sentence says how many
and why.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from lr_jax import report
from lr_jax.study.cells import (CellRow, decided, direction, reference_line,
                                small_lr_needed, small_lr_ok)
from lr_jax.study.contrasts import (factor_findings, factor_pairs, noise_findings,
                                    regularisation_findings, test_findings)
from lr_jax.study.phrases import (budget_label, cap_text, count, decades_text, left_out,
                                  median, plural, runs_text, steps_span)


def _lines(rows: Sequence[CellRow]) -> dict[tuple, dict[int, CellRow]]:
  lines: dict[tuple, dict[int, CellRow]] = {}
  for r in rows:
    lines.setdefault(r.line, {})[r.train_size] = r
  return lines


def by_budget(rows: Sequence[CellRow]) -> dict[str, list[CellRow]]:
  """The table's rows per budget, finite ones only, in the order the table first has them:
  the study's (`StudyConfig.budgets`, the reference budget first), as the table's and the
  figures'."""
  out: dict[str, list[CellRow]] = {}
  for name in dict.fromkeys(r.budget for r in rows):
    chosen = [r for r in rows if r.budget == name and math.isfinite(r.best_lr)]
    if chosen:
      out[name] = chosen
  return out


def _under(budget: str) -> str:
  """The budget as an adverbial: 'under fixed epochs', 'trained to convergence'."""
  return "trained to convergence" if budget == "converge" else f"under {budget_label(budget)}"


def _sizes(rows: Sequence[CellRow]) -> tuple[int, int]:
  sizes = sorted({r.train_size for r in rows})
  return sizes[0], sizes[-1]


def _cells_at(rows: Sequence[CellRow], n: int, pred) -> str:
  at = [r for r in rows if r.train_size == n]
  return f"{count(pred(r) for r in at)} of {len(at)} at n={n}"


def _fixed_caveat(budget: str, rows: Sequence[CellRow]) -> str:
  """Under a fixed budget the answer is about that budget: a small learning rate's lower
  score there can be too few steps, not a worse optimum."""
  if budget == "converge":
    return ""
  return (f"a claim about this budget ({steps_span(rows)} a run): a small learning rate can "
          "be under-trained there")


def _short_answer(tables: Mapping[str, list[CellRow]], ref_lr: float,
                  reference: tuple | None) -> list[str]:
  """The article's question answered per budget over its decided cells, each budget's
  caveat, and whether the budget changes the answer on the cells run under both."""
  ref = report.format_lr(ref_lr)
  kept = {b: [r for r in t if decided(r, ref_lr)] for b, t in tables.items()}

  def parts(pred, say_left: bool) -> str:
    texts = []
    for b, t in tables.items():
      mine = kept[b]
      text = (f"{count(pred(r, ref_lr) for r in mine)} of {len(mine)} cells {_under(b)}"
              if mine else f"none of the cells {_under(b)}")
      left = left_out(t, ref_lr)
      texts.append(text + (f" ({left})" if say_left and left else ""))
    return ", ".join(texts)

  answer = [f"A learning rate of {ref} or smaller was necessary (every learning rate not "
            f"significantly worse than the best was that small) in "
            f"{parts(small_lr_needed, True)}.",
            f"It was not significantly worse than the best in {parts(small_lr_ok, False)} "
            "(not worse is not \"as good\": the test cannot show equality)."]
  fixed = [b for b in tables if b != "converge"]
  if fixed:
    answer.append(" ".join(
        f"{_under(b).capitalize()} ({steps_span(tables[b])} a run) the answer is about that "
        "budget: a small learning rate can be under-trained there." for b in fixed))
  if len(tables) > 1 and reference is not None:
    pairs = [p for ps in factor_pairs([r for t in tables.values() for r in t], "budget",
                                      reference).values() for p in ps]
    both = [(a, b) for a, b in pairs if decided(a, ref_lr) and decided(b, ref_lr)]
    changed = count(small_lr_ok(a, ref_lr) != small_lr_ok(b, ref_lr) for a, b in both)
    if both:
      left = len(pairs) - len(both)
      note = f"; {plural(left, 'pair')} more left out, unconverged" if left else ""
      what = (f"{plural(len(both), 'pair')} of cells run under two budgets (the same line and "
              f"size{note})")
      answer.append(f"The budget changes this answer in {changed} of {what}." if changed else
                    f"The budget does not change this answer in any of {what}.")
  return answer


def _reference_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str:
  """In how many decided cells a learning rate <= the reference is within the noise of the
  best, with the cells left out and, under a fixed budget, what the claim is about."""
  mine = [r for r in rows if decided(r, ref_lr)]
  ok = lambda r: small_lr_ok(r, ref_lr)
  text = (f"{budget_label(budget).capitalize()}: a learning rate <= {report.format_lr(ref_lr)} "
          f"is not significantly worse than the best in {count(ok(r) for r in mine)} of "
          f"{len(mine)} cells")
  if mine:
    notes = [runs_text([r.runs for r in mine])]
    small, large = _sizes(mine)
    if small != large:
      notes.insert(0, f"{_cells_at(mine, small, ok)}, {_cells_at(mine, large, ok)}")
    text += f" ({'; '.join(notes)})"
  extra = [t for t in (left_out(rows, ref_lr), _fixed_caveat(budget, rows)) if t]
  return text + "".join(f"; {t}" for t in extra) + "."


def _move_finding(budget: str, rows: Sequence[CellRow]) -> str | None:
  """How the best learning rate moves from each line's smallest size to its largest.

  A move counts only where the two cells' not-worse sets do not overlap (otherwise the data
  cannot decide its direction), and only where neither best point is unconverged.
  """
  larger = smaller = undecided = left = 0
  ends = set()
  runs = []
  for by_size in _lines(rows).values():
    if len(by_size) < 2:
      continue
    small, large = min(by_size), max(by_size)
    a, b = by_size[small], by_size[large]
    ends.add((small, large))
    if a.best_unconverged or b.best_unconverged:
      left += 1
      continue
    runs += [a.runs, b.runs]
    way = direction(a, b)
    larger += way == "larger"
    smaller += way == "smaller"
    undecided += way == "undecided"
  total = larger + smaller + undecided
  if not total and not left:
    return None
  if len(ends) == 1:
    (small, large), = ends
    where = f"at n={small} the best learning rate is larger than at n={large}"
  else:
    where = "at each line's smallest size the best learning rate is larger than at its largest"
  if not total:  # Every line left out: nothing to count.
    return (f"{budget_label(budget).capitalize()}: how the best learning rate moves with the "
            f"size is not said: {'the' if left == 1 else 'all'} {plural(left, 'line')} left "
            f"out, a best point at one end was still improving at {cap_text(rows)}.")
  text = (f"{budget_label(budget).capitalize()}: {where} in {larger} of {total} (optimizer, "
          f"width, schedule) lines and smaller in {smaller}; in the other {undecided} the "
          "not-worse sets overlap, so the data cannot decide the direction"
          + (f" ({runs_text(runs)})" if runs else ""))
  if left:
    text += (f"; {plural(left, 'line')} left out: a best point at one end was still improving "
             f"at {cap_text(rows)}")
  return text + "."


def _uncertainty_finding(budget: str, rows: Sequence[CellRow]) -> str:
  """How sharply each cell's selection is decided: P(best), the not-worse set, the grid's edge."""
  spans = [math.log10(max(r.not_worse_lrs) / min(r.not_worse_lrs)) for r in rows]
  return (f"{budget_label(budget).capitalize()}: the best learning rate has a median P(best) of "
          f"{median([r.best_p for r in rows]):.2f}, and a median of "
          f"{median([len(r.not_worse_lrs) for r in rows]):.0f} learning rates spanning "
          f"{decades_text(median(spans))} are not significantly worse than it, with "
          f"{median([r.runs for r in rows]):.0f} runs per point; the best lies at the edge of "
          f"the grid in {count(r.best_at_edge for r in rows)} of {len(rows)} cells.")


def _steps_finding(budget: str, rows: Sequence[CellRow]) -> str | None:
  """The optimizer steps a run had at the smallest and the largest size."""
  small, large = _sizes(rows)
  steps = lambda n: max(r.steps for r in rows if r.train_size == n)
  if small == large:
    return None
  return (f"{budget_label(budget).capitalize()}: a run had at most {steps(small)} optimizer "
          f"steps at n={small} and {steps(large)} at n={large} ({plural(len(rows), 'cell')}).")


def _convergence_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str:
  """How many runs and points were still improving when the cap ran out."""
  left = sum(sum(r.unfinished) for r in rows)
  total = sum(r.runs * len(r.lrs) for r in rows)
  points = sum(count(r.unconverged) for r in rows)
  small = sum(u for r in rows for lr, u in zip(r.lrs, r.unconverged)
              if lr <= ref_lr * (1 + 1e-6))
  head = (f"{budget_label(budget).capitalize()}: {left} of {total} runs "
          f"({left / max(total, 1):.0%}) were still improving at {cap_text(rows)}")
  if not left:
    return head + ", so every run converged (stopped early or diverged)."
  return (f"{head}, at {points} of {sum(len(r.lrs) for r in rows)} points (in "
          f"{count(any(r.unconverged) for r in rows)} of {len(rows)} cells; {small} of those "
          f"points at a learning rate <= {report.format_lr(ref_lr)}): those points are "
          "unconverged, and no finding rests on them.")


class Conclusion(NamedTuple):
  """The study's conclusion: a short answer, then findings, one sentence each."""

  answer: tuple[str, ...]
  findings: tuple[str, ...]

  def markdown(self) -> str:
    """The answer as a paragraph, then the findings as a Markdown list."""
    return " ".join(self.answer) + "\n\n" + "\n".join(f"- {f}" for f in self.findings)

  def text(self) -> str:
    """The same for a terminal: the answer on one line, a finding per line."""
    return " ".join(self.answer) + "\n" + "\n".join(f"- {f}" for f in self.findings)


def conclusion(rows: Sequence[CellRow], *, reference_lr: float = 1e-4,
               reference: tuple[str, int, str, str] | None = None,
               settings: int | None = None) -> Conclusion:
  """The study's conclusion per budget, every number computed from the table.

  "Within the noise of the best" is the cell's not-worse set (`CellRow.not_worse`): the
  learning rates a paired test cannot tell from the best; it is never "as good". Under the
  to-convergence budget a cell that is not `decided` (its answer rests on a point still
  improving at the cap) is left out of every count, and the sentence says so; a direction
  of the best learning rate is not counted where a best point is unconverged.

  Args:
    rows: the table (`CellRow`s); any subset of budgets, lines, arms, scores and sizes.
    reference_lr: the small learning rate the article recommends.
    reference: the reference line (optimizer, width, schedule, budget) the factors vary
      around (`StudyConfig.reference`); None: read off the table (`reference_line`).
    settings: the regularisation settings each tuned learning rate was the best of (the
      Bonferroni divisor of its "significantly worse"); None: unknown, and said so.

  Returns:
    The short answer (per budget: was a learning rate <= `reference_lr` necessary, was it not
    significantly worse, what a fixed budget's claim is about, does the budget change it),
    from the main cells (`CellRow.main`); then per budget the reference's standing, the best
    learning rate's move along each line, the selection's uncertainty, the steps a run had,
    (to convergence) the runs still improving at the cap; then each factor against the
    reference line, paired by size (`contrasts.factor_findings`); then per budget the
    regularisation and label-noise arms and the held-out test score.
  """
  tables = by_budget([r for r in rows if r.main])
  if not tables:
    return Conclusion(("No cell has a finite result: nothing can be concluded.",), ())
  reference = reference or reference_line(rows)
  findings = []
  for budget, table in tables.items():
    findings += [_reference_finding(budget, table, reference_lr),
                 _move_finding(budget, table), _uncertainty_finding(budget, table),
                 _steps_finding(budget, table)]
    if budget == "converge":
      findings.append(_convergence_finding(budget, table, reference_lr))
  if reference is not None:
    findings += factor_findings([r for t in tables.values() for r in t], reference,
                                reference_lr)
  for budget in by_budget(rows):
    mine = [r for r in rows if r.budget == budget]
    findings += (regularisation_findings(budget, mine, reference_lr, settings=settings)
                 + noise_findings(budget, mine, reference_lr) + test_findings(budget, mine))
  return Conclusion(tuple(_short_answer(tables, reference_lr, reference)),
                    tuple(f for f in findings if f))
