# `make test` and `make demo` each do all set-up on a fresh machine, and are quick no-ops once done.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .stamps

.PHONY: setup test demo bench clean

setup: $(STAMPS)/venv $(STAMPS)/system-data

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

$(STAMPS)/system-data: scripts/install_system_data.sh
	@mkdir -p $(STAMPS)
	bash scripts/install_system_data.sh
	@touch $@

test: setup
	$(PY) -m pytest -q tests

demo: setup
	test -d laion_subset || $(PY) cli.py demo-data --out laion_subset --inject-swaps 0.05
	$(PY) cli.py inspect --data laion_subset

bench: setup
	$(PY) bench/io.py

clean:
	rm -rf $(STAMPS) laion_subset laion_subset.*
