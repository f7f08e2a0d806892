"""The study's findings beside published ones: for each, agrees, disagrees or cannot tell.

Every stance is computed from the table with the conclusion's rules: only decided cells
(`cells.decided`), directions only where the not-worse sets do not overlap and neither best
point is unconverged, and "not significantly worse" never read as "as good".
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from lr_jax import report
from lr_jax.study.cells import CellRow, decided, direction, small_lr_needed, small_lr_ok
from lr_jax.study.contrasts import regularisation_pairs
from lr_jax.study.phrases import (budget_label, count, left_out, median, plural,
                                  signed_points)

STANCES = ("agrees", "disagrees", "cannot tell")

LI_2019 = ("Li, Wei & Ma 2019, \"Towards Explaining the Regularization Effect of Initial Large "
           "Learning Rate in Training Neural Networks\", NeurIPS")
SMITH_2019 = ("Smith & Topin 2019, \"Super-Convergence: Very Fast Training of Neural Networks "
              "Using Large Learning Rates\", Proc. SPIE 11006")
BJORCK_2025 = "Bjorck et al. 2025, \"Scaling Optimal LR Across Token Horizons\", ICLR"
MOSBACH_2021 = ("Mosbach, Andriushchenko & Klakow 2021, \"On the Stability of Fine-tuning BERT: "
                "Misconceptions, Explanations, and Strong Baselines\", ICLR")
ARPIT_2017 = ("Arpit et al. 2017, \"A Closer Look at Memorization in Deep Networks\", ICML")


class Stance(NamedTuple):
  """One published finding and this study's stance on it.

  Attributes:
    topic: a few words, e.g. "Large learning rates as regularisers".
    cites: the publications, each "Authors year, "Title", venue".
    claim: what they found, one sentence.
    stance: one of `STANCES`.
    evidence: the study's numbers behind the stance, one or two sentences.
  """

  topic: str
  cites: tuple[str, ...]
  claim: str
  stance: str
  evidence: str

  def markdown(self) -> str:
    """A Markdown list item: topic, citations, claim, then this study's stance."""
    return (f"- **{self.topic}** ({'; '.join(self.cites)}). {self.claim} This study "
            f"**{self.stance}**: {self.evidence}")


def _majority(k: int, m: int) -> bool:
  return m > 0 and 2 * k > m


def large_lr_stance(rows: Sequence[CellRow], reference_lr: float) -> Stance:
  """Large learning rates as regularisers, from the main cells trained to convergence.

  Agrees when in most decided cells every learning rate <= `reference_lr` is significantly
  worse than the (larger) best and a small one is needed in none; disagrees when in most a
  small one is needed; otherwise cannot tell. Only to-convergence cells speak to it: under a
  fixed budget a small learning rate's lower score can be too few steps. The regularisation
  arm's move of the best learning rate is said beside it (Smith & Topin: a large learning
  rate regularises, so other regularisation must be reduced to use one).
  """
  ref = report.format_lr(reference_lr)
  topic, cites = "Large learning rates as regularisers", (LI_2019, SMITH_2019)
  claim = ("A network trained with a large initial learning rate, then annealed, generalises "
           "better than one trained with a small rate from the start, which first memorises "
           "easy-to-fit, hard-to-generalise patterns; large rates regularise, so other "
           "regularisation must be reduced to use them.")
  main = [r for r in rows if r.main and r.budget == "converge" and math.isfinite(r.best_lr)]
  cells = [r for r in main if decided(r, reference_lr)]
  worse = count(not small_lr_ok(r, reference_lr) for r in cells)
  needed = count(small_lr_needed(r, reference_lr) for r in cells)
  m = len(cells)
  if not main:
    stance, evidence = "cannot tell", (
        "no cell was trained to convergence, and under a fixed budget a small learning "
        "rate's lower score can be too few steps rather than a missing regulariser.")
  elif not cells:
    stance, evidence = "cannot tell", (
        f"every one of the {plural(len(main), 'cell')} trained to convergence rests on a point "
        "still improving at the cap.")
  else:
    counts = (f"trained to convergence, every learning rate <= {ref} is significantly worse "
              f"than the best in {worse} of {plural(m, 'decided cell')}, and only such small "
              f"ones are within the noise of the best in {needed}")
    if _majority(worse, m) and not needed:
      stance = "agrees"
      evidence = f"{counts}."
    elif _majority(needed, m):
      stance = "disagrees"
      evidence = f"{counts}: there the small learning rate is the one that generalises."
    else:
      stance = "cannot tell"
      evidence = (f"{counts}; elsewhere a small learning rate is not significantly worse, "
                  "which is not \"as good\": the test cannot separate them.")
    why = left_out(main, reference_lr)
    if why:
      evidence += f" {why}."
  pairs = [(p, t) for p, t in regularisation_pairs(rows)
           if not (p.best_unconverged or t.best_unconverged)]
  if pairs:
    ways = [direction(t, p) for p, t in pairs]
    evidence += (f" With dropout and weight decay tuned, the best learning rate is smaller in "
                 f"{ways.count('smaller')} and larger in {ways.count('larger')} of "
                 f"{plural(len(ways), 'cell')} of the regularisation arm (a smaller one is "
                 "what a large rate's regularising role would predict); the not-worse sets "
                 f"overlap in {ways.count('undecided')}.")
  return Stance(topic, cites, claim, stance, evidence)


