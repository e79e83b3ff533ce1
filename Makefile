# Every target creates .venv and installs the project into it when missing.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## stack + scorer + pump with a live view; Ctrl-C stops everything
	$(VENV)/bin/rigwatch demo $(ARGS)

test: $(STAMP)  ## unit, integration and e2e tests (starts its own broker and Redis)
	$(PY) -m pytest $(ARGS)

# Real data when ../shared is beside the checkout, else the resolved data (RIGWATCH_DATA, cache, simulator).
BENCH_DATA := $(wildcard ../shared/data/hydraulic/hydraulic_cycles.csv)

bench: $(STAMP)  ## scorer throughput / latency / CPU / RSS against baselines; results/ holds JSON + markdown
	$(VENV)/bin/rigwatch bench scorer $(if $(BENCH_DATA),--data $(BENCH_DATA)) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check rigwatch services loadgen tests
	$(VENV)/bin/ruff format --check rigwatch services loadgen tests
	$(VENV)/bin/mypy

clean:
	rm -rf .rigwatch .pytest_cache .mypy_cache .ruff_cache
