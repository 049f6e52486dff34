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

# The main job on bundled data (until the benchmark lands): train the standard twin and DiDiCM on mnist5k,
# evaluate both, and print their results side by side.
DEMO_DIR ?= runs/demo
demo: venv
	$(PY) -m diffcls.cli train --data mnist5k --method standard --model didirn_small --epochs 4 \
		--output $(DEMO_DIR)/standard
	$(PY) -m diffcls.cli eval --checkpoint $(DEMO_DIR)/standard --data mnist5k \
		--results-file $(DEMO_DIR)/standard/eval.json
	$(PY) -m diffcls.cli train --data mnist5k --method didicm --model didirn_small --epochs 4 \
		--output $(DEMO_DIR)/didicm
	$(PY) -m diffcls.cli eval --checkpoint $(DEMO_DIR)/didicm --data mnist5k --sampler cp --steps 8 \
		--results-file $(DEMO_DIR)/didicm/eval_cp8.json

clean:
	rm -rf $(VENV) runs .pytest_cache
