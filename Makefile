# Customer Panel. `make run` starts everything; `make test` runs the suite on both databases.
PYTHON ?= $(shell command -v python3.13 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/customerpanel
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-sqlite test-postgres install lint format bench bench-quick mutate clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "Python 3.12+ is required; set PYTHON=/path/to/python3.12")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

.env:
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env
	@echo "Wrote .env with a new SECRET_KEY"

## run: web (gunicorn on http://$(HOST):$(PORT)) + import worker, embedded SQLite by default
run: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py collectstatic --noinput -v0
	@echo "Customer Panel on http://$(HOST):$(PORT)/  (Ctrl-C stops web and worker)"
	@VENV=$(VENV) HOST=$(HOST) PORT=$(PORT) exec scripts/run.sh

## test: the whole suite on SQLite, then on PostgreSQL (fails if PostgreSQL is unreachable)
test: install
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

# The suite runs in parallel (JOBS processes); the crash drills (marked slow) run after it,
# alone, because one of them restarts PostgreSQL. Exit code 5 means "none selected".
JOBS ?= 2
SQLITE_URL ?= sqlite:///$(CURDIR)/var/db.sqlite3
define run_suite
	DATABASE_URL=$(1) $(VENV)/bin/pytest -n $(JOBS) -m "not slow" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	DATABASE_URL=$(1) $(VENV)/bin/pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]
endef

test-sqlite: install
	$(call run_suite,$(SQLITE_URL))

test-postgres: install
	@$(PY) -c 'import psycopg, sys; psycopg.connect(sys.argv[1].rsplit("/", 1)[0] + "/postgres", connect_timeout=5).close()' "$(PG_URL)" \
	  || (echo "PostgreSQL is not reachable at $(PG_URL)"; exit 1)
	$(call run_suite,$(PG_URL))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## bench: the full benchmark (2 M rows ≈ 2 GB); bench-quick: 200 k rows
bench: install
	$(PY) bench/run.py

bench-quick: install
	$(PY) bench/run.py --quick

## mutate: mutation testing of the import rules and the customer service (slow; not part of CI).
# Settings in pyproject.toml [tool.mutmut]. One child at a time: the children share the SQLite
# test database. mutants/ is rebuilt each time so that no stale copy of a test is run.
mutate: install
	rm -rf mutants
	DATABASE_URL=sqlite:///$(CURDIR)/var/mutate.sqlite3 $(VENV)/bin/mutmut run --max-children 1
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) staticfiles mutants
