# ClinAIOps — the two commands a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_PASSWORD ?= clinaiops-demo

.PHONY: demo test lint fmt check pytest migrate bench bench-load screenshots clean-venv lock

# The virtualenv is rebuilt when pyproject.toml changes (stamp files record what was installed).
# Every install is held to constraints.txt, the set CI last passed with (`make lock` rewrites it
# after a deliberate upgrade), so a registry's overnight release cannot change a clean clone.
$(VENV)/.stamp-base: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade -c constraints.txt pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade -c constraints.txt pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(VENV)/.stamp-base $@

# A deliberate upgrade: the newest releases pyproject.toml allows, in a fresh virtualenv, written to
# constraints.txt. Run the whole of .ci/run before committing the new file.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip setuptools wheel
	.venv-lock/bin/python -m pip install -q -e '.[dev]'
	{ sed -n '1,3p' constraints.txt; .venv-lock/bin/python -m pip freeze --all --exclude-editable \
	  | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-lock

# What the browser tests inject into pages (axe-core), pinned by package-lock.json.
node_modules/.stamp: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm not found: install Node.js 20 with npm" >&2; exit 1; }
	npm ci --no-audit --no-fund
	touch $@

migrate: $(VENV)/.stamp-base
	$(PY) manage.py migrate --noinput

# Embedded stack on http://$(HOST):$(PORT): SQLite, eager tasks, in-memory channel layer.
demo: migrate
	$(PY) manage.py seed_demo --if-empty --model --password '$(DEMO_PASSWORD)'
	$(PY) manage.py collectstatic --noinput -v 0

	@echo "Serving ClinAIOps on http://$(HOST):$(PORT)/  (portal: /portal/, API docs: /api/docs/)"
	DEBUG=$${DEBUG:-0} SECURE_COOKIES=0 $(BIN)/daphne --verbosity 0 -b $(HOST) -p $(PORT) clinaiops.asgi:application

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

check: $(VENV)/.stamp-dev
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py check

pytest: $(VENV)/.stamp-dev node_modules/.stamp
	$(PY) -m pytest $(PYTEST_ARGS)

# Every check. With DATABASE_URL and REDIS_URL set, the suite runs on PostgreSQL and Redis.
test: lint check pytest

fmt: $(VENV)/.stamp-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every suite in its short profile (bench/README.md): bench/RESULTS.md and bench/results.json.
# With DATABASE_URL on PostgreSQL, the suites that need it run too, each in a database of its own
# beside that one (never that one); without it they are reported skipped. `python -m bench`
# without --quick runs the full profiles.
BENCH_PG = $(filter postgres://% postgresql://%,$(DATABASE_URL))
bench: $(VENV)/.stamp-dev
	@echo "$(PY) -m bench --quick$(if $(BENCH_PG), --database-url \$$DATABASE_URL)"
	@$(PY) -m bench --quick $(if $(BENCH_PG),--database-url '$(DATABASE_URL)')

# The load harness's longer run (docs/load-testing.md): about an hour on PostgreSQL + Redis.
LOAD_ARGS ?= --long
bench-load: $(VENV)/.stamp-dev
	$(PY) -m bench.load $(LOAD_ARGS)

# The README's pictures of the portal (docs/screenshots/), on a fresh demo clinic.
screenshots: $(VENV)/.stamp-dev
	$(PY) scripts/portal_screenshots.py

clean-venv:
	rm -rf $(VENV)
