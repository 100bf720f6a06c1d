# The prediction service: a slim image, a non-root user, gunicorn.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The core + the `serving` extra of pyproject.toml, at the tested pins: no scikit-learn, joblib or skl2onnx.
COPY requirements-serving.txt /app/requirements-serving.txt
RUN pip install -r /app/requirements-serving.txt

COPY pyproject.toml README.md /app/
COPY include /app/include
RUN pip install --no-deps /app
COPY serving /app/serving

RUN useradd --system --uid 10001 --home-dir /app serving \
    && mkdir -p /run/serving && chown serving /run/serving  # gunicorn's socket for the nginx front
USER serving
# Loopback and the socket nginx proxies to; a deployment that must reach :8000 from outside the container
# (compose's Prometheus, on its internal network) says so explicitly.
ENV SERVING_BIND=unix:/run/serving/gunicorn.sock,127.0.0.1:8000
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["gunicorn", "-c", "serving/gunicorn.conf.py", "serving.app:create_app()"]
