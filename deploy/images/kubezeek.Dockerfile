# The sensor and enricher containers: the kubezeek package (both console scripts) on slim Python.
# Build from the repository root:  docker build -f deploy/images/kubezeek.Dockerfile -t ghcr.io/kubezeek/kubezeek:0.1.0 .
FROM python:3.11.14-slim-bookworm AS build

WORKDIR /src
COPY pyproject.toml README.md ./
COPY enrich/ enrich/
COPY sensor/ sensor/
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TZ=UTC

COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels kubezeek \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 kubezeek \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin kubezeek

# Non-root by default; the DaemonSet runs only the sensor as root (with NET_ADMIN).
USER 10001:10001
ENTRYPOINT []
CMD ["kubezeek", "--help"]
