# mtrl: `make run` sets everything up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The CPU-capable torch build; installed before the project so that pip never pulls a CUDA build.
TORCH_PIN ?= torch==2.13.0
STAMP  := $(VENV)/.setup-stamp

.PHONY: setup run toy test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_PIN)"
	$(PIP) install --quiet -e ".[dev,sweep,fused]"
	touch $(STAMP)

# The quick-start experiment: MT-SAC + PCGrad on the cheap 4-task suite, a few minutes on a CPU.
run: setup
	$(VENV)/bin/mtrl train quickstart

# The two-objective toy problem of the CAGrad paper, every aggregator, saved to runs/toy/toy.png.
toy: setup
	$(PY) -m mtrl.surgery.toy --out runs/toy

test: setup lint
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Peer implementations for benchmarks/peers.py, kept out of the project's dependencies.
PEERS := benchmarks/.peers/.stamp
$(PEERS): benchmarks/requirements-peers.txt
	$(PIP) install --quiet --target benchmarks/.peers --no-deps -r benchmarks/requirements-peers.txt
	touch $(PEERS)

# Quick versions of every benchmark (about 20 minutes on 2 cores); each script has --full.
bench: setup $(PEERS)
	$(PY) benchmarks/surgery.py
	$(PY) benchmarks/update_cost.py --quick
	$(PY) benchmarks/peers.py --quick
	$(PY) benchmarks/rollout.py
	$(PY) benchmarks/throughput.py
	$(PY) benchmarks/evaluation.py --episodes 4 --envs-per-task 4
	$(PY) benchmarks/sweep.py --seeds 0-1 --steps 500
	$(PY) benchmarks/parity_sb3.py --quick
	$(PY) benchmarks/learning_cheap.py --seeds 0 1
	$(PY) benchmarks/learning_mt10.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache benchmarks/.peers
