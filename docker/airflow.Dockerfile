# Airflow with the project's requirements and the cross_sell package (scheduler, workers, API server...).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

USER airflow
COPY --chown=airflow:0 requirements.txt /opt/cross-sell/requirements.txt
# Airflow itself comes with the base image; install the rest at the versions the tests ran with.
RUN grep -vE '^(apache-airflow==|nx-27017|moto|pytest|hypothesis|ruff|check-jsonschema)' \
        /opt/cross-sell/requirements.txt > /tmp/requirements.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /tmp/requirements.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/cross-sell/
COPY --chown=airflow:0 include /opt/cross-sell/include
RUN pip install --no-cache-dir --no-deps /opt/cross-sell

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
