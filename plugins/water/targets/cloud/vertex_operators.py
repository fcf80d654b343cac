"""Vertex AI operators of the Google provider that water extends: imported only where their task runs.

The DAG names them by path (water.targets.cloud.lazy), as the providers' own, so parsing a DAG
file never imports google.cloud (a module of its own, apart from water.targets.cloud.extended,
so an Athena or pod task does not import the Vertex AI SDK either):

- `TemplatedCreateDatasetOperator`: CreateDatasetOperator whose `dataset` is templated (the
  day's CSV files in the exchange make the managed dataset).
- `VertexBatchPredictionOperator`: CreateBatchPredictionJobOperator that sends water's whole
  BatchPredictionJob request (water.targets.cloud.vertex.batch_prediction_job, checked by
  the aiplatform types): the SDK call the provider makes cannot set `instance_config`, and
  the instances carry their row's id as a field the model must not see.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException
from airflow.providers.google.cloud.links.vertex_ai import VertexAIBatchPredictionJobLink
from airflow.providers.google.cloud.operators.vertex_ai.batch_prediction_job import CreateBatchPredictionJobOperator
from airflow.providers.google.cloud.operators.vertex_ai.dataset import CreateDatasetOperator
from airflow.providers.google.cloud.triggers.vertex_ai import CreateBatchPredictionJobTrigger
from airflow.sdk import Context
from google.cloud.aiplatform_v1 import BatchPredictionJob, JobState

from water.targets.cloud.operators import ReportsLineage, TaskDatasets

SUCCEEDED = {JobState.JOB_STATE_SUCCEEDED}
ENDED = {
    JobState.JOB_STATE_FAILED,
    JobState.JOB_STATE_CANCELLED,
    JobState.JOB_STATE_EXPIRED,
    JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
}


class TemplatedCreateDatasetOperator(ReportsLineage, CreateDatasetOperator):
    """CreateDatasetOperator with `dataset` rendered (its GCS source names the day); its
    lineage (`lineage_datasets`) the exchange folders it imports -> the managed dataset."""

    template_fields: Sequence[str] = (*CreateDatasetOperator.template_fields, "dataset")

    def __init__(self, *, lineage_datasets: TaskDatasets | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lineage_datasets = lineage_datasets


class VertexBatchPredictionOperator(ReportsLineage, CreateBatchPredictionJobOperator):
    """Creates the BatchPredictionJob `batch_prediction_job` (a dict, templated) as given, then
    waits as CreateBatchPredictionJobOperator does: on the triggerer when deferrable, else by
    polling every `poll_interval` seconds. The base operator's arguments (region, project,
    display name, model...) are the same request's, for its links and its trigger."""

    template_fields: Sequence[str] = (*CreateBatchPredictionJobOperator.template_fields, "batch_prediction_job")

    def __init__(
        self, *, batch_prediction_job: dict[str, Any], lineage_datasets: TaskDatasets | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.batch_prediction_job, self.lineage_datasets = batch_prediction_job, lineage_datasets
        self.job_name: str | None = None  # the created job's resource name, for on_kill

    def execute(self, context: Context) -> dict[str, Any]:
        client = self.hook.get_job_service_client(self.region)
        created = client.create_batch_prediction_job(
            parent=client.common_location_path(self.project_id, self.region),
            batch_prediction_job=BatchPredictionJob(self.batch_prediction_job),
            timeout=self.create_request_timeout,
        )
        self.job_name = created.name
        job_id = created.name.rpartition("/")[2]
        self.log.info("Batch prediction job %s created", created.name)
        context["ti"].xcom_push(key="batch_prediction_job_id", value=job_id)
        VertexAIBatchPredictionJobLink.persist(context=context, batch_prediction_job_id=job_id)
        if self.deferrable:
            self.defer(
                trigger=CreateBatchPredictionJobTrigger(
                    conn_id=self.gcp_conn_id,
                    project_id=self.project_id,
                    location=self.region,
                    job_id=job_id,
                    poll_interval=self.poll_interval,
                    impersonation_chain=self.impersonation_chain,
                ),
                method_name="execute_complete",
            )
        while True:
            job = self.hook.get_batch_prediction_job(project_id=self.project_id, region=self.region, batch_prediction_job=job_id)
            if job.state in SUCCEEDED:
                self.log.info("Batch prediction job %s succeeded", job.name)
                return dict(BatchPredictionJob.to_dict(job))
            if job.state in ENDED:
                reason = job.error.message if job.error else ""
                raise AirflowException(f"batch prediction job {job.name} ended {job.state.name}: {reason}")
            time.sleep(self.poll_interval)

    def on_kill(self) -> None:
        """Cancel the job this task created (the base class cancels only a job its SDK call made)."""
        if self.job_name:
            self.log.info("Cancelling batch prediction job %s", self.job_name)
            self.hook.get_job_service_client(self.region).cancel_batch_prediction_job(name=self.job_name)
