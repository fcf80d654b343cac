# syntax=docker/dockerfile:1
# The Airflow image (scheduler, API server, workers) and the job image the pods run.
# Both extend the official Apache Airflow image at the version requirements.txt pins.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow
USER root
# Local Spark (the local target's Glue engine) needs a JVM.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow
COPY --chown=airflow:0 requirements.txt /opt/airflow/requirements.txt
# apache-airflow is pinned in requirements.txt to the image's own version.
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt
COPY --chown=airflow:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=airflow:0 plugins /opt/airflow/plugins
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 include /opt/airflow/include
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
ENV WATER_PROJECT_ROOT=/opt/airflow

# The image the pods run: the job entrypoints and their libraries, no Airflow services.
FROM airflow AS jobs
WORKDIR /opt/airflow/include
ENTRYPOINT ["python"]
