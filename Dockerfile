# One image for all five Chronoverse services; compose.yaml picks the command per service.
#
#   docker build -t chronoverse .
#   docker run --rm chronoverse chronoverse --help
#
# Both base images are build arguments so a mirror or a locally imported image can stand in:
#   docker build --build-arg PYTHON_IMAGE=registry.example.com/python:3.11-slim-bookworm .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- build: resolve exactly uv.lock into /opt/chronoverse, then add the project as a wheel.
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
# UV_SYSTEM_CERTS: trust the system CA store (corporate proxies add their CA there).
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_SYSTEM_CERTS=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/chronoverse
WORKDIR /src
# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project --python python3
COPY README.md ./
COPY chronoverse ./chronoverse
COPY services ./services
COPY migrations ./migrations
RUN uv sync --locked --no-dev --no-editable --python python3

# ---- runtime: the interpreter, the virtualenv, and an unprivileged user. No uv, no sources.
FROM ${PYTHON_IMAGE} AS runtime
ARG CHRONOVERSE_UID=10001
RUN groupadd --system --gid "${CHRONOVERSE_UID}" chronoverse \
    && useradd --system --uid "${CHRONOVERSE_UID}" --gid chronoverse \
        --create-home --home-dir /home/chronoverse --shell /usr/sbin/nologin chronoverse
COPY --from=build /opt/chronoverse /opt/chronoverse
ENV PATH=/opt/chronoverse/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHRONOVERSE_LOG_FORMAT=json
USER chronoverse
WORKDIR /home/chronoverse
# 8080 HTTP API, 50051 gRPC; workers serve /healthz, /readyz and /metrics on 9101-9104.
EXPOSE 8080 50051 9101 9102 9103 9104
CMD ["chronoverse", "--help"]
