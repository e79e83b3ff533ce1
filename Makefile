# Every target creates .venv and installs the project into it when missing.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp

.PHONY: demo test lint bench clean browser

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## stack + scorer + pump with a live view; Ctrl-C stops everything
	$(VENV)/bin/rigwatch demo $(ARGS)

test: $(STAMP) browser  ## unit, integration and e2e tests (starts its own broker and Redis)
	$(PY) -m pytest $(ARGS)

# The console's browser test (tests/e2e/test_console_page.py) drives Debian's chromium, since
# `playwright install` cannot download browsers here. As root with apt-get it is installed, tried
# once (the stamp); otherwise, or if that fails, the test skips with the reason. Never fails the target.
BROWSER_STAMP := $(VENV)/.chromium-tried

browser: $(STAMP)
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ -e $(BROWSER_STAMP) ]; then \
	  echo "chromium is not installed (tried before, see $(VENV)/chromium-install.log): the browser test will skip"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  touch $(BROWSER_STAMP); \
	  echo "installing Debian's chromium for the browser test (log: $(VENV)/chromium-install.log)"; \
	  { DEBIAN_FRONTEND=noninteractive apt-get -qq update \
	    && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends chromium; \
	  } >$(VENV)/chromium-install.log 2>&1 \
	    || echo "chromium could not be installed (see $(VENV)/chromium-install.log): the browser test will skip"; \
	else \
	  echo "chromium is not installed (needs root and apt-get to install it): the browser test will skip"; \
	fi

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
