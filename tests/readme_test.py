"""The README's "Your own model, loss, metric, optimizer and data" example runs as printed."""

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
SECTION = "## Your own model, loss, metric, optimizer and data"


def _example() -> str:
  with open(README) as f:
    text = f.read()
  assert SECTION in text, f"README.md lost its section {SECTION!r}"
  section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
  blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
  assert len(blocks) == 1, "the section should hold one python example"
  return blocks[0]


def test_the_readme_example_runs_and_selects_by_its_metric(capsys):
  scope = {"__name__": "readme_example"}
  exec(compile(_example(), README, "exec"), scope)  # pylint: disable=exec-used
  result = scope["result"]
  assert result.num_variants == 3 * 2 * 2  # learning rates x seeds x weight decays
  bacc = result.rows["best_val_bacc"]
  assert np.all((bacc >= 0) & (bacc <= 1)) and result.history["val_bacc"].shape == (12, 8)
  best = result.best[0]
  assert best["metric"] == "val_bacc" and best["higher_is_better"]
  means = [a["mean"] for a in result.aggregates if a["eligible"]]
  assert best["mean"] == max(means) and best["mean"] > 0.6
  assert sorted(set(result.rows["weight_decay"])) == [0.0, 1e-2]
  assert "score: val_bacc cross-fitted" in capsys.readouterr().out
