# Two commands set everything up on a fresh machine:
#   make demo   # train on MovieLens 100k through container/train, serve it, query it
#   make test   # the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench results clean venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-data.txt pyproject.toml tools/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	# o2vtools: the dev-only helpers of benchmarks/ and local_test/ (never in the image)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e tools
	touch $(STAMP)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# The fast tier: every test not marked slow (no real container/train or container/serve process
# beyond a few short ones); about a minute and a half on 2 cores. `make test` (CI) runs them all.
test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python local_test/demo.py

# Benchmark-only packages (the MiniLM baseline of doc_retrieval); -c keeps torch==2.13.0 and the other pins.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.txt -r requirements-bench.txt
	touch $(BENCH_STAMP)

# Every benchmark writes its figures, command, date, versions and load to benchmarks/results/*.json
# (and its PNGs); then `results` renders benchmarks/RESULTS.md from them and the prose in
# benchmarks/prose/*.md. About 45 minutes.
bench: $(BENCH_STAMP)
	for script in train_throughput movielens serve_load reliability scaling doc_ablation doc_retrieval; do \
		test ! -f benchmarks/$$script.py || PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/$$script.py || exit 1; \
	done
	$(MAKE) results

results: $(STAMP)
	$(BIN)/python -m o2vtools.render

clean:
	rm -rf $(VENV) .demo .bench