def horizon_pairs(rows: Sequence[CellRow]) -> list[tuple[CellRow, CellRow]]:
  """(shorter, longer) horizon pairs: main cells of the same line and size under two budgets
  whose full runs differ in optimizer steps (`CellRow.steps`)."""
  main = [r for r in rows if r.main and math.isfinite(r.best_lr)]
  by_cell: dict[tuple, list[CellRow]] = {}
  for r in main:
    by_cell.setdefault((r.line, r.train_size), []).append(r)
  out = []
  for cells in by_cell.values():
    for i, a in enumerate(cells):
      for b in cells[i + 1:]:
        if a.budget != b.budget and a.steps != b.steps:
          out.append((a, b) if a.steps < b.steps else (b, a))
  return out


def horizon_stance(rows: Sequence[CellRow]) -> Stance:
  """The optimal learning rate falling as the training horizon grows.

  Compares each main cell's best learning rate under the budget with more steps against the
  same line and size under the one with fewer (`horizon_pairs`), counted where the not-worse
  sets do not overlap and neither best point is unconverged. Agrees when the longer horizon's
  best is smaller in some pairs and larger in none; disagrees when the reverse; otherwise
  cannot tell.
  """
  topic, cites = "The optimal learning rate falls as the horizon grows", (BJORCK_2025,)
  claim = ("For a fixed model, the best learning rate falls as the number of training steps "
           "(tokens) grows.")
  pairs = horizon_pairs(rows)
  counted = [(a, b) for a, b in pairs if not (a.best_unconverged or b.best_unconverged)]
  ways = [direction(b, a) for a, b in counted]
  smaller, larger = ways.count("smaller"), ways.count("larger")
  if not pairs:
    return Stance(topic, cites, claim, "cannot tell",
                  "no line was run at one size under two budgets of different lengths.")
  steps = lambda budget: max(r.steps for p in pairs for r in p if r.budget == budget)
  names = "; ".join(f"{budget_label(b)}, up to {steps(b)} steps, against {budget_label(a)}, "
                    f"up to {steps(a)}" for a, b in dict.fromkeys((a.budget, b.budget)
                                                                  for a, b in pairs))
  counts = (f"with the longer budget ({names}) the best learning rate is smaller in {smaller} "
            f"and larger in {larger} of {plural(len(counted), 'pair')} of cells (same line and "
            f"size); the not-worse sets overlap in {ways.count('undecided')}")
  left = len(pairs) - len(counted)
  note = (f"; {plural(left, 'pair')} left out: a best point was still improving at the cap"
          if left else "")
  caveat = (" Early stopping ends most runs of the to-convergence budget before its cap, so "
            "its horizon is at most the cap." if any(b.budget == "converge" for p in pairs
                                                    for b in p) else "")
  if smaller and not larger:
    stance = "agrees"
  elif larger and not smaller:
    stance = "disagrees"
  else:
    stance = "cannot tell"
  return Stance(topic, cites, claim, stance, f"{counts}{note}.{caveat}")


def fine_tuning_stance() -> Stance:
  """Small learning rates in fine-tuning: this study has no fine-tuning arm."""
  return Stance(
      "Small learning rates in fine-tuning", (MOSBACH_2021,),
      "Fine-tuning a pretrained BERT is unstable; small learning rates with Adam's bias "
      "correction, trained for many more iterations, make it stable.", "cannot tell",
      "every model here is trained from scratch; the study has no fine-tuning arm. The "
      "repository's transfer experiment, `experiments/fine_tune.py`, is where that question "
      "is asked.")


class Memorised(NamedTuple):
  """One noisy cell of the label-noise arm beside its clean cell, at both scores."""

  noisy_best: CellRow
  noisy_last: CellRow
  clean_best: CellRow
  clean_last: CellRow

  @property
  def excess(self) -> float:
    """What the last epoch loses against the best one under noise, beyond what it loses with
    clean labels (accuracy, each score at its own best learning rate)."""
    return ((self.noisy_best.best_mean - self.noisy_last.best_mean)
            - (self.clean_best.best_mean - self.clean_last.best_mean))


