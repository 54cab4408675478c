# Two entry points from a fresh clone: `make demo` and `make test`. Both are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export RAY_USAGE_STATS_ENABLED ?= 0
export DVC_NO_ANALYTICS ?= 1
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install browser demo test test-slow bench bench-quick lint typecheck format clean-workspace

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Data, embeddings, depth and the example render come from the default DVC remote (.dvc/config:
# a folder beside the checkout; `dvc remote modify --local storage url s3://...` for a studio's
# bucket). Without one, the demo builds the sample library itself, byte-identical to dvc.lock.
demo: install
	$(BIN)/dvc pull --quiet || echo "dvc pull: remote unreachable or incomplete; building locally"
	$(BIN)/story demo

# Headless Chromium renders the storyboard in tests; installed from Debian when missing (as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium not installed: the storyboard browser test will be skipped"; }

test: install browser
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# Every benchmark with its own defaults (hours); bench-quick is a smoke run that keeps the
# committed results (bench/run_all.py).
bench: install
	$(BIN)/python -m bench.run_all

bench-quick: install
	$(BIN)/python -m bench.run_all --quick

lint: install typecheck
	$(BIN)/ruff check flows tasks models tests bench datasets
	$(BIN)/ruff format --check flows tasks models tests bench datasets

# mypy sees the three code folders as the installed story.* namespace through a symlink tree
# (the editable install maps them with an import hook mypy cannot follow).
TYPECHECK_ROOT := $(VENV)/typecheck
typecheck: install
	mkdir -p $(TYPECHECK_ROOT)/story
	for d in flows tasks models; do ln -sfn "$(CURDIR)/$$d" "$(TYPECHECK_ROOT)/story/$$d"; done
	$(BIN)/mypy -p story.flows -p story.tasks -p story.models

format: install
	$(BIN)/ruff format flows tasks models tests bench datasets
	$(BIN)/ruff check --fix flows tasks models tests bench datasets

clean-workspace:
	rm -rf workspace
