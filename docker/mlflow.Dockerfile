# The MLflow tracking server: the official image, plus the PostgreSQL driver and boto3 it needs for its
# backend store and MinIO artifacts (the versions of requirements-mlflow-server.txt).
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.5
USER 1000
