# Set-up and everyday commands. Both `make demo` and `make test` create .venv with pip when it is missing.
# torch comes from pip (torch==2.14.1 torchvision==0.29.1 install from this machine's local disk).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test test-all lint format demo fashion-mnist clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[test,lint]"
	@touch $(STAMP)

test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m "slow or not slow"

# ruff's lint rules and formatter (configuration in pyproject.toml); `make format` applies them.
lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: venv
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

# The main job on bundled data: the benchmark's quick preset on mnist5k. Trains the standard twin (8 epochs) and
# DiDiCM (20 epochs), each to its validation plateau; evaluates them on 400 test images clean, under 4 corruptions
# × 2 severities and on an 8-px view, and sweeps DiDiCM's samplers; prints the table and writes report.md and
# plots/ into $(DEMO_DIR).
# Re-running resumes (finished rows and checkpoints are kept); `make clean` or a new DEMO_DIR starts afresh.
DEMO_DIR ?= runs/demo
DIFFCLS  := $(VENV)/bin/diffcls
demo: venv
	$(DIFFCLS) bench --preset quick --data mnist5k --output $(DEMO_DIR)

# Fashion-MNIST for `--data fashion-mnist`: Debian's dataset-fashion-mnist puts the four gzipped IDX files in
# /usr/share/datasets/fashion-mnist (needs root; elsewhere fetch the files and use `--data idx:DIR`).
fashion-mnist:
	@if command -v apt-get >/dev/null; then \
		apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist); \
	else \
		echo "apt-get not found: fetch the four Fashion-MNIST IDX files into a folder and use --data idx:DIR" >&2; exit 1; \
	fi

clean:
	rm -rf $(VENV) runs .pytest_cache
