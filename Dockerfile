# The Quarry API for docker compose: runs against the MongoDB named by
# QUARRY_MONGODB_URL (the compose file's replica set), never the embedded engine.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    QUARRY_HOST=0.0.0.0 \
    QUARRY_PORT=8000 \
    QUARRY_DATA_DIR=/data

WORKDIR /srv/quarry
COPY pyproject.toml README.md ./
COPY app ./app
COPY auth ./auth
COPY management ./management
COPY data_api ./data_api
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /data --create-home quarry

USER quarry
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"
CMD ["uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "2", "--no-access-log", "--no-server-header", "--proxy-headers"]
