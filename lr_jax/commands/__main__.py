"""`python -m lr_jax.commands <command> [flags]`: the `lr-jax` command without its script."""

from lr_jax.commands import main

if __name__ == "__main__":
  main(prog="python -m lr_jax.commands")
