# syntax=docker/dockerfile:1
# The Airflow image (scheduler, API server, DAG processor, triggerer, KubernetesExecutor
# workers) and the job image the pipeline pods run. Both extend the official Apache Airflow
# image at the version requirements.txt pins (tests/contract/test_dockerfile.py checks).
# Build: docker build --target airflow -t REPO/water-airflow:TAG .
#        docker build --target jobs    -t REPO/water-jobs:TAG .
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11

FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION} AS airflow
ARG AIRFLOW_VERSION
USER 0
# Local Spark (the local target's Glue engine) needs a JVM. Not version-pinned: the base
# image tag fixes the Debian release, and its security updates replace exact versions.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# The official image's airflow user (uid 50000, group 0).
USER 50000
COPY --chown=50000:0 requirements.txt /opt/airflow/requirements.txt
# Naming apache-airflow at the image's own version beside the requirements keeps pip from
# moving Airflow (the official image's documented way to add packages).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt
COPY --chown=50000:0 pyproject.toml /opt/airflow/pyproject.toml
COPY --chown=50000:0 plugins /opt/airflow/plugins
COPY --chown=50000:0 dags /opt/airflow/dags
COPY --chown=50000:0 include /opt/airflow/include
RUN pip install --no-cache-dir --no-deps -e /opt/airflow
ENV WATER_PROJECT_ROOT=/opt/airflow

# The image the pods run: the job entrypoints and their libraries, no Airflow services.
# dumb-init (the base image's init, at /usr/bin/dumb-init) stays PID 1: it forwards the
# SIGTERM Kubernetes sends on deletion or timeout to python, which as PID 1 would ignore it
# and be killed only after the grace period. The pod's args are the script and its flags.
FROM airflow AS jobs
USER 50000
WORKDIR /opt/airflow/include
ENTRYPOINT ["/usr/bin/dumb-init", "--", "python"]
