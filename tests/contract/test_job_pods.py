"""The job pods the cloud target starts: admitted where the namespace enforces the Pod
Security Standards' `restricted` level, and running as their own identity.

Every pod of every shipped spec (each `pod` step, each tier of each `sized_postprocess`
route, a mapped shard of the largest) is built as KubernetesPodOperator builds it
(`build_pod_request_obj`, tests/contract/test_cloud_pods.py) and serialized as the API
server receives it. Checked there:

- the Pod Security Standards (https://kubernetes.io/docs/concepts/security/pod-security-standards/),
  Baseline and Restricted controls, written out below;
- the containers and security contexts against the Kubernetes schemas vendored with the
  chart (tests/contract/chart/values.schema.json, `additionalProperties: false`), and the
  whole pod against kubernetes-validate's strict schemas where that package is installed;
- the service account: water-jobs (docs/k8s/jobs-service-account.yaml), not an Airflow
  one, no API token mounted; its IRSA role (docs/iam/jobs-role-*.json) reaches the lake's
  objects and nothing else.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from tests.contract.cloud import PIPELINES, spec_of, task_copy, tasks_as_run
from tests.contract.helm import CHART, ENVIRONMENTS, ROOT, filled, settings_of, user_values
from tests.contract.test_cloud_pods import build_pod

SERVICE_ACCOUNT = ROOT / "docs" / "k8s" / "jobs-service-account.yaml"
IAM = ROOT / "docs" / "iam"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
AIRFLOW_COMPONENTS = ("workers", "triggerer", "apiServer", "scheduler", "dagProcessor")


# --- the Pod Security Standards ----------------------------------------------------------

# Baseline: capabilities a container may add; sysctls a pod may set.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Restricted: the only volume types; the only capability a container may add.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


def _containers(spec: dict) -> list[dict]:
    return [*spec.get("initContainers", []), *spec.get("containers", []), *spec.get("ephemeralContainers", [])]


def baseline_violations(pod: dict) -> list[str]:
    spec, found = pod["spec"], []
    pod_context = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"host namespaces: spec.{field}")
    for volume in spec.get("volumes", []):
        if "hostPath" in volume:
            found.append(f"hostPath volume {volume['name']}")
    for sysctl in pod_context.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    for where, annotation in (pod["metadata"].get("annotations") or {}).items():
        if where.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
            annotation == "runtime/default" or annotation.startswith("localhost/")
        ):
            found.append(f"AppArmor annotation {where}={annotation}")
    contexts = [("spec.securityContext", pod_context)] + [
        (f"container {c['name']}", c.get("securityContext") or {}) for c in _containers(spec)
    ]
    for where, context in contexts:
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}: hostProcess")
        if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}: seccomp Unconfined")
        if (context.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"{where}: AppArmor {context['appArmorProfile']['type']}")
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            found.append(f"{where}: SELinux options {selinux}")
    for container in _containers(spec):
        context, name = container.get("securityContext") or {}, container["name"]
        if context.get("privileged"):
            found.append(f"container {name}: privileged")
        added = set((context.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            found.append(f"container {name}: adds capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        if context.get("procMount") not in (None, "Default"):
            found.append(f"container {name}: procMount {context['procMount']}")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                found.append(f"container {name}: hostPort {port['hostPort']}")
    return found


def restricted_violations(pod: dict) -> list[str]:
    """The Restricted controls, on top of Baseline's."""
    spec, found = pod["spec"], baseline_violations(pod)
    pod_context = spec.get("securityContext") or {}
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume['name']}: type {sorted(kinds - RESTRICTED_VOLUMES)}")
    if pod_context.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser is 0")
    pod_seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    for container in _containers(spec):
        context, name = container.get("securityContext") or {}, container["name"]
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"container {name}: allowPrivilegeEscalation is not false")
        non_root = context.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_context.get("runAsNonRoot") is not True):
            found.append(f"container {name}: runAsNonRoot is not true (nor set on the pod)")
        if context.get("runAsUser") == 0:
            found.append(f"container {name}: runAsUser is 0")
        seccomp = (context.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"container {name}: seccomp profile {seccomp!r}, not RuntimeDefault or Localhost")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"container {name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"container {name}: adds capabilities other than NET_BIND_SERVICE")
    return found


