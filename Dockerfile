# edgewise: the web app on the bundled offline models.
#   docker build -t edgewise .                                       # CPU torch (default)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t edgewise:cuda .
#   docker build --build-arg EXTRAS=web,ray -t edgewise .            # also a Ray head/worker image (README "Scaling out")
#   docker run -p 127.0.0.1:8000:8000 -v edgewise-data:/data edgewise
# or `docker compose up` (docker-compose.yml: the data volume, and a GPU reservation to uncomment).

# the page's vendor libraries (cytoscape, plotly.js-basic-dist-min, swagger-ui-dist for /docs), exactly as
# package-lock.json pins them; no install scripts (swagger-ui-dist pulls @scarf/scarf, whose script phones home)
FROM node:20-slim AS frontend
WORKDIR /frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts

FROM python:3.11-slim
# torch first and pinned; the index picks the build: .../whl/cpu (default) or a CUDA one (.../whl/cu128)
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=web
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    EDGEWISE_DATA=/data EDGEWISE_FRONTEND=/app/frontend
WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY backend backend
RUN pip install ".[${EXTRAS}]"
COPY frontend/index.html frontend/
COPY frontend/css frontend/css
COPY frontend/js frontend/js
COPY --from=frontend /frontend/node_modules frontend/node_modules

# ~/.ray: Ray's auth token, shared by the ray profile's containers through a volume (docker-compose.yml)
RUN useradd --create-home --uid 1000 edgewise && mkdir -p /data /home/edgewise/.ray \
    && chown edgewise /data /home/edgewise/.ray
USER edgewise
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD python -c "import socket; socket.create_connection(('127.0.0.1', 8000), 2)"
# 0.0.0.0 inside the container; docker-compose.yml publishes it on 127.0.0.1 only, and without a token
# only requests addressed to localhost/127.0.0.1 are answered. Set EDGEWISE_TOKEN before publishing it
# anywhere else (or EDGEWISE_ALLOWED_HOSTS for another local name).
CMD ["edgewise", "serve", "--host", "0.0.0.0", "--port", "8000"]
