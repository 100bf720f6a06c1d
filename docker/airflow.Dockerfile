# Airflow with the project's training side (scheduler, workers, API server...).
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

USER airflow
# Airflow and the providers it needs, under Airflow's own constraints for this release and Python, as
# Airflow's docs advise; then the project's pins (requirements-airflow.txt, the `airflow` extra), with
# apache-airflow held at the image's version so nothing can move it.
ARG AIRFLOW_CONSTRAINTS=https://raw.githubusercontent.com/apache/airflow/constraints-3.3.2/constraints-3.11.txt
COPY --chown=airflow:0 requirements-airflow.txt /opt/cross-sell/requirements-airflow.txt
RUN grep -E '^apache-airflow-providers-' /opt/cross-sell/requirements-airflow.txt | sed 's/==.*//' > /tmp/providers.txt \
    && pip install --no-cache-dir --constraint "${AIRFLOW_CONSTRAINTS}" "apache-airflow==${AIRFLOW_VERSION}" \
        -r /tmp/providers.txt \
    && pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/cross-sell/requirements-airflow.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/cross-sell/
COPY --chown=airflow:0 include /opt/cross-sell/include
RUN pip install --no-cache-dir --no-deps /opt/cross-sell

COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