def test_the_checks_refuse_what_the_standard_refuses():
    """Each check fires on a pod the Restricted level rejects (and Baseline's on what it rejects)."""
    good = {
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 50000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {"name": "base", "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    assert restricted_violations(good) == []
    assert baseline_violations({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "base"}]}}) == []
    assert restricted_violations({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "base"}]}})  # the default pod

    def broken(change) -> dict:
        pod = json.loads(json.dumps(good))
        change(pod["spec"], pod["spec"]["containers"][0].setdefault("securityContext", {}))
        return pod

    cases = {
        "host namespaces": lambda s, c: s.update(hostNetwork=True),
        "hostPath": lambda s, c: s["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "privileged": lambda s, c: c.update(privileged=True),
        "capabilities": lambda s, c: c.update(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
        "allowPrivilegeEscalation": lambda s, c: c.pop("allowPrivilegeEscalation"),
        "runAsNonRoot": lambda s, c: s["securityContext"].pop("runAsNonRoot"),
        "runAsUser is 0": lambda s, c: c.update(runAsUser=0),
        "seccomp": lambda s, c: s["securityContext"].pop("seccompProfile"),
        "Unconfined": lambda s, c: c.update(seccompProfile={"type": "Unconfined"}),
        "drop ALL": lambda s, c: c.update(capabilities={"drop": ["NET_RAW"]}),
        "volume": lambda s, c: s["volumes"].append({"name": "n", "nfs": {"server": "x", "path": "/"}}),
        "hostPort": lambda s, c: s["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]),
        "sysctl": lambda s, c: s["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    }
    for says, change in cases.items():
        assert any(says in v for v in restricted_violations(broken(change))), says


# --- every pod of every shipped spec -------------------------------------------------------


def pod_tasks(dag) -> list:
    """Every pod task of the DAG as it runs; a mapped one (the largest tier's shards) as its first shard."""
    from water.targets.cloud.extended import SizedPodOperator

    return [task for task in tasks_as_run(dag) if isinstance(task, SizedPodOperator)]


@pytest.fixture(scope="module")
def pods(cloud_dags) -> dict[str, dict]:
    """task id (pipeline.task) -> the pod as the API server receives it, for every shipped spec."""
    from kubernetes.client import ApiClient

    built = {}
    for pipeline in PIPELINES:
        for task in pod_tasks(cloud_dags(pipeline)):
            pod = build_pod(task_copy(task), pipeline)
            built[f"{pipeline}.{task.task_id}"] = ApiClient().sanitize_for_serialization(pod)
    return built


def test_every_shipped_spec_has_pods(pods):
    with_pods = {p for p in PIPELINES if spec_of(p).steps_of("pod") or spec_of(p).steps_of("sized_postprocess")}
    assert with_pods and {task.split(".")[0] for task in pods} == with_pods


def test_every_pod_meets_the_restricted_level(pods):
    found = {task: v for task, pod in pods.items() if (v := restricted_violations(pod))}
    assert found == {}, "pods the `restricted` Pod Security level rejects:\n" + json.dumps(found, indent=1)


def test_every_pod_validates_against_the_kubernetes_schemas(pods):
    """Container and security contexts against the chart's vendored Kubernetes definitions, which
    refuse unknown fields (a security context passed as a snake_case dict would reach the API
    server as fields it drops)."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def validator(kind: str):
        return jsonschema.Draft7Validator(
            {"$ref": f"#/definitions/io.k8s.api.core.v1.{kind}", "definitions": schema["definitions"]}
        )

    for task, pod in pods.items():
        for container in pod["spec"]["containers"]:
            errors = [e.message for e in validator("Container").iter_errors(container)]
            assert errors == [], (task, errors)
        errors = [e.message for e in validator("PodSecurityContext").iter_errors(pod["spec"]["securityContext"])]
        assert errors == [], (task, errors)


def test_every_pod_validates_strictly_with_kubernetes_validate(pods):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (not in requirements-dev.txt)"
    )
    for pod in pods.values():
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **pod}, "1.33", strict=True)


def test_every_pod_runs_as_the_jobs_service_account_without_an_api_token(pods, cloud_settings):
    for task, pod in pods.items():
        assert pod["spec"]["serviceAccountName"] == cloud_settings.k8s_service_account, task
        assert pod["spec"]["automountServiceAccountToken"] is False, task


# --- the service account and its role -------------------------------------------------------


def service_account() -> dict:
    return yaml.safe_load(SERVICE_ACCOUNT.read_text())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_job_pods_have_their_own_service_account(env):
    values = user_values(env)
    name = settings_of(values)["WATER_K8S_SERVICE_ACCOUNT"]
    account = service_account()
    assert (account["apiVersion"], account["kind"]) == ("v1", "ServiceAccount")
    assert account["metadata"]["name"] == name
    assert account["automountServiceAccountToken"] is False
    airflow = {values[c]["serviceAccount"]["name"] for c in AIRFLOW_COMPONENTS}
    assert name not in airflow, f"job pods run as {name}, an Airflow service account (pod launching, the Airflow role)"
    assert account["metadata"]["annotations"][ROLE_ANNOTATION] == "arn:aws:iam::${AccountId}:role/water-jobs"
    (statement,) = json.loads((IAM / "jobs-role-trust.json").read_text())["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    subject = statement["Condition"]["StringEquals"]["${OidcProvider}:sub"]
    assert subject == f"system:serviceaccount:${{Namespace}}:{name}"
    assert account["metadata"]["namespace"] == "${Namespace}"


def test_the_jobs_role_reaches_the_lakes_objects_only():
    from tests.contract.test_iam import allows

    policy = json.loads((IAM / "jobs-role-policy.json").read_text())
    assert {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} <= {
        "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:ListBucket",
    }  # fmt: skip
    lake = "arn:aws:s3:::${LakeBucket}"
    for pipeline in PIPELINES:
        spec = spec_of(pipeline)
        datasets = {
            d for s in spec.steps_of("pod").values() for d in [*s.reads.values(), *(o.dataset for o in s.writes.values())]
        }
        for name, step in spec.steps_of("sized_postprocess").items():
            datasets |= {step.reads, step.writes, step.shards_dataset}
            datasets |= {d for route in step.all_routes(spec.classes, name).values() for d in route.reads.values()}
        for dataset in datasets:
            for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
                assert allows(policy, action, f"{lake}/lake/{pipeline}/{dataset}/ds=2026-11-01/part-0"), (action, dataset)
    for elsewhere in ("artifacts/sagemaker/x/sourcedir.tar.gz", "athena-results/q.csv", "airflow-logs/x.log"):
        assert not allows(policy, "s3:GetObject", f"{lake}/{elsewhere}"), elsewhere
    assert allows(policy, "s3:ListBucket", lake)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_jobs_role_covers_the_lake_setting(env):
    from tests.contract.test_iam import _s3_arn, allows

    policy = json.loads((IAM / "jobs-role-policy.json").read_text())
    lake = settings_of(user_values(env))["WATER_LAKE"]
    assert allows(filled(policy), "s3:PutObject", filled(_s3_arn(lake, "p/d/ds=2026-11-01/part-0.csv")))
