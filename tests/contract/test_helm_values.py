"""helm-values/ against the official Airflow chart's own contract, offline.

The files are merged and coalesced as helm does (tests/contract/helm.py) and validated
with the chart's values.schema.json, vendored in tests/contract/chart/. The schema leaves some levels open (the top level
among them: `executr: X` passes it), so every key is also checked against the keys the
chart's values.yaml declares. The check is water.cli.chart_values', which `water deploy`
runs against the chart version it pulls (tests/unit/test_cluster_cli.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex

import jsonschema
import pytest
import yaml

from tests.contract.helm import (
    CHART,
    ENVIRONMENTS,
    ROOT,
    VALUES_DIR,
    coalesce,
    deployed_settings,
    load_yaml,
    merge_files,
    schema_errors,
    settings_of,
    unknown_keys,
    user_values,
    values_problems,
)
from water import events
from water.cli.chart_values import pinned_airflow

SHARED_CHART = ROOT.parent / "shared" / "airflow-chart"  # the workspace's copy, when beside this clone

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


# --- fixtures ---------------------------------------------------------------------------


def water_settings() -> set[str]:
    """WATER_TARGET and every variable the cloud target's settings read."""
    from water.targets.cloud.target import CloudSettings

    return {"WATER_TARGET"} | {CloudSettings.variable(f.name) for f in dataclasses.fields(CloudSettings)}


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def chart_defaults() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


# --- the chart's own contract ------------------------------------------------------------


def test_vendored_chart_is_the_shared_copy():
    if not SHARED_CHART.is_dir():
        pytest.skip(f"{SHARED_CHART} is not beside this clone; the vendored copy stands alone")
    for name in ("values.schema.json", "values.yaml"):
        assert (CHART / name).read_bytes() == (SHARED_CHART / name).read_bytes(), (
            f"tests/contract/chart/{name} differs from {SHARED_CHART / name}: re-vendor it"
        )


@pytest.mark.parametrize("name", ["base.yaml", *(f"{env}.yaml" for env in ENVIRONMENTS)])
def test_values_file_has_no_duplicate_keys(name):
    assert isinstance(load_yaml(VALUES_DIR / name), dict)


def test_duplicate_keys_are_refused(tmp_path):
    twice = tmp_path / "twice.yaml"
    twice.write_text("scheduler:\n  replicas: 1\nscheduler:\n  replicas: 2\n")
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'scheduler'"):
        load_yaml(twice)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_merged_values_validate_against_chart_schema(env, schema, chart_defaults):
    values = user_values(env)
    assert schema_errors(values, schema) == []
    # what helm validates: the user values coalesced over the chart's defaults
    assert schema_errors(coalesce(chart_defaults, values), schema) == []


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_key_is_one_the_chart_knows(env, schema, chart_defaults):
    assert unknown_keys(user_values(env), schema, chart_defaults, schema) == []


def deploy_sources(env: str, **overrides) -> list[tuple[str, dict]]:
    """What `water deploy ENV` validates: the values files (one replaced by overrides[name]) and
    the --set-string values, as the deploy check reads them."""
    from water.cli import chart_values, cluster

    settings = cluster.load_settings(env)
    files = [(name, overrides.get(name, load_yaml(ROOT / name))) for name in ("helm-values/base.yaml", f"helm-values/{env}.yaml")]
    return [*files, ("--set-string", chart_values.set_string_values(cluster.set_strings(settings, "0123")))]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_deploy_check_passes_the_values(env, schema, chart_defaults):
    assert values_problems(deploy_sources(env), schema, chart_defaults) == []


