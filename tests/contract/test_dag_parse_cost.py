"""Parsing a cloud DAG file imports only what building the DAG needs (#13 item 7).

The DAG processor parses every DAG file under `dagbag_import_timeout`, and every task's process
parses it again. A provider operator's module imports its client stack (google-cloud-bigquery
with pandas and pyarrow, the Kubernetes clients, boto3): seconds of CPU per parse. The cloud
target names its provider operators by import path (water.targets.cloud.lazy) and the task
runner builds the real operator where the task runs. What this costs is measured by
benchmarks/parse_cost.py; here: what a parse imports (through DagBag, in a child forked from a
fresh process that imported only DagBag, as the DAG processor parses), and that the operator
built at run time is the one named.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk import BaseOperator

from tests.conftest import ROOT
from tests.contract.cloud import CLOUD_ENV, PIPELINES, as_run

DAG_FILES = sorted(p.name for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))

# The client stacks a provider operator module brings; building the DAG needs none of them.
HEAVY = (
    "pandas",
    "numpy",
    "pyarrow",
    "google.cloud.bigquery",
    "google.cloud.storage",
    "google.cloud.aiplatform",  # the Vertex AI SDK: water.targets.cloud.vertex builds plain dicts
    "google.cloud.aiplatform_v1",
    "google.api_core",
    "grpc",
    "kubernetes.client",
    "kubernetes_asyncio",
    "boto3",
    "botocore",
    "aiobotocore",
)
# Modules of the providers' operators, hooks and triggers: imported by the task that runs one.
PROVIDER_RUNTIME = re.compile(
    r"^airflow\.providers\.(amazon|google|cncf)\.[\w.]*\b(operators|hooks|transfers|triggers|sensors)\b"
)

# As the DAG processor parses (its supervisor forks a child per DAG file from a process with
# Airflow imported): one process imports DagBag, then forks a child for each file given.
PARSE = """
import json, os, sys, traceback
from airflow import settings
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization

