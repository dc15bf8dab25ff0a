# edgewise: `make run` serves the app, `make test` runs every test. Both set up .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE := 1

.PHONY: setup run test bench clean

setup: $(STAMP)

# torch first and pinned (the CPU wheel lies on the dev machines; any looser spec pulls a CUDA build);
# the stamp depends on pyproject.toml so a second `make test` installs nothing.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[web,test]'
	touch $(STAMP)

run: setup
	$(BIN)/edgewise serve

test: setup
	$(BIN)/python -m pytest tests

bench: setup
	$(BIN)/python bench/bench_attribution.py

clean:
	rm -rf $(VENV) .pytest_cache
