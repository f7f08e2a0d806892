# The two commands of the README. Each sets up .venv on first use (Python >= 3.10 and make only).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# JAX's persistent compilation cache: a second run skips XLA compilation.
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

.PHONY: run test test-invariants install clean

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

# The numerical invariants (golden values, equivalences with optax and with a variant trained
# alone, chunking and compaction) under the XLA emitters lr_jax runs with: the suite compiles
# with the older, faster-compiling ones (tests/conftest.py). CI runs both.
INVARIANTS := -k "golden or equals or hand or optax or does_not_change or changes_no_row or alone"
test-invariants: install
	LR_JAX_TEST_EMITTERS=default $(PY) -m pytest -n 2 --dist worksteal -q $(INVARIANTS) \
	  tests/golden_test.py tests/train_test.py tests/engine_test.py tests/optim_test.py

clean:
	rm -rf $(VENV) .jax_cache runs
