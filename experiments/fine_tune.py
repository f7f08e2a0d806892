"""`python -m experiments.fine_tune` in a checkout; installed, `lr-jax finetune`.

The script is lr_jax/commands/fine_tune.py (its flags, `main`, and the docstring that `--help`
prints), which an installed lr_jax ships; `experiments/` stays in the repository. Imported, this
module is that one (`sys.modules`): `from experiments import fine_tune` gets its `main` and
`FLAGS`, and a test's monkeypatch reaches the code that reads them.
"""

import sys

from lr_jax import commands
from lr_jax.commands import fine_tune as _command

if __name__ == "__main__":
  commands.run(_command)
else:
  sys.modules[__name__] = _command
