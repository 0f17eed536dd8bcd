# The two commands of the README: `make serve` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: serve test lint bench two-nodes

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

serve: $(VENV)/.installed  ## install, then start a node on the embedded default (SQLite)
	$(VENV)/bin/openmessenger serve $(ARGS)

test:  ## install everything the tests need, then run every check
	scripts/test

two-nodes: $(VENV)/.installed  ## two federating nodes (alpha.test, beta.test) and a shell beside them
	scripts/two-nodes $(ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench && $(VENV)/bin/mypy

bench:  ## install, then measure the node (bench/RESULTS.md, bench/results/*.json); ARGS='--scenario federation' for two nodes
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]' 'trustme>=1.1'
	command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || echo "wrk not installed: the ceiling is driven by Python load generators instead"
	$(PY) -m bench.run $(ARGS)
