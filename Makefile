# `make demo`: set up (once) and run the reference sweep locally, then analyze it.
# `make test`: set up (once) and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench-analyze bench-train bench-tune bench-slurm clean

# The repo's venv: every extra (`sweeper[all]`) and the dev tools, editable, with the tested torch pinned
# by constraints.txt (the library itself declares ranges).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch torchvision
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sweeper launch sweeps/reg.yaml --executor local
	$(BIN)/analyze --checkpoints-path runs/reg/latest

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Benchmarks print ratios against a baseline measured in the same run (see benchmarks/ and the README).
bench-analyze: $(STAMP)
	$(BIN)/python benchmarks/bench_analyze.py

bench-train: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py

bench-tune: $(STAMP)
	$(BIN)/python benchmarks/bench_tune.py

bench-slurm: $(STAMP)  # needs the local cluster: sudo slurm/cluster.sh start
	$(BIN)/python benchmarks/bench_slurm.py

clean:
	rm -rf $(VENV) *.egg-info
