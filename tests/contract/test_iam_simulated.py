"""docs/iam/airflow-role-policy.json evaluated as AWS evaluates it, conditions included,
against every AWS call the deployed cloud DAGs make, on a first run and on a second.

tests/contract/aws_runs.py runs each task's own code offline with the settings of
helm-values/ (placeholders filled in) and turns every recorded call into the authorizations
AWS makes for it: action, resource ARN and the request's condition keys. The policy, with the
same placeholders filled in, is evaluated by @cloud-copilot/iam-simulate
(tests/contract/iam_simulator.py; skipped, saying so, where node is not installed). The
checks that need no evaluator (every recorded action is granted somewhere; the runs make the
calls that matter) run everywhere.
"""

from __future__ import annotations

import json
from functools import cache

import pytest

from tests.contract.aws_runs import (
    ACCOUNT,
    PRINCIPAL,
    RUNS,
    deployed_dag,
    is_pod,
    needs_aws,
    operations,
    recorded_calls,
    run_requests,
    through_object_storage,
)
from tests.contract.cloud import PIPELINES, pipelines_with
from tests.contract.helm import ENVIRONMENTS, ROOT, filled
from tests.contract.iam_simulator import Request, evaluate

POLICY = ROOT / "docs" / "iam" / "airflow-role-policy.json"
RUN_PARAMS = [
    pytest.param(env, pipeline, run, id=f"{env}-{pipeline}-{run}")
    for env in ENVIRONMENTS
    for pipeline in PIPELINES
    for run in RUNS
]


def airflow_policy() -> dict:
    return filled(json.loads(POLICY.read_text()))


def _key(request: Request) -> tuple[str, str, str]:
    return request.action, request.resource, json.dumps(request.context, sort_keys=True)


def decisions(policy: dict, requests: list[Request]) -> dict[tuple, str]:
    """The policy's decision on each distinct request, from one evaluator process."""
    unique = {_key(r): r for r in requests}
    return dict(zip(unique, evaluate(policy, list(unique.values()), ACCOUNT, PRINCIPAL), strict=True))


def refused(requests: list[Request], decided: dict[tuple, str]) -> list[str]:
    """The requests not allowed in `decided`, each once (named by the first call needing it)."""
    unique: dict[tuple, Request] = {}
    for r in requests:
        unique.setdefault(_key(r), r)
    return [f"{decided[key]}: {r.shown()}" for key, r in unique.items() if decided[key] != "Allowed"]


@cache
def airflow_role_decisions() -> dict[tuple, str]:
    """The Airflow role's decisions on every authorization of every recorded run, in one batch
    (a node process for each run took 0.3 s)."""
    return decisions(airflow_policy(), [r for params in RUN_PARAMS for r in run_requests(*params.values)])


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


# --- the evaluator honours conditions -------------------------------------------------------


def test_the_evaluator_honours_conditions():
    """A ListBucket granted only under s3:prefix conditions refuses SageMakerHook's HeadBucket
    (no prefix); a PassRole for one service refuses another."""
    bucket = "arn:aws:s3:::acme-water-lake"
    role = f"arn:aws:iam::{ACCOUNT}:role/water-glue"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PrefixedListing", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket,
                "Condition": {"StringLike": {"s3:prefix": ["lake/*"]}},
            },
            {
                "Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": role,
                "Condition": {"StringEquals": {"iam:PassedToService": "glue.amazonaws.com"}},
            },
        ],
    }  # fmt: skip
    requests = [
        Request("s3:ListBucket", bucket, {}, "HeadBucket"),
        Request("s3:ListBucket", bucket, {"s3:prefix": "lake/p/raw/"}, "ListObjectsV2 in the lake"),
        Request("s3:ListBucket", bucket, {"s3:prefix": "secrets/"}, "ListObjectsV2 elsewhere"),
        Request("iam:PassRole", role, {"iam:PassedToService": "glue.amazonaws.com"}, "CreateJob"),
        Request("iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"}, "CreateTrainingJob"),
    ]
    assert evaluate(policy, requests, ACCOUNT, PRINCIPAL) == [
        "ImplicitlyDenied", "Allowed", "ImplicitlyDenied", "Allowed", "ImplicitlyDenied",
    ]  # fmt: skip


# --- the runs make the calls that matter ----------------------------------------------------


@pytest.mark.parametrize("pipeline", pipelines_with("glue_pyspark"))
def test_a_second_run_finds_the_glue_job_and_reconciles_its_tags(pipeline):
    first, second = operations("prod", pipeline, "first"), operations("prod", pipeline, "second")
    assert ("glue", "CreateJob") in first and ("glue", "UpdateJob") not in first
    assert {("glue", op) for op in ("GetJob", "UpdateJob", "GetTags", "TagResource", "UntagResource")} <= second
    assert ("glue", "CreateJob") not in second


