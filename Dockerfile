# pirate_actors: an image that runs workers (pirate-worker) and clients (pirate-call).
#
#   docker build -t pirate-actors .
#   docker run --rm pirate-actors                     # pirate-worker --help
#
# BASE_IMAGE is the official slim Python image by default. Any Debian-based image
# works too, with or without Python (python3 and its venv module are then installed
# with apt), e.g. a base made locally with debootstrap where no registry is reachable.
#
# Where HTTPS goes through a proxy with its own certificate authority, hand pip that
# CA bundle as a build secret; it is only mounted for the install step and never
# stored in the image:
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt -t pirate-actors .
#
# No key is baked in: pass PIRATE_ACTORS_KEY (or --key-file) when a container runs.

ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN set -eu; \
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then \
        apt-get update -o APT::Update::Error-Mode=any; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv; \
        apt-get clean; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 --version

# Build stage: a virtual environment with the package and its runtime dependencies only.
FROM base AS build
COPY . /src
RUN --mount=type=secret,id=ca_bundle \
    set -eu; \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    python3 -m venv /opt/pirate_actors; \
    /opt/pirate_actors/bin/pip install --no-cache-dir --disable-pip-version-check /src; \
    /opt/pirate_actors/bin/pip uninstall -y -q pip setuptools wheel 2>/dev/null || true; \
    /opt/pirate_actors/bin/python -c 'import pirate_actors'

# Runtime stage: the virtual environment, the demo procedures, a non-root user.
FROM base
RUN groupadd --system --gid 10001 pirate \
    && useradd --system --uid 10001 --gid pirate --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin pirate
COPY --from=build /opt/pirate_actors /opt/pirate_actors
WORKDIR /app
COPY demos/ /app/demos/
ENV PATH=/opt/pirate_actors/bin:$PATH
USER pirate
CMD ["pirate-worker", "--help"]
