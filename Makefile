# Stox Gateway. `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run run-dev test test-fast test-containers lint format build clean bench chaos chaos-reduced fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python >= 3.11 is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv with the gateway and its development tools

run: $(STAMP)  ## the gateway on its embedded default: in-memory bus, SQLite, services in process
	$(BIN)/stox-gateway serve

run-dev: $(STAMP)  ## the same, restarting on code changes
	$(BIN)/stox-gateway serve --reload

# Two pytest workers, then the `serial` tests (they restart RabbitMQ or PostgreSQL) alone;
# both parts always run, and the status is the first failure's.
test: $(STAMP)  ## every test; RabbitMQ and PostgreSQL tests use the servers on 127.0.0.1
	@status=0; \
	$(BIN)/python -m pytest -n 2 --dist loadfile -m 'not containers and not serial' || status=$$?; \
	$(BIN)/python -m pytest -m 'serial and not containers' || status=$$?; \
	exit $$status

test-containers: $(STAMP)  ## builds the image and runs the compose shape (needs a Docker daemon)
	$(BIN)/python -m pytest -m containers tests/containers -p no:cacheprovider

test-fast: $(STAMP)  ## unit tests only
	$(BIN)/python -m pytest tests/unit -q

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

build: $(STAMP)  ## the distributable wheel, in dist/
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir dist .

clean:
	rm -rf build dist *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

bench: $(STAMP)  ## Stox vs Celery vs Dramatiq vs raw aio-pika; table in bench/results/
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py

chaos: $(STAMP)  ## the full fault-injection suite; table in chaos/results/latest.md
	$(BIN)/python -m chaos.run

chaos-reduced: $(STAMP)  ## every fault once, with few workflows, as a test
	$(BIN)/python -m pytest -m chaos tests/e2e/test_chaos_reduced.py

fuzz: $(STAMP)  ## schemathesis against the gateway's own OpenAPI document
	$(BIN)/python -m pytest -m fuzz tests/contract