def test_the_deploy_check_names_the_file_and_the_field(schema, chart_defaults):
    prod = load_yaml(VALUES_DIR / "prod.yaml")
    broken = merge_files(prod, {"scheduler": {"replicaz": 2}, "executr": "KubernetesExecutor", "statsd": {"enabled": "no"}})
    assert values_problems(deploy_sources("prod", **{"helm-values/prod.yaml": broken}), schema, chart_defaults) == [
        "helm-values/prod.yaml: scheduler.replicaz: not a field the chart's schema allows here (check the spelling)",
        "helm-values/prod.yaml: statsd.enabled: 'no' is not of type 'boolean'",
        "helm-values/prod.yaml: executr: not a key of the chart (neither its schema nor its values.yaml has it here; check the spelling)",
    ]
    # a field both a file and --set-string set is the --set-string's (helm's order)
    tagged = merge_files(prod, {"images": {"pod_template": {"tag": 5}}})
    no_tag_schema = json.loads(json.dumps(schema))
    no_tag_schema["properties"]["images"]["properties"]["pod_template"]["properties"]["tag"] = {"type": "integer"}
    assert values_problems(deploy_sources("prod", **{"helm-values/prod.yaml": tagged}), no_tag_schema, chart_defaults) == [
        "--set-string: images.pod_template.tag: '0123' is not of type 'integer'"
    ]


def test_merge_is_helms(chart_defaults):
    base = {"a": {"x": 1, "y": [1, 2]}, "b": "keep"}
    env = {"a": {"y": [3], "z": 2}}
    assert merge_files(base, env) == {"a": {"x": 1, "y": [3], "z": 2}, "b": "keep"}
    # a null removes the chart default (here: the bundled PostgreSQL's auth block)
    assert "auth" not in coalesce(chart_defaults, {"postgresql": {"auth": None}})["postgresql"]


def test_top_level_misspelling_passes_the_schema_but_not_the_key_check(schema, chart_defaults):
    values = merge_files(user_values("prod"), {"executr": "KubernetesExecutor"})
    assert schema_errors(values, schema) == []  # why the key check exists
    assert unknown_keys(values, schema, chart_defaults, schema) == ["executr"]


def test_misspelling_at_an_open_nested_level_is_caught(schema, chart_defaults):
    # the schema's securityContexts sets no additionalProperties
    values = merge_files(user_values("dev"), {"securityContexts": {"contaner": {}}})
    assert schema_errors(values, schema) == []
    assert unknown_keys(values, schema, chart_defaults, schema) == ["securityContexts.contaner"]


def test_nested_misspelling_fails_the_schema(schema):
    values = merge_files(user_values("prod"), {"scheduler": {"replicaz": 2}})
    errors = schema_errors(values, schema)
    assert any("replicaz" in e and e.startswith("scheduler") for e in errors), errors


def test_wrong_type_fails_the_schema(schema):
    values = merge_files(user_values("prod"), {"scheduler": {"replicas": "two"}})
    assert "scheduler.replicas: 'two' is not of type 'integer'" in schema_errors(values, schema)
    values = merge_files(user_values("dev"), {"statsd": {"enabled": "false"}})
    assert "statsd.enabled: 'false' is not of type 'boolean'" in schema_errors(values, schema)


# --- what water's deployment needs -------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_kubernetes_executor_with_dags_in_the_image(env):
    values = user_values(env)
    assert values["executor"] == "KubernetesExecutor"
    assert values["dags"]["gitSync"]["enabled"] is False
    assert values["dags"]["persistence"]["enabled"] is False
    airflow = values["images"]["airflow"]
    assert airflow["repository"].endswith("/water-airflow") and airflow["tag"]
    # the task pods run the very image the scheduler parses the DAGs from: the executor's
    # worker_container_repository/tag come from images.airflow; no second image to drift
    assert "pod_template" not in values["images"]
    shipped = pinned_airflow((ROOT / "requirements.txt").read_text())
    assert shipped and values["airflowVersion"] == shipped


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_external_database_and_secrets_by_name(env):
    values = user_values(env)
    assert values["postgresql"]["enabled"] is False
    assert values["data"]["metadataSecretName"]
    assert "metadataConnection" not in values["data"]  # no credentials in values files
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key], key
    assert values["webserver"]["defaultUser"]["enabled"] is False
    assert values["apiServer"]["defaultUser"]["enabled"] is False
    assert values["config"]["core"]["load_examples"] == "False"


