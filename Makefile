# The README's commands. `make demo` and `make test` each set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint format clean

setup: $(VENV)/.installed

# torch first and pinned: 2.13.0 is the CPU wheel on this disk; an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	# System packages the suite needs: Debian's chromium (the web-page test drives a real headless browser;
	# Playwright's own browser downloads are not needed) and PostgreSQL's server binaries (the search test
	# starts a throwaway server).
	if ! test -x /usr/bin/chromium || ! { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1; then \
		apt-get update -q && apt-get install -y -q --no-install-recommends chromium postgresql; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/sftlab models fetch minilm
	$(BIN)/sftlab models fetch paraphrase_minilm_l3
	$(BIN)/sftlab datasets fetch trec6
	$(BIN)/sftlab datasets fetch bible_en_es
	touch $@

demo: setup
	$(BIN)/sftlab train examples/trec6.yaml --overwrite

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
