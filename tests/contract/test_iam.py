"""docs/iam/: the IAM policies water's roles need, checked offline.

Every action must name an operation in botocore's service models (so a typo or an invented
action fails here, not in production), nothing broad may be granted on every resource, and
the settings in helm-values/ and every shipped spec must fall inside what the policies
allow: the S3 prefixes the cloud target writes, the roles it passes, each pipeline's Glue
catalog database (`water_<pipeline>`: one wildcard covers them all) and tables, and the
Athena workgroups its steps name.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.contract.cloud import botocore_session
from tests.contract.helm import ENVIRONMENTS, ROOT, VALUES_DIR, settings_of, user_values

IAM_DIR = ROOT / "docs" / "iam"
POLICY_FILES = sorted(IAM_DIR.glob("*.json"))
PERMISSION_POLICIES = [p for p in POLICY_FILES if not p.stem.endswith("-trust")]
TRUST_POLICIES = [p for p in POLICY_FILES if p.stem.endswith("-trust")]

# IAM's service prefix -> botocore's service name, where they differ or matter here.
BOTOCORE_SERVICE = {
    "s3": "s3", "glue": "glue", "athena": "athena", "sagemaker": "sagemaker", "iam": "iam",
    "logs": "logs", "ecr": "ecr", "cloudwatch": "cloudwatch", "sts": "sts",
}  # fmt: skip
# Actions that are IAM permissions, not API operation names: the operation each authorizes
# (None: a permission checked by another service's call, e.g. PassRole by CreateTrainingJob).
IAM_ONLY_ACTIONS = {
    "s3:ListBucket": "ListObjectsV2",
    "s3:ListBucketMultipartUploads": "ListMultipartUploads",
    "s3:ListMultipartUploadParts": "ListParts",
    "iam:PassRole": None,
}
# Actions whose API takes no resource ARN: the only ones that may be granted on "*".
RESOURCE_LESS_ACTIONS = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def statements(policy: dict) -> list[dict]:
    found = policy["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def actions_of(path: Path) -> set[str]:
    return {a for s in statements(load(path)) for a in as_list(s["Action"])}


@cache
def operations(service: str) -> frozenset[str]:
    return frozenset(botocore_session().get_service_model(BOTOCORE_SERVICE[service]).operation_names)


def allows(policy: dict, action: str, resource: str) -> bool:
    """Whether some Allow statement grants `action` on `resource` (conditions aside).

    IAM matches actions case-insensitively and resources case-sensitively; `*` spans `/`.
    """
    for statement in statements(policy):
        if statement["Effect"] != "Allow":
            continue
        if not any(fnmatchcase(action.lower(), a.lower()) for a in as_list(statement["Action"])):
            continue
        if any(fnmatchcase(resource, r) for r in as_list(statement["Resource"])):
            return True
    return False


# --- shape --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_policy_parses_with_the_current_version(path):
    policy = load(path)
    assert policy["Version"] == "2012-10-17"
    for statement in statements(policy):
        assert statement["Effect"] == "Allow", statement.get("Sid")
        assert statement.get("Sid"), "every statement says what it is for"


def test_the_roles_have_their_policies():
    names = {p.name for p in POLICY_FILES}
    for role in ("airflow-role", "jobs-role", "sagemaker-execution-role", "glue-role"):
        assert {f"{role}-policy.json", f"{role}-trust.json"} <= names, role


@pytest.mark.parametrize("path", PERMISSION_POLICIES, ids=lambda p: p.name)
def test_nothing_broad_on_every_resource(path):
    for statement in statements(load(path)):
        resources = as_list(statement["Resource"])
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{path.name} {statement['Sid']}: wildcard action {action}"
            if "*" in resources:
                assert action in RESOURCE_LESS_ACTIONS, f"{path.name} {statement['Sid']}: {action} on '*'"


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: p.name)
def test_every_action_is_a_real_operation(path):
    for action in actions_of(path):
        service, name = action.split(":")
        if action in IAM_ONLY_ACTIONS:
            operation = IAM_ONLY_ACTIONS[action]
            assert operation is None or operation in operations(service), action
            continue
        assert service in BOTOCORE_SERVICE, f"{path.name}: no botocore model mapped for {service}"
        assert name in operations(service), f"{path.name}: {action} is not a {service} operation"


def test_a_misspelled_action_is_caught():
    assert "CreateTrainingJob" in operations("sagemaker")
    assert "CreateTrainingJobs" not in operations("sagemaker")


@pytest.mark.parametrize("path", PERMISSION_POLICIES, ids=lambda p: p.name)
def test_pass_role_only_to_its_service(path):
    for statement in statements(load(path)):
        if "iam:PassRole" not in as_list(statement["Action"]):
            continue
        assert as_list(statement["Action"]) == ["iam:PassRole"], statement["Sid"]
        (role,) = as_list(statement["Resource"])
        assert "*" not in role, statement["Sid"]
        service = statement["Condition"]["StringEquals"]["iam:PassedToService"]
        expected = {"water-sagemaker-execution": "sagemaker.amazonaws.com", "water-glue": "glue.amazonaws.com"}
        assert service == expected[role.rsplit("/", 1)[1]], statement["Sid"]


def test_trust_policies():
    for role in ("airflow-role", "jobs-role"):  # service accounts in the cluster, by IRSA
        irsa = statements(load(IAM_DIR / f"{role}-trust.json"))
        assert {s["Action"] for s in irsa} == {"sts:AssumeRoleWithWebIdentity"}, role
        assert all("oidc-provider/" in s["Principal"]["Federated"] for s in irsa), role
    for role, service in (("sagemaker-execution-role", "sagemaker"), ("glue-role", "glue")):
        (statement,) = statements(load(IAM_DIR / f"{role}-trust.json"))
        assert statement["Action"] == "sts:AssumeRole"
        assert statement["Principal"] == {"Service": f"{service}.amazonaws.com"}


def test_allows_evaluates_resources_and_actions():
    policy = load(IAM_DIR / "airflow-role-policy.json")
    assert allows(policy, "s3:PutObject", "arn:aws:s3:::${LakeBucket}/lake/p/raw/ds=2026-11-01/x")
    assert not allows(policy, "s3:PutObject", "arn:aws:s3:::${LakeBucket}/elsewhere/x")
    assert not allows(policy, "s3:DeleteBucket", "arn:aws:s3:::${LakeBucket}")


# --- the placeholders and the settings -----------------------------------------------------

PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


def test_placeholders_are_the_documented_ones():
    documented = set(re.findall(r"^\| `\$\{([A-Za-z]+)\}` \|", (ROOT / "docs/deploy.md").read_text(), re.M))
    used = {
        name
        for path in [*POLICY_FILES, *VALUES_DIR.glob("*.yaml"), *(ROOT / "docs" / "k8s").glob("*.yaml")]
        for name in PLACEHOLDER.findall(path.read_text())
    }
    assert used and used == documented


def _s3_arn(uri: str, key: str) -> str:
    parsed = urlparse(uri)
    assert parsed.scheme == "s3", uri
    return f"arn:aws:s3:::{parsed.netloc}/{parsed.path.strip('/')}/{key}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_airflow_role_covers_the_settings(env):
    policy = load(IAM_DIR / "airflow-role-policy.json")
    values = user_values(env)
    settings = settings_of(values)
    writes = [
        settings["WATER_LAKE"],  # every stage's partitions, the GCS export copied in
        settings["WATER_GLUE_SCRIPTS"],  # scripts uploaded from include/glue
        settings["WATER_SAGEMAKER_CODE"],  # train.py / inference.py source archives
        settings["WATER_ATHENA_OUTPUT"],  # Athena writes results as the caller
        values["config"]["logging"]["remote_base_log_folder"],  # task logs
    ]
    for uri in writes:
        for action in ("s3:PutObject", "s3:GetObject"):
            assert allows(policy, action, _s3_arn(uri, "p/ds=2026-11-01/part-0.parquet")), (action, uri)
    account = "${AccountId}"
    glue_role = f"arn:aws:iam::{account}:role/{settings['WATER_GLUE_ROLE']}"
    assert allows(policy, "iam:PassRole", glue_role)
    assert allows(policy, "iam:PassRole", settings["WATER_SAGEMAKER_ROLE_ARN"])
    assert "WATER_ATHENA_DATABASE" not in settings  # each pipeline's database comes from its spec


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_job_roles_cover_the_settings(env):
    settings = settings_of(user_values(env))
    sagemaker = load(IAM_DIR / "sagemaker-execution-role-policy.json")
    lake = settings["WATER_LAKE"]
    assert allows(sagemaker, "s3:GetObject", _s3_arn(settings["WATER_SAGEMAKER_CODE"], "p/sourcedir.tar.gz"))
    assert allows(sagemaker, "s3:GetObject", _s3_arn(lake, "p/channels/train/ds=2026-11-01/train.csv"))
    assert allows(sagemaker, "s3:PutObject", _s3_arn(lake, "p/model/ds=2026-11-01/model.tar.gz"))
    assert allows(sagemaker, "s3:PutObject", _s3_arn(lake, "p/predictions/ds=2026-11-01/x.out"))
    assert not allows(sagemaker, "s3:PutObject", _s3_arn(lake, "p/channels/train/ds=2026-11-01/x"))
    glue = load(IAM_DIR / "glue-role-policy.json")
    assert allows(glue, "s3:GetObject", _s3_arn(settings["WATER_GLUE_SCRIPTS"], "p/features.py"))
    assert allows(glue, "s3:PutObject", _s3_arn(lake, "p/features/ds=2026-11-01/part-0.parquet"))
    assert not allows(glue, "s3:PutObject", _s3_arn(settings["WATER_GLUE_SCRIPTS"], "p/features.py"))


# --- what the cloud target calls -----------------------------------------------------------


def test_airflow_role_allows_every_action_the_cloud_target_calls():
    """water.targets.cloud.AWS_ACTIONS lists the "service:Action"s its operators call."""
    from water.targets.cloud.target import AWS_ACTIONS

    granted = actions_of(IAM_DIR / "airflow-role-policy.json")
    assert AWS_ACTIONS, "AWS_ACTIONS is empty"
    missing = sorted(action for action in AWS_ACTIONS if not any(fnmatchcase(action.lower(), g.lower()) for g in granted))
    assert missing == [], f"docs/iam/airflow-role-policy.json does not allow {missing}"


# --- what every shipped spec needs ---------------------------------------------------------

GLUE = "arn:aws:glue:${Region}:${AccountId}"
# what Athena needs of the Glue Data Catalog to plan a query over a table, and to create one
CATALOG_READ = ("glue:GetDatabase", "glue:GetTable", "glue:GetPartitions")


def _specs():
    from water.spec import load_pipeline, pipeline_names

    return [load_pipeline(name) for name in pipeline_names()]


def _catalog_tables(spec) -> tuple[set[str], set[str]]:
    """(tables the pipeline's Athena SQL reads, tables its steps create) in its database.

    An athena_sql step reads each lake dataset it `reads` as the table of that name; an
    inference_stats step creates (and reads) the table over its predictions.
    """
    read = {d.replace("/", "_") for s in spec.steps_of("athena_sql").values() for d in s.reads}
    created = {f"{spec.name}_{s.reads.replace('/', '_')}" for s in spec.steps_of("inference_stats").values()}
    return read, created


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.name)
def test_every_spec_has_its_own_water_database(spec):
    from water.spec import PipelineSpec

    assert spec.database == (spec.catalog_database or f"water_{spec.name}")
    assert spec.database.startswith("water_")
    others = [s for s in _specs() if s.name != spec.name]
    assert spec.database not in {s.database for s in others}, "two pipelines share a catalog database"
    assert PipelineSpec.model_fields["catalog_database"].default is None  # the default is water_<name>


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.name)
def test_airflow_role_covers_every_specs_catalog_database_and_tables(spec):
    """Every spec's database, the tables its Athena SQL reads and the predictions table its
    inference_stats step creates are inside the GlueCatalog statement."""
    policy = load(IAM_DIR / "airflow-role-policy.json")
    database = spec.database
    read, created = _catalog_tables(spec)
    if not read and not created:
        pytest.skip(f"{spec.name} uses no Athena")
    for action in CATALOG_READ:
        assert allows(policy, action, f"{GLUE}:catalog"), action
        assert allows(policy, action, f"{GLUE}:database/{database}"), (action, database)
        for table in read | created:
            assert allows(policy, action, f"{GLUE}:table/{database}/{table}"), (action, table)
    for table in created:  # CREATE EXTERNAL TABLE IF NOT EXISTS: catalog, database and table
        for resource in ("catalog", f"database/{database}", f"table/{database}/{table}"):
            assert allows(policy, "glue:CreateTable", f"{GLUE}:{resource}"), resource


def test_the_catalog_grant_is_the_water_databases_only():
    policy = load(IAM_DIR / "airflow-role-policy.json")
    for other in ("default", "analytics", "water"):  # not another team's database, nor a bare `water`
        assert not allows(policy, "glue:GetTable", f"{GLUE}:table/{other}/features"), other
        assert not allows(policy, "glue:CreateTable", f"{GLUE}:database/{other}"), other
    (statement,) = [s for s in statements(policy) if s["Sid"] == "GlueCatalog"]
    assert sorted(as_list(statement["Resource"])) == sorted(
        [f"{GLUE}:catalog", f"{GLUE}:database/water_*", f"{GLUE}:table/water_*/*"]
    )


def test_a_catalog_database_outside_water_is_a_spec_error(tmp_path):
    """The one IAM wildcard covers water_*: a spec may not name another database."""
    import yaml

    from water import paths
    from water.spec import SpecError, load_spec, pipeline_names

    name = pipeline_names()[0]
    raw = yaml.safe_load((paths.pipelines_dir() / f"{name}.yaml").read_text())
    path = tmp_path / f"{name}.yaml"
    for database, ok in (("analytics", False), ("water", False), ("water_", False), (f"water_{name}_v2", True)):
        path.write_text(yaml.safe_dump({**raw, "catalog_database": database}))
        if ok:
            assert load_spec(path, include_dir=paths.include_dir()).database == database
        else:
            with pytest.raises(SpecError) as raised:
                load_spec(path, include_dir=paths.include_dir())
            assert raised.value.fields == ["catalog_database"], database


SHIPPED_EXAMPLES = ("recipe_engagement", "customer_value")  # what docs/deploy.md walks through


def test_deploy_docs_list_the_shipped_examples_catalog_tables():
    """docs/deploy.md section 6 names each shipped example's database and the tables its spec
    needs (a pipeline a team adds gets its DDL from `water catalog`, not from the docs)."""
    text = (ROOT / "docs/deploy.md").read_text()
    section = text[text.index("## 6. Glue Data Catalog tables") : text.index("## 7.")]
    assert "water catalog" in section
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|.*$", section, re.M)}
    for spec in (s for s in _specs() if s.name in SHIPPED_EXAMPLES):
        read, _ = _catalog_tables(spec)
        if not read:
            continue
        assert spec.name in rows, f"docs/deploy.md section 6 has no row for {spec.name}"
        row = rows[spec.name]
        assert f"`{spec.database}`" in row, (spec.name, spec.database)
        listed = set(re.findall(r"`([a-z0-9_]+)`", row.split("|")[3]))
        assert listed == read, (spec.name, listed, read)


def test_airflow_role_allows_every_pipelines_athena_workgroup():
    """The workgroup of every athena_sql and inference_stats step of every spec."""
    policy = load(IAM_DIR / "airflow-role-policy.json")
    for spec in _specs():
        workgroups = {s.workgroup for kind in ("athena_sql", "inference_stats") for s in spec.steps_of(kind).values()}
        for workgroup in workgroups:
            arn = f"arn:aws:athena:${{Region}}:${{AccountId}}:workgroup/{workgroup}"
            for action in ("athena:StartQueryExecution", "athena:GetQueryExecution", "athena:GetQueryResults"):
                assert allows(policy, action, arn), f"{spec.name}: {action} in workgroup {workgroup}"


def test_airflow_role_scopes_the_cloud_targets_sagemaker_names():
    """The SageMaker statement is scoped to names starting water-: every spec's names must."""
    from water.targets.cloud.target import sagemaker_name

    policy = load(IAM_DIR / "airflow-role-policy.json")
    arn = "arn:aws:sagemaker:${Region}:${AccountId}"

    def rendered(template: str) -> str:
        return template.replace("{{ ds_nodash }}", "20261101").replace("{{ ti.try_number }}", "1")

    for spec in _specs():
        for name in spec.steps_of("sagemaker_training"):
            job = rendered(sagemaker_name(spec.name, name))
            assert allows(policy, "sagemaker:CreateTrainingJob", f"{arn}:training-job/{job}"), job
        for name in spec.steps_of("sagemaker_transform"):
            model = rendered(sagemaker_name(spec.name, f"{name}-model"))
            job = rendered(sagemaker_name(spec.name, name))
            assert allows(policy, "sagemaker:CreateModel", f"{arn}:model/{model}"), model
            assert allows(policy, "sagemaker:CreateTransformJob", f"{arn}:transform-job/{job}"), job
    # and any pipeline's, including one without SageMaker steps yet
    for kind, action, resource in (
        ("train", "sagemaker:CreateTrainingJob", "training-job"),
        ("model", "sagemaker:CreateModel", "model"),
        ("transform", "sagemaker:CreateTransformJob", "transform-job"),
    ):
        name = rendered(sagemaker_name("any_pipeline", kind))
        assert allows(policy, action, f"{arn}:{resource}/{name}"), f"{action} on {name}"


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.name)
def test_job_roles_cover_every_specs_datasets(spec):
    """The SageMaker and Glue roles reach what each spec's steps of their kinds read and write."""
    lake = "arn:aws:s3:::${LakeBucket}/lake"

    def obj(dataset: str, staged: bool = False) -> str:
        return f"{lake}/{spec.name}/{dataset}/{'_staging/' if staged else ''}ds=2026-11-01/part-0"

    sagemaker = load(IAM_DIR / "sagemaker-execution-role-policy.json")
    for step in spec.steps_of("sagemaker_training").values():
        for dataset in step.reads.values():
            assert allows(sagemaker, "s3:GetObject", obj(dataset)), dataset
        assert allows(sagemaker, "s3:PutObject", obj(step.writes)), step.writes
    for step in spec.steps_of("sagemaker_transform").values():
        for dataset in (step.model, step.input):
            assert allows(sagemaker, "s3:GetObject", obj(dataset)), dataset
        assert allows(sagemaker, "s3:PutObject", obj(step.writes, staged=True)), step.writes
    glue = load(IAM_DIR / "glue-role-policy.json")
    for step in spec.steps_of("glue_pyspark").values():
        for dataset in step.reads.values():
            assert allows(glue, "s3:GetObject", obj(dataset)), dataset
        assert allows(glue, "s3:PutObject", obj(step.writes, staged=True)), step.writes
