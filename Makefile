# Every target sets itself up in a local virtualenv (.venv) on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: serve test lint bundles bench dist clean

# .ci/constraints.txt pins the converter stack to the versions the tests prove (pyproject's ranges)
$(BIN)/.installed: pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c .ci/constraints.txt -e '.[pack,boost,sklearn-runtime,test,bench,docs,client,sign,s3,offline,distributed]'
	touch $@

## serve: run the gateway on the example bundles with a fresh development key
serve: $(BIN)/.installed
	$(BIN)/python -m bundlegate.cli.devserve bundles/ --port $(PORT)

## test: lint, type-check and run the whole test suite
test: $(BIN)/.installed lint
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench bundles
	$(BIN)/ruff format --check src tests bench bundles
	$(BIN)/mypy

## bundles: rebuild the example bundles in bundles/ (deterministic)
bundles: $(BIN)/.installed
	$(BIN)/python bundles/build_examples.py bundles/

## bench: load-test the gateway (and the peers, where their venvs exist); writes bench/RESULTS.md
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

## dist: build the wheel into dist/ (in a throw-away build venv: no development install needed)
dist:
	rm -rf dist build .venv-dist
	$(PYTHON) -m venv .venv-dist
	.venv-dist/bin/pip install --quiet --upgrade pip
	.venv-dist/bin/pip wheel --quiet --no-deps --wheel-dir dist .
	rm -rf .venv-dist build
	@ls dist/*.whl

clean:
	rm -rf $(VENV) .venv-dist dist build .mypy_cache .ruff_cache .pytest_cache
