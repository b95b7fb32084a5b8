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
	$(PY) -m pytest -q

# The whole path on the built-in dataset: build it (5 % swapped captions as ground truth), flag,
# write a cleaned copy, and retrain under each strategy (quick mode).
demo: setup
	test -d laion_subset || $(PY) cli.py demo-data --out laion_subset --inject-swaps 0.05
	$(PY) cli.py inspect --data laion_subset --examples 3
	test -f laion_subset.clipmem/scores.parquet || $(PY) cli.py flag --data laion_subset
	$(PY) cli.py mitigate --data laion_subset --strategy remove,text-aug --count 100 --overwrite
	$(PY) cli.py tradeoff --data laion_subset --quick
	@echo
	@echo "flag report:      laion_subset.clipmem/report.html"
	@echo "cleaned dataset:  laion_subset.remove+text-aug/ (manifest.parquet, mitigation.json)"
	@echo "trade-off:        laion_subset.tradeoff/tradeoff.md and tradeoff.png"

bench: setup
	$(PY) bench/io.py
	$(PY) bench/train_throughput.py
	$(PY) bench/flag.py
	$(PY) bench/grading.py

clean:
	rm -rf $(STAMPS) laion_subset laion_subset.*
