# citypulse: one image for every service (collector, workers, dashboards, simulator, migrate).
#   docker build -t citypulse .
# Dependencies are pinned by constraints.txt; the deck.gl assets are built into the image
# (no CDN, no internet at run time); the services run as the unprivileged user `citypulse`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# psycopg[binary] ships its own libpq: no system packages needed.
RUN groupadd --system --gid 10001 citypulse \
 && useradd --system --uid 10001 --gid citypulse --home-dir /var/lib/citypulse \
        --create-home --shell /usr/sbin/nologin citypulse

WORKDIR /app
# dependency layer first, so code edits do not reinstall the world
COPY pyproject.toml constraints.txt README.md ./
COPY citypulse ./citypulse
COPY ingest ./ingest
COPY device_sim ./device_sim
COPY twin ./twin
COPY analytics ./analytics
COPY dashboards ./dashboards
COPY sharing ./sharing
COPY standards ./standards
COPY control ./control
COPY bench ./bench
COPY scripts ./scripts
# gcc compiles the collector's JSON pass (ingest/_fastrows.c) and leaves the image after it
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install -c constraints.txt . \
 && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
 && if [ -f scripts/build-assets.sh ]; then bash scripts/build-assets.sh; fi \
 && python -c "import citypulse.cli, ingest._fastrows"

USER citypulse
WORKDIR /var/lib/citypulse
ENV CITYPULSE_DATA_DIR=/var/lib/citypulse \
    CITYPULSE_SPOOL_DIR=/var/lib/citypulse/spool
CMD ["citypulse", "--help"]