def test_prod_pools_connections_through_pgbouncer():
    prod, dev = user_values("prod"), user_values("dev")
    assert prod["pgbouncer"]["enabled"] is True and dev["pgbouncer"]["enabled"] is False
    # with the connection in a Secret the chart cannot write PgBouncer's config itself
    assert prod["pgbouncer"]["configSecretName"]
    assert prod["pgbouncer"]["metricsExporterSidecar"]["statsSecretName"]
    assert prod["pgbouncer"]["securityContexts"]["container"]["readOnlyRootFilesystem"] is True


def test_prod_is_highly_available_and_dev_is_small():
    prod, dev = user_values("prod"), user_values("dev")
    assert prod["scheduler"]["replicas"] >= 2
    assert prod["apiServer"]["replicas"] >= 2
    assert prod["triggerer"]["replicas"] >= 2
    for component in ("scheduler", "apiServer", "pgbouncer"):
        assert prod[component]["podDisruptionBudget"]["enabled"] is True, component
    for component in ("scheduler", "apiServer", "dagProcessor", "triggerer", "workers"):
        assert _bytes(dev[component]["resources"]["requests"]["memory"]) < _bytes(
            prod[component]["resources"]["requests"]["memory"]
        ), component


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()
    return int(number) * {"Mi": 2**20, "Gi": 2**30}[unit]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_component_has_requests_and_a_memory_limit(env):
    values = user_values(env)
    resources = {
        name: values[name]["resources"]
        for name in ("scheduler", "apiServer", "dagProcessor", "triggerer", "workers", "migrateDatabaseJob", "createUserJob")
    }
    for name in ("scheduler", "triggerer", "dagProcessor"):
        resources[f"{name}.logGroomerSidecar"] = values[name]["logGroomerSidecar"]["resources"]
    if values["pgbouncer"]["enabled"]:
        resources["pgbouncer"] = values["pgbouncer"]["resources"]
        resources["pgbouncer.metricsExporterSidecar"] = values["pgbouncer"]["metricsExporterSidecar"]["resources"]
    for name, res in resources.items():
        assert {"cpu", "memory"} <= set(res["requests"]), name
        assert _bytes(res["limits"]["memory"]) >= _bytes(res["requests"]["memory"]), name


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_pods_run_as_non_root_without_privilege_escalation(env, chart_defaults):
    values = coalesce(chart_defaults, user_values(env))
    pod, container = values["securityContexts"]["pod"], values["securityContexts"]["containers"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    # components fall back to the global contexts only while their own are empty
    for component in ("scheduler", "apiServer", "dagProcessor", "triggerer", "workers", "migrateDatabaseJob"):
        assert values[component]["securityContexts"] == {"pod": {}, "container": {}}, component


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_statsd_goes_to_the_datadog_agent_on_the_node(env, schema):
    values = user_values(env)
    assert values["statsd"]["enabled"] is False
    metrics = values["config"]["metrics"]
    assert metrics["statsd_on"] == "True" and metrics["statsd_datadog_enabled"] == "True"
    assert f"env:{env}" in metrics["statsd_datadog_tags"]
    env_vars = yaml.safe_load(values["extraEnv"])
    env_var_schema = dict(schema["definitions"]["io.k8s.api.core.v1.EnvVar"], definitions=schema["definitions"])
    for var in env_vars:
        jsonschema.validate(var, env_var_schema)  # a Kubernetes EnvVar, fieldRef and all
    names = [v["name"] for v in env_vars]
    host = env_vars[names.index("DD_AGENT_HOST")]
    assert host["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    statsd_host = env_vars[names.index("AIRFLOW__METRICS__STATSD_HOST")]
    # $(VAR) expands only to variables defined earlier in the container's env
    assert statsd_host["value"] == "$(DD_AGENT_HOST)"
    assert names.index("DD_AGENT_HOST") < names.index("AIRFLOW__METRICS__STATSD_HOST")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_water_settings_reach_every_airflow_container(env):
    values = user_values(env)
    settings = settings_of(values)
    assert set(settings) == water_settings()
    assert all(isinstance(v, str) for v in settings.values()), "ConfigMap data values are strings"
    assert settings["WATER_TARGET"] == "cloud"
    assert settings["WATER_DEFERRABLE"] in {"true", "false"}
    assert settings["WATER_IMAGE_TAG"] == "{{ .Values.images.airflow.tag }}"
    for key in ("WATER_LAKE", "WATER_GLUE_SCRIPTS", "WATER_ATHENA_OUTPUT", "WATER_SAGEMAKER_CODE"):
        assert settings[key].startswith("s3://"), key
    assert settings["WATER_GCS_STAGING"].startswith("gs://")
    (name,) = [k for k in values["extraConfigMaps"] if k.endswith("-water-settings")]
    env_from = yaml.safe_load(values["extraEnvFrom"])
    assert {"configMapRef": {"name": name}} in env_from
    assert {"secretRef": {"name": "water-connections"}} in env_from


# --- the broker (Amazon MQ for RabbitMQ): a connection from a Secret, consumed by the triggerer --

CONNECTIONS_SECRET = "water-connections"
AMQP_CONNECTION = f"AIRFLOW_CONN_{events.AMQP_CONN_ID.upper()}"
BROKER_URI = re.compile(r"\bamqps?://")


def plain_values_of(values: object, variable: str, where: str = "") -> list[str]:
    """Where the values give `variable` (or any broker URI) as a plain value: an env entry with a
    `value`, a key of ConfigMap or chart-made Secret data, a URI in any string; YAML held in a string
    (extraEnv, ConfigMap data) is read too. An env entry whose valueFrom is a secretKeyRef, or the
    chart's `secret` list (envName, secretName, secretKey), takes it from a Secret: not plain."""
    found: list[str] = []
    if isinstance(values, dict):
        if values.get("name") == variable and "value" in values:
            found.append(where)
        for key, value in values.items():
            path = f"{where}.{key}" if where else str(key)
            if key == variable:
                found.append(path)
            found += plain_values_of(value, variable, path)
    elif isinstance(values, list):
        for n, item in enumerate(values):
            found += plain_values_of(item, variable, f"{where}[{n}]")
    elif isinstance(values, str):
        if BROKER_URI.search(values):
            found.append(where)
        elif variable in values:
            try:
                held = yaml.safe_load(values)
            except yaml.YAMLError:  # not YAML: a value naming the variable
                found.append(where)
                held = None
            if isinstance(held, dict | list):  # not the bare name, as an env entry's `name` holds it
                found += plain_values_of(held, variable, where)
    return found


def docs_secret_keys(secret: str) -> dict[str, str]:
    """The keys docs/deploy.md's `kubectl create secret generic SECRET` puts in the Secret, each with
    what it is made from (a literal value or a file)."""
    text = (ROOT / "docs/deploy.md").read_text().replace("\\\n", " ")
    (command,) = [line for line in text.splitlines() if f"create secret generic {secret} " in line]
    keys = {}
    for word in shlex.split(command):
        if word.startswith(("--from-literal=", "--from-file=")):
            key, _, source = word.split("=", 1)[1].partition("=")
            keys[key] = source
    return keys


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_broker_connection_comes_from_the_secret_and_never_from_a_plain_value(env):
    values = user_values(env)
    assert {"secretRef": {"name": CONNECTIONS_SECRET}} in yaml.safe_load(values["extraEnvFrom"])
    documented = docs_secret_keys(CONNECTIONS_SECRET)
    assert documented[AMQP_CONNECTION] == "amqp_default.uri", "the Secret's AMQP key comes from a file, not the command line"
    assert plain_values_of(values, AMQP_CONNECTION) == []
    # the comment over extraEnvFrom lists the keys the docs put in the Secret
    base = (VALUES_DIR / "base.yaml").read_text()
    comment = base[: base.index("extraEnvFrom:")].rsplit("\n\n", 1)[-1]
    assert set(re.findall(r"AIRFLOW_CONN_[A-Z_]+", comment)) == set(documented)


def test_the_documented_amazon_mq_uri_is_tls_on_5671_with_verification():
    from water.broker import BrokerAddress, connection_from_uri

    (row,) = [line for line in (ROOT / "docs/deploy.md").read_text().splitlines() if line.startswith("| `amqp_default` |")]
    uri = re.search(r"`(amqps://[^`]+)`", row).group(1)
    address = BrokerAddress.from_connection(connection_from_uri(uri, events.AMQP_CONN_ID))
    assert (address.tls, address.port, address.virtual_host) == (True, 5671, "/")
    assert address.host.endswith(".amazonaws.com")
    context = address.ssl_context()
    assert context is not None and context.check_hostname


def test_a_plain_broker_connection_in_the_values_is_caught():
    uri = "amqps://water:pw@b-1.mq.eu-west-1.amazonaws.com:5671/%2F"
    from_secret = {
        "secret": [{"envName": AMQP_CONNECTION, "secretName": "broker", "secretKey": "uri"}],
        "extraEnv": f"- name: {AMQP_CONNECTION}\n  valueFrom:\n    secretKeyRef: {{name: broker, key: uri}}\n",
    }
    assert plain_values_of(merge_files(user_values("prod"), from_secret), AMQP_CONNECTION) == []
    plain = {
        "env": [{"name": AMQP_CONNECTION, "value": "x"}],
        "triggerer": {"env": [{"name": AMQP_CONNECTION, "value": "x"}]},
        "extraEnv": f"- name: {AMQP_CONNECTION}\n  value: x\n",
        "extraSecrets": {"broker": {"stringData": f"{AMQP_CONNECTION}: x\n"}},
        "extraConfigMaps": {"{{ .Release.Name }}-water-settings": {"data": f"BROKER: {uri}\n"}},
    }
    assert sorted(plain_values_of(merge_files(user_values("prod"), plain), AMQP_CONNECTION)) == [
        "env[0]",
        "extraConfigMaps.{{ .Release.Name }}-water-settings.data",
        "extraEnv[0]",
        f"extraSecrets.broker.stringData.{AMQP_CONNECTION}",
        "triggerer.env[0]",
    ]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_triggerer_runs_the_control_queue_s_watcher(env, chart_defaults):
    """water_control is scheduled on an asset an AmqpMessageTrigger watches: the triggerer runs it."""
    values = user_values(env)
    assert values["triggerer"]["enabled"] is True  # said in the values, not left to the chart's default
    assert coalesce(chart_defaults, values)["triggerer"]["replicas"] >= 1


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_irsa_role_on_the_service_accounts_that_call_aws(env):
    values = user_values(env)
    annotated = {
        values[c]["serviceAccount"]["name"]: values[c]["serviceAccount"]["annotations"].get(ROLE_ANNOTATION)
        for c in ("workers", "triggerer", "apiServer")
    }
    assert set(annotated.values()) == {"arn:aws:iam::${AccountId}:role/water-airflow"}
    # the job pods the cloud target starts run as their own (tests/contract/test_job_pods.py)
    assert settings_of(values)["WATER_K8S_SERVICE_ACCOUNT"] not in annotated
    # the Airflow role trusts exactly these service accounts
    trust = json.loads((ROOT / "docs/iam/airflow-role-trust.json").read_text())
    (statement,) = trust["Statement"]
    subjects = statement["Condition"]["StringEquals"]["${OidcProvider}:sub"]
    assert sorted(subjects) == sorted(f"system:serviceaccount:${{Namespace}}:{sa}" for sa in annotated)
    for component in ("scheduler", "dagProcessor"):
        assert ROLE_ANNOTATION not in values[component]["serviceAccount"].get("annotations", {})


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_filled_in_settings_are_accepted_by_the_cloud_target(env):
    from water.targets.cloud.target import CloudSettings

    environ = deployed_settings(user_values(env), release_namespace="water")
    assert not any("${" in v or "{{" in v for v in environ.values()), environ
    settings = CloudSettings.from_environment(environ)
    assert settings.job_image_ref == "registry.example/ml/water-jobs:2026.11.1"
    assert settings.k8s_namespace == "water" and settings.deferrable is True


# --- what `helm upgrade --install --wait` and the cluster need -----------------------------

# The chart's Jobs that run as Helm post-install/post-upgrade hooks unless told otherwise.
HOOK_JOBS = ("migrateDatabaseJob", "createUserJob")


def deploy_helm_argv(env: str) -> list[str]:
    """The helm command `water deploy ENV` runs (water.toml's settings for ENV)."""
    from water.cli import cluster

    *_, helm = cluster.deploy_commands(cluster.load_settings(env), env, "t1")
    return helm


def hooked_jobs(values: dict) -> list[str]:
    """The jobs still run as hooks, or still given the custom env that hooks would create."""
    return [f"{job}.{key}" for job in HOOK_JOBS for key in ("useHelmHooks", "applyCustomEnv") if values[job][key] is not False]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_no_post_install_hook_is_left_for_helm_wait(env, chart_defaults):
    """helm --wait waits for the pods before it runs post-install hooks, and the pods wait for
    the migration hook: the first install hangs. Values deployed with --wait turn hooks off."""
    helm = deploy_helm_argv(env)
    assert helm[:3] == ["helm", "upgrade", "--install"]
    assert "--wait" in helm  # what makes a hook a deadlock; drop this and the check below with it
    assert hooked_jobs(coalesce(chart_defaults, user_values(env))) == []
    docs = (ROOT / "docs/deploy.md").read_text()
    assert "--wait" in docs and "useHelmHooks: false" in docs


def test_the_chart_defaults_run_the_jobs_as_hooks(chart_defaults):
    """What the check above guards against: the chart's own default."""
    assert hooked_jobs(coalesce(chart_defaults, {})) == [
        f"{j}.{k}" for j in HOOK_JOBS for k in ("useHelmHooks", "applyCustomEnv")
    ]


def _cleanup_arguments(values: dict):
    """The cleanup CronJob's `airflow kubernetes cleanup-pods` arguments, parsed by the
    provider's own CLI definition (a misspelt flag fails here, not in the cluster)."""
    import argparse

    from airflow.providers.cncf.kubernetes.cli.definition import KUBERNETES_COMMANDS

    (command,) = [c for c in KUBERNETES_COMMANDS if c.name == "cleanup-pods"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    for arg in command.args:
        arg.add_to_parser(parser)
    assert values["cleanup"]["args"][:2] == ["bash", "-c"], values["cleanup"]["args"]
    words = values["cleanup"]["args"][2].replace("{{ .Release.Namespace }}", "water").split()
    assert words[:4] == ["exec", "airflow", "kubernetes", "cleanup-pods"], words
    return parser.parse_args(words[4:])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_failed_pods_are_cleaned_up_after_a_day(env, chart_defaults):
    """Job pods that fail are kept (on_finish_action delete_succeeded_pod) and so are failed task
    pods (delete_worker_pods_on_failure): the chart's cleanup CronJob removes them, in the
    namespace the job pods run in, once they are a day old."""
    values = coalesce(chart_defaults, user_values(env))
    assert values["cleanup"]["enabled"] is True
    args = _cleanup_arguments(values)
    assert args.namespace == "water"
    assert settings_of(user_values(env))["WATER_K8S_NAMESPACE"] == "{{ .Release.Namespace }}"
    assert 60 <= args.min_completed_minutes <= 7 * 24 * 60  # long enough to read a failed pod's log
    assert args.min_pending_minutes >= 30
    resources = values["cleanup"]["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and resources["limits"]["memory"]
    assert values["config"]["kubernetes_executor"]["delete_worker_pods_on_failure"] == "False"


def test_the_chart_does_not_clean_up_by_default(chart_defaults):
    assert coalesce(chart_defaults, {})["cleanup"]["enabled"] is False
