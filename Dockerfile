# syntax=docker/dockerfile:1
# gemma4-operator image: the package built as a wheel, installed into a venv, run as a non-root
# numeric UID with no shell involved (exec-form ENTRYPOINT), and able to run with a read-only
# root filesystem (no bytecode writes at run time; the chart mounts an emptyDir at /tmp). The same image runs
# the model download Job (`gemma4-operator download`: huggingface_hub, a dependency in pyproject.toml).
#
#   docker build -t gemma4-operator:0.1.0 .
#   docker run --rm -p 8080:8080 -p 8081:8081 gemma4-operator:0.1.0 --help
#
# The base is pinned to an exact Python patch release; pin it by digest too in a release
# pipeline (python:3.11.14-slim-bookworm@sha256:...), e.g. with Renovate's docker manager.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/gemma4-operator \
 && /opt/gemma4-operator/bin/pip install /dist/*.whl \
 && /opt/gemma4-operator/bin/python -m compileall -q /opt/gemma4-operator/lib \
 && /opt/gemma4-operator/bin/gemma4-operator --help > /dev/null \
 && /opt/gemma4-operator/bin/python -c "import huggingface_hub"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="gemma4-operator" \
      org.opencontainers.image.description="Kubernetes operator for Gemma 4 inference on vLLM or llama.cpp" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/gemma4-operator /opt/gemma4-operator
ENV PATH=/opt/gemma4-operator/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# 65532: the conventional "nonroot" UID/GID; numeric so that runAsNonRoot can verify it.
USER 65532:65532
# 8080: Prometheus metrics (--metrics-port), 8081: kopf liveness /healthz (--health-port).
EXPOSE 8080 8081
ENTRYPOINT ["gemma4-operator", "run"]
