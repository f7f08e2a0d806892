"""The study's plan: unions around a reference line, its arms, and what it costs before it trains."""

import collections

import pytest

from lr_jax import study
from lr_jax.errors import ConfigError


@pytest.fixture(scope="module")
def default_plan():
  return study.plan_study(study.StudyConfig())


def _lines(plan):
  """(optimizer, width, arm) -> {budget: [sizes]} of a plan's cells."""
  lines = collections.defaultdict(lambda: collections.defaultdict(list))
  for cell in plan.cells:
    lines[cell.optimizer, cell.width, cell.arm][cell.budget].append(cell.train_size)
  return lines


def test_the_default_breadth_varies_each_factor_around_the_reference_line(default_plan):
  cfg = default_plan.config
  assert cfg.reference == ("adam", 128, "constant", "converge")
  lines = _lines(default_plan)
  every = [25, 50, 100, 200, 400, 1437]  # at least 4 sizes from ~25 to all rows
  # The reference line runs both budgets and both schedules at every size...
  assert lines["adam", 128, ""] == {"converge": every, "steps": every}
  reference = [c for c in default_plan.cells if not c.arm and c.optimizer == "adam"
               and c.width == 128]
  assert {c.schedules for c in reference} == {("constant", "exponential")}
  # ... each other factor is one line differing in it alone: the reference schedule and budget.
  assert lines["sgd", 128, ""] == {"converge": every}
  assert lines["adam", 16, ""] == {"converge": every}
  others = [c for c in default_plan.cells if not c.arm and c not in reference]
  assert {c.schedules for c in others} == {("constant",)}
  # The noise arm: two sizes, three levels, every budget; regularisation: the reference budget.
  assert lines["adam", 128, "label noise"] == {"converge": [50, 200], "steps": [50, 200]}
  assert cfg.label_noise == (0.0, 0.2, 0.4)
  assert lines["adam", 128, "regularisation"] == {"converge": [50, 400]}
  assert {c.family for c in default_plan.cells if c.regularised} == {"adamw"}
  # Unions, not products: no group sweeps noise and regularisation together.
  for group in default_plan.groups:
    assert not ({"label_noise", "dropout_rate"} <= set(group.points))


def test_the_default_breadth_is_costed_within_ten_minutes_and_quick_within_one(default_plan):
  # Plan only: counted from the plan, at the rate measured where the defaults were sized.
  cost = study.plan_cost(default_plan)
  assert cost.groups == len(default_plan.groups) == 30
  assert cost.programs < cost.groups  # a line's budgets at one size share a program
  assert cost.seconds(study.REFERENCE_RATE) <= 600
  quick = study.plan_cost(study.plan_study(study.StudyConfig.quick()))
  assert quick.seconds(study.REFERENCE_RATE) <= 60
  # The wide grid stays available, and its plan says it costs more.
  wide = study.plan_cost(study.plan_study(study.StudyConfig(design="product")))
  assert wide.tflop > cost.tflop and wide.programs > cost.programs


def test_the_cost_line_names_programs_tflop_and_an_estimate():
  cost = study.PlanCost(groups=4, programs=2, runs=96, tflop=1.5, steps=1000)
  rate = study.StudyRate(compile_s=2.0, step_s=1e-3, flops=100e9)
  assert cost.seconds(rate) == pytest.approx(2 * 2.0 + 1000 * 1e-3 + 1.5e12 / 100e9)
  text = study.cost_text(cost, rate)
  for needle in ("4 compile groups", "2 programs", "96 training runs", "1.5 TFLOP", "20s"):
    assert needle in text
  # A machine twice as fast at matmuls is estimated twice as fast at the arithmetic.
  fast = study.machine_rate(2 * study.run.REFERENCE_MATMUL_FLOPS)
  assert fast.flops == pytest.approx(2 * study.REFERENCE_RATE.flops)
  assert fast.compile_s == study.REFERENCE_RATE.compile_s


@pytest.mark.parametrize("changes,needles", [
    ({"noise_sizes": (50, 75)}, ["noise_sizes", "75", "25, 50"]),
    ({"regularisation_sizes": (None,), "train_sizes": (25, 50)}, ["regularisation_sizes",
                                                                   "all"]),
    ({"design": "grid"}, ["'grid'", "union, product"]),
    ({"optimizers": ("adam", "adam")}, ["optimizers", "duplicates"]),
])
def test_study_config_refuses_arms_off_its_sizes_and_unknown_designs(changes, needles):
  with pytest.raises(ConfigError) as e:
    study.StudyConfig(**changes)
  for needle in needles:
    assert needle in str(e.value)


def test_the_product_design_runs_every_line_under_every_budget():
  cfg = study.StudyConfig(design="product", train_sizes=(25, 400), noise_sizes=(25,),
                          regularisation_sizes=(400,))
  lines = _lines(study.plan_study(cfg))
  for opt in ("adam", "sgd"):
    for width in (128, 16):
      assert lines[opt, width, ""] == {"converge": [25, 400], "steps": [25, 400]}
  assert lines["adam", 128, "label noise"] == {"converge": [25], "steps": [25]}
