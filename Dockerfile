# One image for every role: `serve` (default), `worker TYPE`, `auth-service`, `db upgrade`.
# Configuration comes only from STOX_* variables and an optional mounted file (STOX_CONFIG).
#   docker build -t stox-gateway .
#   docker build --network host --build-arg BASE_IMAGE="$(scripts/base-image.sh)" -t stox-gateway .
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# binutils for `strip` only; it stays in this stage.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/stox
# The dependencies first, from pyproject.toml alone: a source change leaves this layer cached.
COPY pyproject.toml /build/
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/build/pyproject.toml', 'rb'))['project']['dependencies']))" > /build/requirements.txt \
 && /opt/stox/bin/pip install --no-compile -r /build/requirements.txt
COPY README.md /build/
COPY src /build/src
COPY deploy/image/precompile.py /build/
# A regular (not editable) install: the dashboard and the migrations travel as package data.
# Then the size: no pip, debug symbols stripped (not from the libraries auditwheel vendored
# and patched: stripping those can break them), bytecode only for what the roles import.
RUN /opt/stox/bin/pip install --no-compile --no-deps /build \
 && /opt/stox/bin/pip uninstall -y pip setuptools wheel \
 && find /opt/stox -name '*.so*' -type f -not -path '*.libs/*' -exec strip --strip-unneeded {} + \
 && find /opt/stox -name __pycache__ -prune -exec rm -rf {} + \
 && /opt/stox/bin/python -W ignore /build/precompile.py
# Data nothing here reads (~55 MB): Swagger UI's editor and source maps (/docs loads the UI
# bundle, api/docs.py), and babel's locales but the one the reference services write prices
# in (money.COPY_LOCALE) and the root it inherits from.
RUN site=$(echo /opt/stox/lib/python3*/site-packages) \
 && locale=$(/opt/stox/bin/python -c 'from stox_gateway.money import COPY_LOCALE; print(COPY_LOCALE)') \
 && rm -f "$site"/swagger_ui/static/swagger-editor* "$site"/swagger_ui/static/*.map \
 && find "$site"/babel/locale-data -type f ! -name root.dat ! -name "$locale.dat" -delete

FROM ${BASE_IMAGE}
# The base images carry no compiler; only the virtualenv is copied over, no wheels or caches.
RUN groupadd --system --gid 10001 stox \
 && useradd --system --uid 10001 --gid stox --home-dir /var/lib/stox --create-home stox \
 && mkdir -p /var/lib/stox/media && chown -R stox:stox /var/lib/stox
COPY --from=build /opt/stox /opt/stox
ENV PATH=/opt/stox/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STOX_SERVER__HOST=0.0.0.0 \
    STOX_SERVER__PORT=8080 \
    STOX_MEDIA__ROOT=/var/lib/stox/media \
    STOX_LOGGING__FORMAT=json
USER stox
WORKDIR /var/lib/stox
EXPOSE 8080 50052
# Readiness, not liveness: a replica whose database or bus is away is taken out of rotation.
# A long start period: failed probes while it starts do not count, and a loaded host can take
# a minute to start Python, migrate and connect (a passing probe ends the period at once).
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python3", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('STOX_SERVER__PORT', '8080'), timeout=4).status != 200)"]
# SIGTERM is the gateway's and the workers' graceful stop: no new work, the step in hand is
# finished and acked, the outbox flushed, WebSockets closed with 1001.
STOPSIGNAL SIGTERM
ENTRYPOINT ["stox-gateway"]
CMD ["serve"]
