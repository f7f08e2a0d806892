"""The study's conclusion: a short answer and findings per budget, computed from the table."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from lr_jax import report
from lr_jax.study.cells import BUDGETS, CellRow, direction, small_lr_needed, small_lr_ok
from lr_jax.study.contrasts import noise_findings, regularisation_findings, test_findings
from lr_jax.study.phrases import budget_label, count, decades_text, median, model_name


def _lines(rows: Sequence[CellRow]) -> dict[tuple, dict[int, CellRow]]:
  lines: dict[tuple, dict[int, CellRow]] = {}
  for r in rows:
    lines.setdefault(r.line, {})[r.train_size] = r
  return lines


def by_budget(rows: Sequence[CellRow]) -> dict[str, list[CellRow]]:
  """The table's rows per budget, in `BUDGETS` order (then any other name), finite ones only."""
  out: dict[str, list[CellRow]] = {}
  for name in [*BUDGETS, *sorted({r.budget for r in rows} - set(BUDGETS))]:
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


def _short_answer(tables: Mapping[str, list[CellRow]], ref_lr: float) -> list[str]:
  """Two or three sentences: the article's question answered per budget."""
  ref = report.format_lr(ref_lr)
  parts = lambda pred: ", ".join(
      f"{count(pred(r, ref_lr) for r in t)} of {len(t)} cells {_under(b)}"
      for b, t in tables.items())
  answer = [f"A learning rate of {ref} or smaller was necessary (every learning rate not "
            f"significantly worse than the best was that small) in {parts(small_lr_needed)}.",
            f"It was not significantly worse than the best in {parts(small_lr_ok)} (not "
            "worse is not \"as good\": the test cannot show equality)."]
  shares = {b: count(small_lr_ok(r, ref_lr) for r in t) / len(t) for b, t in tables.items()}
  if len(tables) > 1:
    most = max(shares, key=shares.get)
    if max(shares.values()) - min(shares.values()) < 1e-9:
      answer.append("The budget does not change this answer.")
    else:
      answer.append(f"The budget changes the answer: a small learning rate is within the "
                    f"noise of the best most often {_under(most)} ({shares[most]:.0%} of cells).")
  return answer


def _reference_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str:
  """In how many cells a learning rate <= the reference is within the noise of the best."""
  small, large = _sizes(rows)
  ok = lambda r: small_lr_ok(r, ref_lr)
  text = (f"{budget_label(budget).capitalize()}: a learning rate <= {report.format_lr(ref_lr)} is "
          f"not significantly worse than the best in {count(ok(r) for r in rows)} of "
          f"{len(rows)} cells")
  if small != large:
    text += f" ({_cells_at(rows, small, ok)}, {_cells_at(rows, large, ok)})"
  return text + "."


def _move_finding(budget: str, rows: Sequence[CellRow]) -> str | None:
  """How the best learning rate moves from the smallest to the largest size, line by line.

  A move counts only where the two cells' not-worse sets do not overlap; otherwise the data
  cannot decide its direction.
  """
  small, large = _sizes(rows)
  if small == large:
    return None
  larger = smaller = undecided = 0
  for by_size in _lines(rows).values():
    if small not in by_size or large not in by_size:
      continue
    way = direction(by_size[small], by_size[large])
    larger += way == "larger"
    smaller += way == "smaller"
    undecided += way == "undecided"
  total = larger + smaller + undecided
  if not total:
    return None
  return (f"{budget_label(budget).capitalize()}: at n={small} the best learning rate is larger "
          f"than at n={large} in {larger} of {total} (optimizer, width, schedule) lines and "
          f"smaller in {smaller}; in the other {undecided} the not-worse sets overlap, so the data "
          "cannot decide the direction.")


def _factor_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str | None:
  """Whether the reference's standing changes with the optimizer, the width, the schedule."""
  clauses = []
  for name, key, show in (("optimizer", lambda r: r.optimizer, str),
                          ("width", lambda r: r.width, model_name),
                          ("schedule", lambda r: r.schedule, str)):
    values = list(dict.fromkeys(key(r) for r in rows))
    if len(values) < 2:
      continue
    counts = [(v, [small_lr_ok(r, ref_lr) for r in rows if key(r) == v]) for v in values]
    shares = {count(c) / len(c) for _, c in counts}
    verb = "does not change" if len(shares) == 1 else "changes"
    clauses.append(f"{verb} with the {name} (" + ", ".join(
        f"{show(v)} {count(c)} of {len(c)}" for v, c in counts) + ")")
  if not clauses:
    return None
  return (f"{budget_label(budget).capitalize()}: the number of cells where a learning rate <= "
          f"{report.format_lr(ref_lr)} is within the noise of the best " + "; ".join(clauses)
          + ".")


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
          f"steps at n={small} and {steps(large)} at n={large}.")


def _convergence_finding(budget: str, rows: Sequence[CellRow], ref_lr: float) -> str:
  """How many runs were still improving when the budget ran out: was convergence reached?"""
  left = sum(sum(r.unfinished) for r in rows)
  total = sum(r.runs * len(r.lrs) for r in rows)
  small = sum(u for r in rows for lr, u in zip(r.lrs, r.unfinished)
              if lr <= ref_lr * (1 + 1e-6))
  cells = count(sum(r.unfinished) > 0 for r in rows)
  verdict = ("so every run converged (stopped early or diverged)" if left == 0 else
             "so convergence was not reached everywhere")
  return (f"{budget_label(budget).capitalize()}: {left} of {total} runs were still improving when "
          f"the budget of at most {max(r.steps for r in rows)} steps ran out, in {cells} of "
          f"{len(rows)} cells ({small} of them at a learning rate <= "
          f"{report.format_lr(ref_lr)}), {verdict}.")


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


def conclusion(rows: Sequence[CellRow], *, reference_lr: float = 1e-4) -> Conclusion:
  """The study's conclusion per budget, every number computed from the table.

  "Within the noise of the best" is the cell's not-worse set (`CellRow.not_worse`): the
  learning rates a paired test cannot tell from the best.

  Args:
    rows: the table (`CellRow`s); any subset of budgets, optimizers, widths, schedules, sizes.
    reference_lr: the small learning rate the article recommends.

  Returns:
    The short answer (per budget: was a learning rate <= `reference_lr` necessary, was it good
    enough), from the main cells (`CellRow.main`); then per budget the findings: the
    reference's standing, the best learning rate's move from the smallest to the largest
    size, the optimizer, width and schedule, the selection's uncertainty, the steps a run
    had, (to convergence) the runs still training; then with tuned regularisation and with
    label noise, each against its plain cell (the best learning rate's move, counted only
    where the not-worse sets do not overlap), and the held-out test score of the winner
    against its validation score.
  """
  tables = by_budget([r for r in rows if r.main])
  if not tables:
    return Conclusion(("No cell has a finite result: nothing can be concluded.",), ())
  findings = []
  for budget, table in tables.items():
    findings += [_reference_finding(budget, table, reference_lr),
                 _move_finding(budget, table), _factor_finding(budget, table, reference_lr),
                 _uncertainty_finding(budget, table), _steps_finding(budget, table)]
    if budget == "converge":
      findings.append(_convergence_finding(budget, table, reference_lr))
    mine = [r for r in rows if r.budget == budget]
    findings += (regularisation_findings(budget, mine, reference_lr)
                 + noise_findings(budget, mine, reference_lr) + test_findings(budget, mine))
  return Conclusion(tuple(_short_answer(tables, reference_lr)),
                    tuple(f for f in findings if f))
