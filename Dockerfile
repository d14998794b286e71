# syntax=docker/dockerfile:1
# Object2Vec GPU image for SageMaker training and serving: `docker run IMAGE train`, `docker run IMAGE
# serve` (train and serve are executables on PATH, no ENTRYPOINT, as in SageMaker's bring-your-own
# example).
#
#   ./build_and_push.sh object2vec                   # build, tag :<git-sha> and :latest, push to ECR
#   docker build -t object2vec .                     # build only
#   local_test/train_local.sh object2vec             # train on local_test/test_dir mounted at /opt/ml
#
# The CUDA libraries (cuBLAS, cuDNN, NCCL, ...) come with the torch wheel as nvidia-* packages, so the
# base image only needs CUDA's minimal user-space layer; there is no driver in the image (SageMaker and
# nvidia-container-toolkit provide the host's). Keep BASE_IMAGE's CUDA version and TORCH_INDEX_URL's
# cu1xx in step. For a reproducible base, pin its digest too:
#   docker build --build-arg BASE_DIGEST=sha256:<digest of the tag> .
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
ARG BASE_DIGEST=

# ---- dependencies: pinned requirements only, so this layer survives code changes ------------------
FROM ${BASE_IMAGE}${BASE_DIGEST:+@}${BASE_DIGEST} AS deps
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# No compiler: every pin in requirements.txt installs from a wheel (--only-binary below enforces it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# requirements.txt only: test and developer tools (requirements-dev.txt) stay out of the image.
COPY requirements.txt /tmp/requirements.txt
# torch==2.13.0 stays pinned: the PyTorch index's 2.13.0+cu128 satisfies it and is preferred.
RUN pip install --only-binary=:all: --extra-index-url "${TORCH_INDEX_URL}" -r /tmp/requirements.txt \
    && python -c "import torch; assert torch.version.cuda, 'expected a CUDA build of torch'"

# ---- runtime ------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}${BASE_DIGEST:+@}${BASE_DIGEST}
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/venv /opt/venv
ENV PATH="/opt/program:/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONIOENCODING=UTF-8

# The package, then the SageMaker entry points. Nothing goes under /opt/ml: SageMaker mounts it.
COPY pyproject.toml README.md /tmp/object2vec/
COPY src /tmp/object2vec/src
RUN pip install --no-deps /tmp/object2vec && rm -rf /tmp/object2vec
COPY container/train container/serve /opt/program/
RUN chmod +x /opt/program/train /opt/program/serve
WORKDIR /opt/program
EXPOSE 8080
