# The two commands of the README. Each sets up .venv on first use (Python >= 3.10 and make only).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# JAX's persistent compilation cache: a second run skips XLA compilation.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

.PHONY: run test install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m experiments.lr_sweep --out runs/lr_sweep

test: install
	$(PY) -m pytest -n 2 --dist worksteal -q --durations=15 tests

clean:
	rm -rf $(VENV) .jax_cache runs