@pytest.mark.parametrize("pipeline", pipelines_with("sagemaker_training") + pipelines_with("sagemaker_transform"))
def test_sagemaker_checks_its_input_bucket_before_creating_jobs(pipeline):
    calls = recorded_calls("prod", pipeline, "first")
    creating = [i for i, c in enumerate(calls) if c.operation in ("CreateTrainingJob", "CreateTransformJob")]
    heads = [i for i, c in enumerate(calls) if c.operation == "HeadBucket"]
    assert creating and heads and min(heads) < min(creating)
    head = calls[min(heads)]
    assert "Prefix" not in head.params  # what makes it s3:ListBucket with no s3:prefix


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_every_task_that_calls_aws_is_recorded(pipeline):
    """Each task with an AWS connection ran offline and called AWS; the rest are pods (their
    own service account), lake-store tasks (test_lake_store_s3.py) or Google Cloud only."""
    called = {c.task_id for run in RUNS for c in recorded_calls("prod", pipeline, run)}
    dag = deployed_dag("prod", pipeline)
    aws_tasks = {t.task_id for t in dag.tasks if not is_pod(t) and needs_aws(t)}
    assert aws_tasks and aws_tasks <= called, sorted(aws_tasks - called)
    elsewhere = {t.task_id for t in dag.tasks if is_pod(t) or through_object_storage(t)}
    assert not (aws_tasks & elsewhere)


# --- the policy allows them ------------------------------------------------------------------


@pytest.mark.parametrize(("env", "pipeline", "run"), RUN_PARAMS)
def test_every_recorded_action_is_granted_somewhere(env, pipeline, run):
    """Without conditions or resources: an action no statement names is refused whatever the
    resource (runs where node is missing too)."""
    granted = {a.lower() for statement in airflow_policy()["Statement"] for a in _as_list(statement["Action"])}
    missing = sorted({r.action for r in run_requests(env, pipeline, run) if r.action.lower() not in granted})
    assert missing == [], f"{POLICY.name} grants no {missing}"


@pytest.mark.parametrize(("env", "pipeline", "run"), RUN_PARAMS)
def test_airflow_role_allows_every_call_of_the_run(env, pipeline, run):
    """Each authorization of each recorded call, with its resource ARN and condition keys."""
    requests = run_requests(env, pipeline, run)
    assert requests
    found = refused(requests, airflow_role_decisions())
    assert not found, f"{POLICY.name} refuses:\n  " + "\n  ".join(found)


# What the Airflow role grants beyond the cloud target's own calls (AWS_ACTIONS), and why.
AIRFLOW_ROLE_EXTRAS = {
    # Athena writes query results to S3 as the caller; its documented result-bucket permissions
    "s3:ListBucketMultipartUploads": "Athena query results",
    "s3:ListMultipartUploadParts": "Athena query results",
}


def test_airflow_role_grants_nothing_the_cloud_target_does_not_call():
    """Least privilege: every granted action is in AWS_ACTIONS, needed by a call the deployed
    DAGs make (tests/contract/aws_runs.py, first and second runs; here beside the module's other
    uses of the recorded runs, which a test process records once), or a documented extra."""
    from tests.contract.aws_runs import every_recorded_action
    from water.targets.cloud.target import AWS_ACTIONS

    used = set(AWS_ACTIONS) | every_recorded_action() | set(AIRFLOW_ROLE_EXTRAS)
    granted = {a for s in _as_list(airflow_policy()["Statement"]) for a in _as_list(s["Action"])}
    unused = granted - used
    assert unused == set(), f"granted but never called: {sorted(unused)}"


def test_a_prefix_only_listing_grant_would_be_refused():
    """The policy as it was (ListBucket only under s3:prefix) fails the first SageMaker run:
    the check above can fail."""
    policy = airflow_policy()
    for statement in policy["Statement"]:
        if "s3:ListBucket" in _as_list(statement["Action"]):
            statement["Condition"] = {
                "StringLike": {"s3:prefix": ["lake/*", "artifacts/*", "athena-results/*", "airflow-logs/*"]}
            }
    sagemaker = pipelines_with("sagemaker_training")
    assert sagemaker, "no shipped spec trains on SageMaker"
    requests = run_requests("prod", sagemaker[0], "first")
    found = refused(requests, decisions(policy, requests))
    assert any("s3:ListBucket" in line and "HeadBucket" in line for line in found), found