def memorised_cells(rows: Sequence[CellRow]) -> list[Memorised]:
  """The label-noise arm's noisy cells with both scores and a clean cell beside them, under
  the fixed-steps budget: the one without early stopping, whose last epoch is the end of
  training rather than a few epochs after the best."""
  arm = {(r.line, r.train_size, r.budget, r.label_noise, r.score): r for r in rows
         if r.arm == "label noise" and not r.regularisation and math.isfinite(r.best_lr)
         and r.budget == "steps"}
  out = []
  for (line, n, budget, v, score), r in arm.items():
    if v == 0 or score:
      continue
    parts = [arm.get((line, n, budget, v, "last_epoch")), arm.get((line, n, budget, 0.0, "")),
             arm.get((line, n, budget, 0.0, "last_epoch"))]
    if all(p is not None for p in parts):
      out.append(Memorised(r, *parts))
  return out


def memorisation_stance(rows: Sequence[CellRow], tolerance: float = 0.01) -> Stance:
  """Noisy labels memorised late in training, from the label-noise arm's two scores.

  Agrees when the last epoch loses more than `tolerance` more accuracy under noise than with
  clean labels (median over the noisy cells) and its 95% interval lies wholly below the best
  epoch's in at least half of them; disagrees when it loses no more (median excess <= 0) and in
  at least half even the lower edge of the last epoch's interval is within `tolerance` of the
  best epoch's accuracy (a loss larger than that is ruled out); otherwise cannot tell.
  """
  topic, cites = "Noisy labels are memorised late in training", (ARPIT_2017,)
  claim = ("Networks learn the patterns shared by clean examples first and memorise noisy "
           "labels later, so under label noise validation accuracy peaks early and training "
           "on costs accuracy; regularisation hinders the memorisation.")
  cells = memorised_cells(rows)
  if not cells:
    return Stance(topic, cites, claim, "cannot tell",
                  "no noisy cell was scored at both its best and its last epoch under the "
                  "fixed-steps budget (the one budget that trains past the best epoch).")
  excess = median([c.excess for c in cells])
  below = count(c.noisy_last.best_mean + _ci(c.noisy_last) < c.noisy_best.best_mean
                - _ci(c.noisy_best) for c in cells)
  # A loss beyond `tolerance` is ruled out where even the last epoch's lower edge is within it.
  ruled_out = count(c.noisy_last.best_mean - _ci(c.noisy_last) >= c.noisy_best.best_mean
                    - tolerance for c in cells)
  noisy = median([c.noisy_best.best_mean - c.noisy_last.best_mean for c in cells])
  clean = median([c.clean_best.best_mean - c.clean_last.best_mean for c in cells])
  evidence = (f"under fixed steps, the best epoch's accuracy minus the last epoch's is a median "
              f"of {signed_points(noisy)} points with noisy labels and {signed_points(clean)} "
              f"with clean ones ({plural(len(cells), 'noisy cell')}; the median excess under "
              f"noise is {signed_points(excess)} points); the last epoch's 95% interval lies "
              f"wholly below the best epoch's in {below} of {len(cells)}")
  if excess > tolerance and 2 * below >= len(cells):
    stance = "agrees"
  elif excess <= 0 and 2 * ruled_out >= len(cells):
    stance = "disagrees"
    evidence += (f", and a loss of more than {100 * tolerance:g} point is ruled out in "
                 f"{ruled_out}")
  else:
    stance = "cannot tell"
  return Stance(topic, cites, claim, stance, evidence + ".")


def _ci(row: CellRow) -> float:
  return row.best_ci if math.isfinite(row.best_ci) else 0.0


def stances(rows: Sequence[CellRow], *, reference_lr: float = 1e-4,
            tolerance: float = 0.01) -> list[Stance]:
  """The study's stance on each published finding (see `literature`)."""
  return [large_lr_stance(rows, reference_lr), horizon_stance(rows), fine_tuning_stance(),
          memorisation_stance(rows, tolerance)]


def literature(rows: Sequence[CellRow], *, reference_lr: float = 1e-4,
               tolerance: float = 0.01) -> str:
  """The findings beside published ones, as the report's last section.

  Large learning rates as regularisers (Li, Wei & Ma 2019; Smith & Topin 2019), the optimal
  learning rate falling as the training horizon grows (Bjorck et al. 2025), small learning
  rates in fine-tuning (Mosbach et al. 2021), noisy labels memorised late (Arpit et al. 2017).

  Args:
    rows: the study's table (`CellRow`s).
    reference_lr: the article's small learning rate.
    tolerance: accuracy within which a loss counts as none (one point).

  Returns:
    A Markdown list, one item per finding: its citations, what it found, and whether this
    study agrees, disagrees or cannot tell, with the numbers behind that.
  """
  return "\n".join(s.markdown() for s in stances(rows, reference_lr=reference_lr,
                                                  tolerance=tolerance))
