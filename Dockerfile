# Object2Vec GPU image for SageMaker training and serving: `docker run IMAGE train`, `docker run IMAGE
# serve` (train and serve are executables on PATH, no ENTRYPOINT, as in SageMaker's bring-your-own
# example).
#
#   ./build_and_push.sh object2vec                   # build, tag :<git-sha> and :latest, push to ECR
#   docker build -t object2vec .                     # build only
#   local_test/train_local.sh object2vec             # train on local_test/test_dir mounted at /opt/ml
#
# CUDA 12.6, torch 2.13.0+cu126: the newest CUDA whose torch wheels still run on every GPU SageMaker
# offers: V100 (ml.p3), T4 (g4dn), A10G (g5), L4 (g6), A100 (p4d), H100/H200 (p5, p5e). cu128 drops
# V100 and cu130 needs driver 580, which no SageMaker host has by default. Hosts with an older
# driver (470 on the default inference hosts) run it through CUDA's forward-compatibility package
# (installed below; container/train and container/serve put it on the library path when the host
# needs it). README, "The GPU image", has the driver matrix. CUDA_VERSION, BASE_IMAGE and
# TORCH_INDEX_URL change together; the build fails when the installed torch is not CUDA_VERSION's.
# The CUDA libraries (cuBLAS, cuDNN, NCCL, ...) come with the torch wheel as nvidia-* packages, so
# the base only needs CUDA's minimal user-space layer; no driver is in the image (the host's is
# mounted). For a reproducible base, pin its digest too:
#   docker build --build-arg BASE_DIGEST=sha256:<digest of the tag> .
# Behind a TLS-intercepting proxy, give pip the CA bundle that trusts it as a build secret (never
# stored in a layer):  docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt .
ARG CUDA_VERSION=12.6
ARG BASE_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04
ARG BASE_DIGEST=

# ---- dependencies: pinned requirements only, so this layer survives code changes ------------------
FROM ${BASE_IMAGE}${BASE_DIGEST:+@}${BASE_DIGEST} AS deps
ARG CUDA_VERSION
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# No compiler: every pin in requirements.txt installs from a wheel (--only-binary below enforces it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# requirements.txt only: test and developer tools (requirements-dev.txt) stay out of the image.
COPY requirements.txt /tmp/requirements.txt
# torch alone from TORCH_INDEX_URL (--index-url, not --extra-index-url): when that index is
# unreachable or lacks the pin, the build stops here instead of falling back to PyPI's torch (a
# CUDA 13 build). Then the other pins and torch's own dependencies from PyPI (2.13.0+cu126 meets
# torch==2.13.0), and a check that stops an index that served another CUDA build.
# --no-compile: no bytecode in the layer.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && pip install --no-compile --only-binary=:all: --no-deps --index-url "${TORCH_INDEX_URL}" \
        "$(grep -E '^torch==' /tmp/requirements.txt)" \
    && pip install --no-compile --only-binary=:all: -r /tmp/requirements.txt \
    && python -c "import sys, torch; want, got = sys.argv[1], torch.version.cuda; \
sys.exit(None if got == want else f'torch {torch.__version__} from {sys.argv[2]} is built for \
CUDA {got}, but CUDA_VERSION is {want}: use the index of that CUDA build')" \
        "${CUDA_VERSION}" "${TORCH_INDEX_URL}"
# What never runs in this image (about 190 MB): torch's C++ test programs (torch/test, the tests in
# torch/bin), protoc, and torch's C++ headers, which only a compiler reads (the image has none, and
# nothing here builds extensions or uses torch.compile). torch/bin/torch_shm_manager stays.
RUN t="$(python -c 'import os, torch; print(os.path.dirname(torch.__file__))')" \
    && rm -rf "$t/test" "$t/include" "$t"/bin/protoc* "$t"/bin/*Test "$t"/bin/test_*

# ---- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}${BASE_DIGEST:+@}${BASE_DIGEST}
ARG CUDA_VERSION
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# cuda-compat-12-6: the forward-compatibility user-mode driver in /usr/local/cuda/compat, from the
# base's CUDA apt repository; used only under an older host driver (object2vec.platform.cuda_compat).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
        "cuda-compat-${CUDA_VERSION%.*}-${CUDA_VERSION#*.}" \
    && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/venv /opt/venv
ENV PATH="/opt/program:/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONIOENCODING=UTF-8

# The package, then the SageMaker entry points. Nothing goes under /opt/ml: SageMaker mounts it.
# Bytecode only for the modules train and serve import, their lazy imports included (38 MB): without
# it every process start (each serving worker, each training rank) compiles them again (measured in
# the CPU image: 1.95 s to import them instead of 0.9 s), and compiling everything pip installed
# would add about 200 MB that never runs.
COPY pyproject.toml README.md /tmp/object2vec/
COPY src /tmp/object2vec/src
# Building the package fetches its build backend (setuptools) from PyPI: the CA secret again.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && pip install --no-compile --no-deps /tmp/object2vec && rm -rf /tmp/object2vec \
    && PYTHONDONTWRITEBYTECODE='' python -c "import object2vec.training.main, object2vec.serving.server, \
object2vec.serving.app, torch.distributed.launcher.api, torch.distributed.elastic.multiprocessing.errors, \
matplotlib.backends.backend_agg, matplotlib.ticker, faiss, gunicorn.app.base, gunicorn.workers.gthread"
COPY container/train container/serve /opt/program/
RUN chmod +x /opt/program/train /opt/program/serve
WORKDIR /opt/program
EXPOSE 8080
