# ImageMedix — make run | make test | make ci. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

# `make test` uses the local PostgreSQL and Redis when they answer (as on the team's machines
# and in CI), otherwise the embedded SQLite mode; integration tests then skip and say why.
PG_UP := $(shell (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo yes)
REDIS_UP := $(shell (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && echo yes)
TEST_DATABASE_URL ?= $(if $(DATABASE_URL),$(DATABASE_URL),$(if $(PG_UP),postgres://postgres@127.0.0.1:5432/test,))
TEST_REDIS_URL ?= $(if $(REDIS_URL),$(REDIS_URL),$(if $(REDIS_UP),redis://127.0.0.1:6379/15,))

.PHONY: install run worker test test-embedded lint typecheck format ci seed clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py runserver $(HOST):$(PORT)

worker: install
	$(VENV)/bin/celery -A imagemedix worker --loglevel=INFO --concurrency=1

seed: install
	$(PY) manage.py seed_demo

test: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

test-embedded: install
	env -u DATABASE_URL -u REDIS_URL $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy with the django-stubs and DRF plugins over apps/ and imagemedix/ (config: pyproject.toml).
# The plugin loads the embedded default settings (DEBUG, SQLite), whatever the environment says:
# with DJANGO_DEBUG=0 and no secrets, importing the settings (and so mypy) would fail.
typecheck: install
	env -u DATABASE_URL -u REDIS_URL -u DJANGO_DEBUG $(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

ci: lint typecheck
	$(PY) manage.py makemigrations --check --dry-run
	DJANGO_DEBUG=0 DJANGO_SECRET_KEY=ci-$$(head -c 64 /dev/urandom | base64 | tr -d '/+=\n') \
	  DJANGO_ALLOWED_HOSTS=imagemedix.example PUBLIC_BASE_URL=https://imagemedix.example FILE_ENCRYPTION_KEYS=ci:$$(head -c 32 /dev/urandom | base64) \
	  $(PY) manage.py check --deploy --fail-level WARNING
	$(MAKE) test

clean:
	rm -rf $(VENV) var staticfiles .pytest_cache .ruff_cache .mypy_cache
