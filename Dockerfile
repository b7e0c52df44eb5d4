# EventFlo's image: `eventflo` is the entrypoint, so its commands are the arguments.
#
#   docker build -t eventflo .
#   docker run --rm -e EVENTFLO_DATABASE_URL=postgresql://… eventflo migrate
#   docker run -d -p 8000:8000 -e EVENTFLO_DATABASE_URL=… eventflo            # serve
#   docker run -d --no-healthcheck -e EVENTFLO_DATABASE_URL=… eventflo worker
#
# Runs as uid 10001 and with a read-only root filesystem (`--read-only`):
# nothing is written but gunicorn's heartbeat files, in /dev/shm. See
# docs/deployment.md. BASE is the public Python image by default; CI builds
# the same file on a base made from its own Debian packages
# (.ci/build-python-image), as no image registry is reachable there.
ARG BASE=python:3.11-slim-bookworm

# -- build: the project and its dependencies into a virtual environment ------------------------
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/eventflo
# Dependencies first, from setup.cfg alone: a code change does not download them again.
# (README.md is the package's long description: an empty one here, the real one below.)
COPY setup.cfg pyproject.toml /src/
RUN mkdir -p /src/eventflo \
 && touch /src/eventflo/__init__.py /src/README.md \
 && /opt/eventflo/bin/pip install /src \
 && /opt/eventflo/bin/pip uninstall -y eventflo \
 && rm -rf /src/eventflo /src/build /src/eventflo.egg-info
COPY README.md /src/
COPY eventflo /src/eventflo
COPY migrations /src/migrations
RUN /opt/eventflo/bin/pip install --no-deps /src \
 && /opt/eventflo/bin/python -m compileall -q /opt/eventflo/lib

# -- runtime: the virtual environment, no compilers, no build files --------------------------
FROM ${BASE}
ARG VERSION=dev
ARG SOURCE=https://github.com/eventflo/eventflo
LABEL org.opencontainers.image.title="EventFlo" \
      org.opencontainers.image.description="PostgreSQL-backed event processing: API, workers, deliveries" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="MIT"
RUN echo 'eventflo:x:10001:10001:EventFlo:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'eventflo:x:10001:' >> /etc/group
COPY --from=build /opt/eventflo /opt/eventflo
ENV PATH=/opt/eventflo/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8000
# The API's liveness (/healthz, no database), at EVENTFLO_HEALTHCHECK_URL when it is
# served elsewhere. Containers running another command (worker, deliver) run with
# --no-healthcheck, or a check of their own.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; u.urlopen(os.environ.get('EVENTFLO_HEALTHCHECK_URL', 'http://127.0.0.1:8000/healthz'), timeout=2)"]
ENTRYPOINT ["eventflo"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
