# syntax=docker/dockerfile:1
# The Keel gateway (and every `keel` command) in a CPU-only image: a build stage that installs Keel and its
# pinned dependencies into a virtualenv, and a slim runtime stage that copies only that virtualenv and runs
# as an unprivileged user. Build: `docker build -t keel .`; run it with compose.yaml or deploy/kubernetes/.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# torch's CPU wheels: the version is pinned in requirements/torch.txt; a plain PyPI torch is a multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG KEEL_EXTRAS=serve,index,s3,train,otel
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/keel
COPY requirements/ requirements/
RUN /opt/keel/bin/pip install --index-url "${TORCH_INDEX_URL}" -r requirements/torch.txt
COPY pyproject.toml README.md ./
COPY src/ src/
# Exact pins from the lock file, as `make install` uses them (open ranges make pip backtrack for an hour).
RUN /opt/keel/bin/pip install -c requirements/lock.txt -c requirements/torch.txt ".[${KEEL_EXTRAS}]"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 keel \
    && useradd --system --uid 10001 --gid keel --home-dir /srv/keel --create-home --shell /usr/sbin/nologin keel
COPY --from=build /opt/keel /opt/keel
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/keel-entrypoint
ENV PATH=/opt/keel/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    KEEL_WORKSPACE=/srv/keel/workspace
USER 10001:10001
WORKDIR /srv/keel
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
ENTRYPOINT ["keel-entrypoint"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
