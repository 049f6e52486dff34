# Set-up and everyday commands. Both `make demo` and `make test` create .venv with pip when it is missing.
# torch comes from pip (torch==2.14.1 torchvision==0.29.1 install from this machine's local disk).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv test test-all demo clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e ".[test]"
	@touch $(STAMP)

test: venv
	$(PY) -m pytest -q

test-all: venv
	$(PY) -m pytest -q -m "slow or not slow"

# The main job on bundled data (until the benchmark lands): the recipe of docs/results.md. Trains DiDiRN's
# standard twin (8 epochs) and DiDiCM (20 epochs) on mnist5k, then evaluates the twin, DiDiCM with CP-8 and the
# one-pass readout. 4 min 42 s on 2 CPU cores (measured); results in $(DEMO_DIR)/*/*.json.
DEMO_DIR ?= runs/demo
DIFFCLS  := $(VENV)/bin/diffcls
demo: venv
	$(DIFFCLS) train --data mnist5k --method standard --model didirn_small --epochs 8 --output $(DEMO_DIR)/standard
	$(DIFFCLS) train --data mnist5k --method didicm --model didirn_small --epochs 20 --output $(DEMO_DIR)/didicm
	$(DIFFCLS) eval --checkpoint $(DEMO_DIR)/standard --data mnist5k --results-file $(DEMO_DIR)/standard/eval.json
	$(DIFFCLS) eval --checkpoint $(DEMO_DIR)/didicm --data mnist5k --sampler cp --steps 8 \
		--results-file $(DEMO_DIR)/didicm/eval_cp8.json
	$(DIFFCLS) eval --checkpoint $(DEMO_DIR)/didicm --data mnist5k --sampler onepass \
		--results-file $(DEMO_DIR)/didicm/eval_onepass.json

clean:
	rm -rf $(VENV) runs .pytest_cache
