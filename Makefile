# Self-MOA study. Two commands do everything on a fresh machine:
#   make study            # set up .venv if missing, then run the study (PROFILE=cpu, SEEDS="0 1 2" by default)
#   make test             # set up .venv if missing, then lint and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= cpu
RUN_ID ?=
# Training seeds of `make study`: stages 00-07b run once per seed (data/runs/<profile>-seed<s>/), then one
# cross-seed report (data/runs/<profile>-study/08_report/). `make study SEEDS=0` runs a single seed.
SEEDS ?= 0 1 2
# Extra pip options for torch, e.g. TORCH_PIP="--index-url https://download.pytorch.org/whl/cpu" on a
# machine whose pip would otherwise fetch a CUDA build, or a cu12x index for GPUs.
TORCH_PIP ?=

.PHONY: setup study test lint format bench figures status clean

$(VENV)/.installed: pyproject.toml scripts/install_assets.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP) torch==2.13.0
	$(BIN)/python -m pip install --quiet -e .
	PYTHON=$(BIN)/python bash scripts/install_assets.sh
	$(BIN)/python -m ipykernel install --sys-prefix --name selfmoa --display-name "Python (selfmoa)"
	touch $@

setup: $(VENV)/.installed

study: setup
	$(BIN)/selfmoa study --config configs/$(PROFILE).yaml --seeds $(SEEDS)

status: setup
	$(BIN)/selfmoa status --config configs/$(PROFILE).yaml $(if $(RUN_ID),--run-id $(RUN_ID),--seeds $(SEEDS))

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check selfmoa tests benchmarks notebooks
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check selfmoa tests benchmarks notebooks

format: setup
	$(BIN)/ruff check --fix . && $(BIN)/ruff format selfmoa tests benchmarks notebooks
	$(BIN)/nbstripout notebooks/*.ipynb

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf data/runs .pytest_cache .ruff_cache
