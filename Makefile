# edgewise: `make run` serves the app, `make test` runs every test. Both set up .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
NPM_STAMP := frontend/node_modules/.installed
CHROMIUM  := /usr/bin/chromium
export HF_HUB_OFFLINE := 1

.PHONY: setup run test bench results clean

setup: $(STAMP) $(NPM_STAMP)

# torch first and pinned (the CPU wheel lies on the dev machines; any looser spec pulls a CUDA build);
# the stamp depends on pyproject.toml so a second `make test` installs nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[web,test,ray]'
	touch $(STAMP)

# the page's libraries (cytoscape, plotly), served by the backend under /vendor/; again only when the lock changes
$(NPM_STAMP): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --ignore-scripts
	touch $(NPM_STAMP)

# the browser tests drive Debian's chromium (never `playwright install`); installed only when missing
$(CHROMIUM):
	$$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update
	$$([ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

run: setup
	$(BIN)/edgewise serve

test: setup $(CHROMIUM)
	node --test tests/js/
	$(BIN)/python -m pytest tests

bench: setup $(CHROMIUM)
	$(BIN)/python bench/bench_attribution.py
	$(BIN)/python bench/bench_slider.py
	$(BIN)/python bench/bench_time_to_graph.py
	$(BIN)/python bench/bench_load.py --seconds 20
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_loading.py

# docs/results.md: every method and ACDC on every bundled task, MIB's CPR / CMD and AUROC (~4 CPU-minutes, 2 processes)
results: $(STAMP)
	$(BIN)/python bench/compare_methods.py

clean:
	rm -rf $(VENV) .pytest_cache frontend/node_modules