for path in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            bag = DagBag(dag_folder=path)
            for dag in bag.dags.values():
                DagSerialization.to_dict(dag)  # as the DAG processor stores it
            with os.fdopen(write, "w") as out:
                json.dump({
                    "timeout": settings.get_dagbag_import_timeout(path),
                    "errors": {str(k): v for k, v in bag.import_errors.items()},
                    "dags": sorted(bag.dags),
                    "modules": sorted(sys.modules),
                }, out)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as result:
        answer = result.read()
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print("parsed:", json.dumps({"file": os.path.basename(path), "exit": status, **(json.loads(answer) if status == 0 else {})}))
"""


@pytest.fixture(scope="module")
def parses() -> dict[str, dict]:
    """Every cloud DAG file parsed by DagBag (under Airflow's dagbag_import_timeout), each in a
    child forked from one fresh process that has imported only DagBag."""
    proc = subprocess.run(
        [sys.executable, "-c", PARSE, *(str(ROOT / "dags" / name) for name in DAG_FILES)],
        # this project's specs and code, also in a copy of the project (tests/e2e/test_new_pipeline.py)
        env={
            **os.environ,
            **CLOUD_ENV,
            "WATER_PROJECT_ROOT": str(ROOT),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        },
        capture_output=True,
        text=True,
        timeout=600,  # a bound on a hung parse, not a measurement
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    answers = [json.loads(line.removeprefix("parsed:")) for line in proc.stdout.splitlines() if line.startswith("parsed:")]
    return {answer["file"]: {**answer, "stderr": proc.stderr[-4000:]} for answer in answers}


@pytest.fixture(params=DAG_FILES)
def parsed(request, parses) -> dict:
    """One cloud DAG file's parse (`parses`)."""
    answer = parses[request.param]
    assert answer["exit"] == 0, f"parsing {request.param} failed:\n{answer['stderr']}"
    return answer


def test_the_cloud_dag_file_parses_under_the_import_timeout(parsed):
    assert parsed["timeout"] > 0  # DagBag imports the file under this alarm (0 would turn it off)
    assert parsed["errors"] == {}
    assert parsed["dags"] == [parsed["file"].removesuffix(".py")]


def test_parsing_imports_no_client_stack(parsed):
    modules = set(parsed["modules"])
    heavy = sorted(name for name in HEAVY if name in modules)
    assert heavy == [], f"parsing {parsed['file']} imports {heavy}"


def test_parsing_imports_no_provider_operator_or_hook(parsed):
    imported = [name for name in parsed["modules"] if PROVIDER_RUNTIME.match(name)]
    assert imported == [], f"parsing {parsed['file']} imports {imported[:10]}"


# --- where the task runs: the operator named --------------------------------------------------


SETTINGS = ("owner", "retries", "retry_delay", "execution_timeout", "trigger_rule", "on_execute_callback", "on_success_callback")


def stand_ins(dag) -> dict:
    """task -> the import path of the operator it stands for, for every stand-in of the DAG."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from water.targets.cloud.lazy import LazyOperator

    found = {}
    for task in dag.tasks:
        if isinstance(task, LazyOperator):
            found[task] = task.operator_path
        elif isinstance(task, MappedOperator) and issubclass(task.operator_class, LazyOperator):
            found[task] = task.partial_kwargs["operator_path"]
    return found


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_each_stand_in_builds_the_operator_it_names(cloud_dags, pipeline):
    """The built operator is of the named class, with the task's id, settings and place in the
    graph, and the name, colour and extra links the UI showed for it before it ran."""
    dag = cloud_dags(pipeline)
    tasks = stand_ins(dag)
    assert tasks, f"{pipeline}: no provider operator stands in"
    for task, path in tasks.items():
        built = as_run(task)
        assert f"{type(built).__module__}.{type(built).__name__}" == path, task.task_id
        assert type(built).__name__ == task.operator_name, task.task_id
        assert (built.task_id, built.dag) == (task.task_id, dag)
        assert (built.upstream_task_ids, built.downstream_task_ids) == (task.upstream_task_ids, task.downstream_task_ids)
        for setting in SETTINGS:
            assert getattr(built, setting) == getattr(task, setting), (task.task_id, setting)
        assert built.ui_color == task.ui_color, task.task_id
        assert {link.name: link.xcom_key for link in built.operator_extra_links} == {
            link.name: link.xcom_key for link in task.operator_extra_links
        }, task.task_id


def test_the_operator_refs_name_classes_that_exist():
    from water.targets.cloud import target
    from water.targets.cloud.lazy import OperatorRef

    refs = {name: ref for name, ref in vars(target).items() if isinstance(ref, OperatorRef)}
    assert refs
    for name, ref in refs.items():
        operator = ref.load()
        assert operator.__name__ == ref.path.rpartition(".")[2], name
        assert (ref.ui_color or "#fff") == operator.ui_color, name
        assert {link.name: link.xcom_key for link in operator.operator_extra_links} == dict(ref.extra_links), name


# --- the task runner runs the built operator -----------------------------------------------


class Probe(BaseOperator):
    """Stands for a provider operator (imported by path where its task runs): records what the
    task runner gave it, its rendered field and its shard, and defers once when asked."""

    template_fields = ("greeting",)

    def __init__(self, *, greeting: str, shard: dict | None = None, defers: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.greeting, self.shard, self.defers = greeting, shard, defers

    def figures(self, **more) -> dict:
        return {"class": type(self).__name__, "greeting": self.greeting, "shard": self.shard, "retries": self.retries, **more}

    def execute(self, context):
        if self.defers:
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(trigger=TimeDeltaTrigger(timedelta(0)), method_name="resume")
        return self.figures()

    def resume(self, context, event=None):
        return self.figures(resumed=True)


RESULTS: dict[str, object] = {}  # what probe_dag's last task collected


def probe_dag():
    """Probes by path: plain, deferring once, and mapped over shards; a last task collects
    what each returned."""
    from airflow.sdk import DAG, task

    from water.targets.cloud.lazy import OperatorRef

    probe = OperatorRef(f"{Probe.__module__}.Probe")
    with DAG("lazy_operator_runs", schedule=None, default_args={"retries": 3, "owner": "water"}) as dag:
        plain = probe(task_id="plain", greeting="day {{ ds }}")
        deferring = probe(task_id="deferring", greeting="later", defers=True)

        @task
        def shards():
            return [{"index": 0}, {"index": 1}]

        mapped = probe.partial(task_id="mapped", greeting="shard of {{ ds }}").expand(shard=shards())

        @task
        def collect(plain=None, deferring=None, mapped=None):
            RESULTS.update(plain=plain, deferring=deferring, mapped=list(mapped))

        collect(plain.output, deferring.output, mapped.output)
    return dag


def test_the_task_runner_runs_the_operator_a_stand_in_builds(airflow_db, tmp_path, monkeypatch):
    """dag.test() runs each task through the task runner (prepare, render, execute, defer and
    resume): the stand-in's operator runs, rendered, with the task's settings; mapped too."""
    # DagBag's safe mode reads a file only if it says "airflow" and "dag"
    (tmp_path / "probe_dag.py").write_text(f"# an airflow DAG\nfrom {__name__} import probe_dag\n\ndag = probe_dag()\n")
    bundle = {
        "name": "lazy_probe",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(tmp_path)},
    }
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps([bundle]))
    RESULTS.clear()
    run = probe_dag().test(logical_date=datetime(2026, 11, 1, tzinfo=UTC))
    assert run.state == "success", [(ti.task_id, ti.map_index, ti.state) for ti in run.get_task_instances()]
    assert RESULTS["plain"] == {"class": "Probe", "greeting": "day 2026-11-01", "shard": None, "retries": 3}
    assert RESULTS["deferring"] == {"class": "Probe", "greeting": "later", "shard": None, "retries": 3, "resumed": True}
    assert [r["shard"] for r in RESULTS["mapped"]] == [{"index": 0}, {"index": 1}]
    assert {(r["class"], r["greeting"], r["retries"]) for r in RESULTS["mapped"]} == {("Probe", "shard of 2026-11-01", 3)}
    # what the UI shows as the task's rendered templates: the operator's own fields
    from airflow.models.renderedtifields import RenderedTaskInstanceFields

    assert RenderedTaskInstanceFields.get_templated_fields(run.get_task_instance("plain")) == {"greeting": "day 2026-11-01"}
    mapped_ti = run.get_task_instance("mapped", map_index=1)
    assert RenderedTaskInstanceFields.get_templated_fields(mapped_ti) == {"greeting": "shard of 2026-11-01"}
