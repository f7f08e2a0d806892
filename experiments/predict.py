"""`python -m experiments.predict` in a checkout; installed, `lr-jax predict`.

The script is lr_jax/commands/predict.py (its flags, `main`, and the docstring that `--help`
prints), which an installed lr_jax ships; `experiments/` stays in the repository. Imported, this
module is that one (`sys.modules`): `from experiments import predict` gets its `main` and `FLAGS`,
and a test's monkeypatch reaches the code that reads them.
"""

import sys

from lr_jax import commands
from lr_jax.commands import predict as _command

if __name__ == "__main__":
  commands.run(_command)
else:
  sys.modules[__name__] = _command
