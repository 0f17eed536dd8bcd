# The two commands of the README: `make serve` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: serve test lint

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $@

serve: $(VENV)/.installed  ## install, then start a node on the embedded default (SQLite)
	$(VENV)/bin/openmessenger serve $(ARGS)

test:  ## install everything the tests need, then run every check
	scripts/test

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench && $(VENV)/bin/mypy
